"""Parse: the bytes of a document → a ParsedDocument.

Markdown, plain text and HTML (htmltext.py) are read here, PDF in pdf.py, meeting transcripts
(`patchwire transcribe --json` output, WebVTT, SubRip) in transcript.py. The extension picks
the reader, else the content type; bytes that start with %PDF are read as a PDF.

`ParsedDocument.text` is the document's plain text: its blocks one after another, separated
by one blank line, markup removed. Every Block (and every chunk cut from it later) refers to
that text by offsets, so a citation's span is `text[start:end]`, exactly. A block's
section_path is the headings that enclose it (a heading's ends with itself); a PDF block's
path then ends with its page ("page 3"); a transcript's blocks are all in ["Transcript"].

Bad input raises Reject with a reason a user can act on: an empty file, binary data, a
damaged, locked or scanned PDF, JSON that is not a transcript, an unsupported type, no text.
Text that is not UTF-8 is read as latin-1 and the document carries a warning.
"""
from __future__ import annotations

import logging
import re
from pathlib import PurePath
from typing import Iterable, Iterator, Literal, Optional

import msgspec

from operators.base import Reject
from operators.documents.htmltext import html_blocks
from operators.documents.pdf import read_pdf
from operators.documents.transcript import read_subtitles, read_transcript_json

log = logging.getLogger(__name__)

BlockKind = Literal["heading", "paragraph", "list", "code", "table"]
Format = Literal["markdown", "text", "html", "pdf", "transcript"]
Kind = Literal["markdown", "text", "html", "pdf", "json", "subtitles"]   # which reader
RawBlock = tuple[str, int, str]                 # kind, heading level (0 otherwise), text
SectionBlock = tuple[str, int, str, list[str]]  # kind, level, text, section path
Reading = tuple[str, list[SectionBlock], list[str]]  # title ("" = the file name), blocks, warnings


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


EXTENSIONS: dict[str, Kind] = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
    ".html": "html", ".htm": "html", ".pdf": "pdf", ".json": "json",
    ".vtt": "subtitles", ".srt": "subtitles",
}
CONTENT_TYPES: dict[str, Kind] = {
    "text/markdown": "markdown", "text/x-markdown": "markdown", "text/plain": "text",
    "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf",
    "application/json": "json", "text/vtt": "subtitles", "application/x-subrip": "subtitles",
}
MAGIC = (
    (b"PK\x03\x04", "looks like a ZIP archive, not a text document"),
    (b"PK\x05\x06", "looks like a ZIP archive, not a text document"),
    (b"\x1f\x8b", "looks like a gzip archive, not a text document"),
    (b"\x89PNG", "looks like a PNG image, not a text document"),
    (b"\xff\xd8\xff", "looks like a JPEG image, not a text document"),
)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")   # not tab, newlines or form feed
MAX_CONTROL_SHARE = 0.1       # real text has next to none; random bytes read as latin-1, ~23%


def parse_document(data: bytes, filename: str, content_type: str = "") -> ParsedDocument:
    """Parse one document; raise Reject when it is not a document we can read."""
    kind = _kind(data, filename, content_type)
    title, items, warnings = _read(kind, data)
    body, blocks = _assemble(items)
    if not blocks:
        raise Reject("no text in document")
    fmt: Format = "transcript" if kind in ("json", "subtitles") else kind
    title = title or PurePath(filename).stem
    return ParsedDocument(title=title, text=body, blocks=blocks, format=fmt, warnings=warnings)


def _kind(data: bytes, filename: str, content_type: str) -> Kind:
    if not data:
        raise Reject("empty file")
    ext = PurePath(filename).suffix.lower()
    mime = content_type.split(";")[0].strip().lower()
    declared = EXTENSIONS.get(ext) or CONTENT_TYPES.get(mime)
    for magic, reason in MAGIC:
        if data.startswith(magic):
            if declared == "pdf" and magic.startswith(b"PK"):
                reason = f"file {'named .pdf' if ext == '.pdf' else 'sent as a PDF'} is a ZIP archive"
            raise Reject(reason)
    if data.startswith(b"%PDF"):
        return "pdf"
    if declared:
        return declared
    what = f"extension {ext!r}" if ext else "no extension"
    supported = ", ".join(EXTENSIONS)
    raise Reject(f"unsupported document type ({what}{', ' + mime if mime else ''}); "
                 f"supported: {supported}")


