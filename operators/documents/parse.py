"""Parse: the bytes of a Markdown, plain-text or HTML document → a ParsedDocument.

`ParsedDocument.text` is the document's normalised plain text: its blocks one after another,
separated by one blank line, with Markdown and HTML markup removed. Every Block (and every
chunk cut from it later) refers to that text by character offsets, so a citation's span is
`text[start:end]`, exactly. A heading's section_path ends with the heading itself; any other
block's section_path is the list of headings that enclose it.

Bad input raises Reject with a reason a user can act on: binary data (ZIP, PDF, images, NUL
bytes), an unsupported file type, a document without text. Bytes that are not UTF-8 are read
as latin-1 and the document carries a warning.
"""
from __future__ import annotations

import logging
import re
from pathlib import PurePath
from typing import Iterable, Literal, Optional

import msgspec

from operators.base import Reject
from operators.documents.htmltext import html_blocks

log = logging.getLogger(__name__)

BlockKind = Literal["heading", "paragraph", "list", "code", "table"]
Format = Literal["markdown", "text", "html"]
RawBlock = tuple[str, int, str]   # kind, heading level (0 otherwise), normalised text


class Block(msgspec.Struct, frozen=True, kw_only=True):
    """One structural unit of a document: text[start:end] of its ParsedDocument."""

    kind: BlockKind
    start: int
    end: int
    level: int = 0                       # 1-6 for headings, 0 otherwise
    section_path: list[str] = []


class ParsedDocument(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    text: str
    blocks: list[Block]
    format: Format = "text"
    warnings: list[str] = []


EXTENSIONS: dict[str, Format] = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
    ".html": "html", ".htm": "html",
}
CONTENT_TYPES: dict[str, Format] = {
    "text/markdown": "markdown", "text/x-markdown": "markdown", "text/plain": "text",
    "text/html": "html", "application/xhtml+xml": "html",
}
MAGIC = (
    (b"PK\x03\x04", "looks like a ZIP archive, not a text document"),
    (b"PK\x05\x06", "looks like a ZIP archive, not a text document"),
    (b"%PDF", "PDF is not supported yet"),
    (b"\x1f\x8b", "looks like a gzip archive, not a text document"),
    (b"\x89PNG", "looks like a PNG image, not a text document"),
    (b"\xff\xd8\xff", "looks like a JPEG image, not a text document"),
)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def parse_document(data: bytes, filename: str, content_type: str = "") -> ParsedDocument:
    """Parse one document; raise Reject when it is not a text document we can read."""
    _sniff(data)
    fmt = _format(filename, content_type)
    text, warnings = _decode(data)
    title, raw = PARSERS[fmt](_normalise(text))
    body, blocks = _assemble(raw)
    if not blocks:
        raise Reject("no text in document")
    title = title or PurePath(filename).stem
    return ParsedDocument(title=title, text=body, blocks=blocks, format=fmt, warnings=warnings)


def _sniff(data: bytes) -> None:
    for magic, reason in MAGIC:
        if data.startswith(magic):
            raise Reject(reason)
    if not data.startswith(UTF16_BOMS) and b"\x00" in data:
        raise Reject("looks like binary data (it holds NUL bytes), not a text document")


def _format(filename: str, content_type: str) -> Format:
    ext = PurePath(filename).suffix.lower()
    mime = content_type.split(";")[0].strip().lower()
    if ext == ".pdf" or mime == "application/pdf":
        raise Reject("PDF is not supported yet")
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if mime in CONTENT_TYPES:
        return CONTENT_TYPES[mime]
    what = f"extension {ext!r}" if ext else "no extension"
    supported = ", ".join(EXTENSIONS)
    raise Reject(f"unsupported document type ({what}{', ' + mime if mime else ''}); "
                 f"supported: {supported}")


def _decode(data: bytes) -> tuple[str, list[str]]:
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        note = f"not valid UTF-8 (at byte {exc.start}): read as latin-1"
        log.warning(note)
        return data.decode("latin-1"), [note]


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _assemble(raw: Iterable[RawBlock]) -> tuple[str, list[Block]]:
    """Join the blocks' texts with blank lines; record offsets and section paths."""
    parts: list[str] = []
    blocks: list[Block] = []
    stack: list[tuple[int, str]] = []
    pos = 0
    for kind, level, text in raw:
        if not text.strip():
            continue
        if kind == "heading":
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
        pos += 2 if parts else 0
        blocks.append(Block(kind=kind, level=level, start=pos, end=pos + len(text),
                            section_path=[title for _, title in stack]))
        parts.append(text)
        pos += len(text)
    return "\n\n".join(parts), blocks


