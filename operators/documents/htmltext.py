"""HTML → (title, raw blocks) with the standard library's html.parser.

Headings h1-h6, paragraphs, list items, <pre> and table rows become blocks; text directly
inside containers (div, section, …) becomes a paragraph. The content of script, style, nav,
noscript, template, svg and iframe is dropped, and so are comments. The title is <title>,
else the first <h1>.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

RawBlock = tuple[str, int, str]

SKIP = {"script", "style", "nav", "noscript", "template", "svg", "iframe", "object"}
KINDS = {
    **{f"h{n}": "heading" for n in range(1, 7)},
    "li": "list", "dt": "list", "dd": "list", "pre": "code", "tr": "table",
}
CONTAINERS = {
    "html", "body", "main", "article", "section", "div", "header", "footer", "aside", "p",
    "blockquote", "figure", "figcaption", "caption", "ul", "ol", "dl", "table", "thead",
    "tbody", "tfoot", "form", "address", "details", "summary", "hr",
}
CELLS = {"td", "th"}
STRAY_LT = re.compile(r"<(?=[^<>]*(?:<|\Z))")


def html_blocks(text: str) -> tuple[str, list[RawBlock]]:
    parser = _HtmlBlocks()
    parser.feed(_defused(text))
    parser.close()
    parser.flush()
    h1 = next((t for kind, level, t in parser.raw if kind == "heading" and level == 1), "")
    return " ".join(parser.title.split()) or h1, parser.raw


def _defused(text: str) -> str:
    """html.parser rescans from every "<" that no ">" closes before the next "<" (try
    "<a " * 100_000): quadratic. Such a "<" cannot open a tag, so it becomes "&lt;" (which
    reads back as "<"). Comments go first, so that markup commented out stays hidden."""
    return STRAY_LT.sub("&lt;", _without_comments(text))


def _without_comments(text: str) -> str:
    parts: list[str] = []
    pos = 0
    while (start := text.find("<!--", pos)) >= 0:
        parts.append(text[pos:start])
        end = text.find("-->", start + 4)
        pos = len(text) if end < 0 else end + 3
    return "".join(parts) + text[pos:]


class _HtmlBlocks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.raw: list[RawBlock] = []
        self.open: list[str] = []          # open block-level tags, innermost last
        self.buf: list[str] = []
        self.skip = 0                       # depth inside dropped elements
        self.in_title = False
        self.title = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in SKIP:
            self.skip += 1
        elif self.skip:
            return
        elif tag == "title":
            self.in_title = True
        elif tag in KINDS or tag in CONTAINERS:
            self.flush()
            self.open.append(tag)
        elif tag in CELLS and self.buf:
            self.buf.append(" | ")
        elif tag == "br":
            self.buf.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.skip:
            return
        elif tag == "title":
            self.in_title = False
        elif tag in self.open:
            self.flush()
            while self.open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.in_title:
            self.title += data
        else:
            self.buf.append(data)

    def flush(self) -> None:
        text, self.buf = "".join(self.buf), []
        tag = self.open[-1] if self.open else "p"
        kind = KINDS.get(tag, "paragraph")
        level = int(tag[1]) if kind == "heading" else 0
        text = text.strip("\n").rstrip() if kind == "code" else " ".join(text.split())
        if text.strip():
            self.raw.append((kind, level, text))