def _read(kind: Kind, data: bytes) -> Reading:
    if kind == "pdf":
        return read_pdf(data)
    text, warnings = _decode(data)
    if kind == "json":
        blocks, notes = read_transcript_json(text)
        return "", blocks, warnings + notes
    if kind == "subtitles":
        return "", read_subtitles(_normalise(text)), warnings
    title, raw = PARSERS[kind](_normalise(text))
    return title, list(_heading_paths(raw)), warnings


def _decode(data: bytes) -> tuple[str, list[str]]:
    if data.startswith(UTF16_BOMS):
        return _not_binary(data.decode("utf-16", errors="replace")), []
    if b"\x00" in data:
        raise Reject("looks like binary data (it holds NUL bytes), not a text document")
    try:
        return _not_binary(data.decode("utf-8-sig")), []
    except UnicodeDecodeError as exc:
        text = _not_binary(data.decode("latin-1"))
        note = f"not valid UTF-8 (at byte {exc.start}): read as latin-1"
        log.warning(note)
        return text, [note]


def _not_binary(text: str) -> str:
    """Reject text full of control characters: binary data that happens to have no NUL."""
    sample = text[:65536]
    controls = len(CONTROL.findall(sample))
    if sample and controls > MAX_CONTROL_SHARE * len(sample):
        share = round(100 * controls / len(sample))
        raise Reject(f"looks like binary data ({share}% control characters), not a text document")
    return text


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _heading_paths(raw: Iterable[RawBlock]) -> Iterator[SectionBlock]:
    """Markdown and HTML: a block's section path is the headings that enclose it."""
    stack: list[tuple[int, str]] = []
    for kind, level, text in raw:
        if not text.strip():
            continue
        if kind == "heading":
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
        yield kind, level, text, [title for _, title in stack]


def _assemble(items: Iterable[SectionBlock]) -> tuple[str, list[Block]]:
    """Join the blocks' texts with blank lines and record their offsets."""
    parts: list[str] = []
    blocks: list[Block] = []
    pos = 0
    for kind, level, text, path in items:
        if not text.strip():
            continue
        pos += 2 if parts else 0
        blocks.append(Block(kind=kind, level=level, start=pos, end=pos + len(text),
                            section_path=path))
        parts.append(text)
        pos += len(text)
    return "\n\n".join(parts), blocks


# ---- plain text -------------------------------------------------------------------------

def _text_blocks(text: str) -> tuple[str, list[RawBlock]]:
    return "", [("paragraph", 0, p.strip()) for p in re.split(r"\n\s*\n", text)]


# ---- Markdown ---------------------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")   # closing #s: _atx_text
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
TABLE_ROW = re.compile(r"^ {0,3}\|")
# No pattern here may rescan a line from every position: a 5 MB line must stay linear.
TABLE_RULE = re.compile(r"^[\s|:-]*$")          # and holds a "-"
LINK = re.compile(r"!?\[([^\[\]]*)\]\((?:[^()]|\([^()]*\))*\)")
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
    return ("heading", len(m.group(1)), _inline(_atx_text(m.group(2) or ""))), i + 1


def _atx_text(text: str) -> str:
    """The heading without an optional closing run of #s ("## Title ##" → "Title")."""
    text = text.strip()
    bare = text.rstrip("#")
    return bare.rstrip() if bare != text and (not bare or bare[-1] in " \t") else text


def _read_rule(lines: list[str], i: int) -> Read:
    return (None, i + 1) if RULE.match(lines[i]) else None


def _read_table(lines: list[str], i: int) -> Read:
    j = i
    while j < len(lines) and TABLE_ROW.match(lines[j]):
        j += 1
    rows = [_inline(row.strip()) for row in lines[i:j]
            if not (TABLE_RULE.match(row) and "-" in row)]
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