# ---- plain text -------------------------------------------------------------------------

def _text_blocks(text: str) -> tuple[str, list[RawBlock]]:
    return "", [("paragraph", 0, p.strip()) for p in re.split(r"\n\s*\n", text)]


# ---- Markdown ---------------------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
TABLE_ROW = re.compile(r"^ {0,3}\|")
TABLE_RULE = re.compile(r"^[\s|:-]*-[\s|:-]*$")
LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
EMPHASIS = re.compile(r"\*\*|__")


def _inline(text: str) -> str:
    """Inline markup off: links and images keep their text, bold markers go."""
    return EMPHASIS.sub("", LINK.sub(r"\1", text))


def _markdown_blocks(text: str) -> tuple[str, list[RawBlock]]:
    lines = text.split("\n")
    raw: list[RawBlock] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        for reader in READERS:
            got = reader(lines, i)
            if got is not None:
                block, i = got
                raw += [block] if block else []
                break
    title = next((t for kind, level, t in raw if kind == "heading" and level == 1), "")
    return title, raw


Read = Optional[tuple[Optional[RawBlock], int]]


def _read_fence(lines: list[str], i: int) -> Read:
    m = FENCE.match(lines[i])
    if not m:
        return None
    mark = m.group(1)
    j = i + 1
    while j < len(lines) and not _closes_fence(lines[j], mark):
        j += 1
    return ("code", 0, "\n".join(lines[i + 1:j]).strip("\n")), j + 1


def _closes_fence(line: str, mark: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(mark) and set(stripped) == {mark[0]}


def _read_heading(lines: list[str], i: int) -> Read:
    m = ATX.match(lines[i])
    if not m:
        return None
    return ("heading", len(m.group(1)), _inline((m.group(2) or "").strip())), i + 1


def _read_rule(lines: list[str], i: int) -> Read:
    return (None, i + 1) if RULE.match(lines[i]) else None


def _read_table(lines: list[str], i: int) -> Read:
    j = i
    while j < len(lines) and TABLE_ROW.match(lines[j]):
        j += 1
    rows = [_inline(row.strip()) for row in lines[i:j] if not TABLE_RULE.match(row)]
    return (("table", 0, "\n".join(rows)), j) if j > i else None


def _read_list(lines: list[str], i: int) -> Read:
    if not LIST_ITEM.match(lines[i]):
        return None
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if line.strip() and (ATX.match(line) or FENCE.match(line) or RULE.match(line)):
            break
        if not line.strip() and not _list_continues(lines, j + 1):
            break
        j += 1
    items = [_inline(line) for line in lines[i:j] if line.strip()]
    return ("list", 0, "\n".join(items)), j


def _list_continues(lines: list[str], j: int) -> bool:
    if j >= len(lines) or not lines[j].strip():
        return False
    return bool(LIST_ITEM.match(lines[j])) or lines[j].startswith("  ")


def _starts_block(line: str) -> bool:
    patterns = (ATX, FENCE, RULE, LIST_ITEM, TABLE_ROW)
    return any(p.match(line) for p in patterns)


def _read_paragraph(lines: list[str], i: int) -> Read:
    j = i
    while j < len(lines) and lines[j].strip():
        if j > i and SETEXT.match(lines[j]):
            level = 1 if lines[j].strip()[0] == "=" else 2
            return ("heading", level, _inline(" ".join(s.strip() for s in lines[i:j]))), j + 1
        if j > i and _starts_block(lines[j]):
            break
        j += 1
    return ("paragraph", 0, _inline(" ".join(s.strip() for s in lines[i:j]))), j


READERS = (_read_fence, _read_heading, _read_rule, _read_table, _read_list, _read_paragraph)

PARSERS = {"markdown": _markdown_blocks, "text": _text_blocks, "html": html_blocks}
