"""PDF → (title, blocks with section paths, warnings) with pypdf's plain text extraction.

pypdf gives each page's text as lines, and, through its text visitor, where each piece of text
sits and how large its font is. From that we rebuild paragraphs: a line starts a new paragraph
after a blank line, a larger vertical gap than the page's usual line spacing, a change of font
size, or a bullet; inside a paragraph soft-wrapped lines are joined with a space and
"exam-\\nple" becomes "example". ("layout" extraction was tried: it pads lines with spaces to
mimic columns and gives no font sizes, which is worse for paragraphs and headings.)

Headings come from the PDF outline (bookmarks) when there is one: an entry whose title
matches a paragraph on its page makes that paragraph a heading, and an entry whose title is
not found still opens its section at the top of its page. Without an outline, a short
paragraph set clearly larger than the body text is a heading. Every block's section path is
the enclosing headings followed by its page, e.g. ["2 Methods", "page 5"] or just ["page 5"],
so that a citation can always name the page.

Bad PDFs raise Reject: password-protected, damaged or truncated, over MAX_PDF_PAGES, or
without extractable text (a scan). No pypdf exception escapes as anything but Reject.
"""
from __future__ import annotations

import io
import re
from typing import Callable, NamedTuple, TypeVar

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError

from operators.base import Reject
from operators.documents.pdflines import Para, page_paragraphs

MAX_PDF_PAGES = 2_000
HEADING_SCALE = 1.15          # a paragraph this much larger than the body text may be a heading
HEADING_MAX_CHARS = 120
PAGE_NUMBER = re.compile(r"(page\s+)?\d{1,5}(\s*(of|/)\s*\d{1,5})?", re.IGNORECASE)

SectionBlock = tuple[str, int, str, list[str]]   # kind, level, text, section path
T = TypeVar("T")


class Entry(NamedTuple):
    """One outline (bookmark) entry: its title, 0-based page and depth (1 = top level)."""

    title: str
    page: int
    level: int


def read_pdf(data: bytes) -> tuple[str, list[SectionBlock], list[str]]:
    reader = _open(data)
    count = _guarded(lambda: len(reader.pages))
    if count > MAX_PDF_PAGES:
        raise Reject(f"PDF has {count:,} pages; at most {MAX_PDF_PAGES:,} are read")
    warnings: list[str] = []
    pages = [_page_paragraphs(reader, n, warnings) for n in range(count)]
    if not any(pages):
        if len(warnings) == count and count:
            raise Reject(f"PDF is damaged: no page could be read ({warnings[0]})")
        raise Reject("PDF has no extractable text (scanned? OCR is not supported)")
    empty = sum(1 for p in pages if not p)
    if empty:
        warnings.append(f"{empty} of {count} pages have no extractable text (scanned?)")
    outline = _outline(reader, warnings)
    pages = _mark_outline_headings(pages, outline) if outline else _mark_font_headings(pages)
    blocks = _sectioned(pages, outline)
    first_heading = next((text for kind, _, text, _ in blocks if kind == "heading"), "")
    return _info_title(reader) or first_heading, blocks, warnings


def _guarded(read: Callable[[], T]) -> T:
    """Run a pypdf call; any failure is a damaged PDF (pypdf raises far more than PdfReadError)."""
    try:
        return read()
    except Reject:
        raise
    except FileNotDecryptedError:
        raise Reject("PDF is password-protected") from None
    except (MemoryError, RecursionError) as exc:
        raise Reject(f"PDF is damaged or too complex to read ({type(exc).__name__})") from None
    except Exception as exc:
        raise Reject(f"PDF is damaged: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _open(data: bytes) -> PdfReader:
    if b"%PDF-" not in data[:1024]:
        raise Reject("not a PDF: the file does not start with %PDF-")
    if b"%%EOF" not in data[-2048:]:
        raise Reject("PDF is damaged: the file is truncated (no %%EOF marker at its end)")
    reader = _guarded(lambda: PdfReader(io.BytesIO(data), strict=False))
    if _guarded(lambda: reader.is_encrypted) and not _opens_without_password(reader):
        raise Reject("PDF is password-protected")
    return reader


def _opens_without_password(reader: PdfReader) -> bool:
    """Many PDFs are encrypted only to restrict printing or copying: the empty user
    password opens them, and their text may be read."""
    try:
        return bool(reader.decrypt(""))
    except Exception:   # e.g. an unsupported algorithm: as good as locked
        return False


def _page_paragraphs(reader: PdfReader, n: int, warnings: list[str]) -> list[Para]:
    """One page's paragraphs; a page pypdf cannot read is skipped with a warning."""
    try:
        paras = page_paragraphs(reader.pages[n])
    except Exception as exc:   # MemoryError and RecursionError too: one bad page, not the PDF
        warnings.append(f"page {n + 1} could not be read: {_describe(exc)}")
        return []
    return [p for p in paras if not PAGE_NUMBER.fullmatch(p.text)]


# ---- headings --------------------------------------------------------------------------

def _outline(reader: PdfReader, warnings: list[str]) -> list[Entry]:
    """The outline flattened in document order; a broken outline is ignored with a warning."""
    try:
        entries = _flatten(reader, reader.outline, 1)
    except Exception as exc:
        warnings.append(f"PDF outline could not be read ({_describe(exc)}); sections by page")
        return []
    return sorted(entries, key=lambda e: e.page)   # stable: same-page entries keep their order


def _flatten(reader: PdfReader, items: list, level: int) -> list[Entry]:
    entries: list[Entry] = []
    for item in items:
        if isinstance(item, list):
            entries += _flatten(reader, item, level + 1)
            continue
        page = reader.get_destination_page_number(item)
        title = " ".join(str(item.title or "").split())
        if page is not None and page >= 0 and title:
            entries.append(Entry(title=title, page=page, level=min(level, 6)))
    return entries


def _key(text: str) -> str:
    """What must agree for a paragraph to be an outline title: letters and digits."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _mark_outline_headings(pages: list[list[Para]], outline: list[Entry]) -> list[list[Para]]:
    """Paragraphs that match an outline title on their page become headings of its level."""
    marked = []
    for n, paras in enumerate(pages):
        wanted = {_key(e.title): e.level for e in outline if e.page == n}
        marked.append([p._replace(kind="heading", level=wanted[_key(p.text)])
                       if _key(p.text) in wanted and p.kind != "list" else p for p in paras])
    return marked


def _mark_font_headings(pages: list[list[Para]]) -> list[list[Para]]:
    """Without an outline: short paragraphs in a clearly larger font than the body text are
    headings; the largest such size is level 1."""
    body = _body_size(pages)
    if not body:
        return pages
    sizes = sorted({round(p.size) for paras in pages for p in paras if _looks_like_heading(p, body)},
                   reverse=True)
    level = {size: min(i + 1, 6) for i, size in enumerate(sizes)}
    return [[p._replace(kind="heading", level=level[round(p.size)])
             if _looks_like_heading(p, body) else p for p in paras] for paras in pages]


def _looks_like_heading(p: Para, body: float) -> bool:
    return (p.kind == "paragraph" and p.size >= body * HEADING_SCALE and p.lines <= 2
            and len(p.text) <= HEADING_MAX_CHARS)


def _body_size(pages: list[list[Para]]) -> float:
    """The font size that sets the most characters."""
    chars: dict[float, int] = {}
    for paras in pages:
        for p in paras:
            if p.size:
                chars[round(p.size, 1)] = chars.get(round(p.size, 1), 0) + len(p.text)
    return max(chars, key=chars.__getitem__, default=0.0)


# ---- sections ----------------------------------------------------------------------------

def _sectioned(pages: list[list[Para]], outline: list[Entry]) -> list[SectionBlock]:
    """Blocks with section paths: the open headings, then the page."""
    blocks: list[SectionBlock] = []
    stack: list[tuple[int, str]] = []
    for n, paras in enumerate(pages):
        matched = {_key(p.text) for p in paras if p.kind == "heading"}
        for entry in outline:   # entries not found in the text open their section here
            if entry.page == n and _key(entry.title) not in matched:
                _push(stack, entry.level, entry.title)
        for p in paras:
            if p.kind == "heading":
                _push(stack, p.level, p.text)
            blocks.append((p.kind, p.level, p.text, [t for _, t in stack] + [f"page {n + 1}"]))
    return blocks


def _push(stack: list[tuple[int, str]], level: int, title: str) -> None:
    while stack and stack[-1][0] >= level:
        stack.pop()
    stack.append((level, title))


def _info_title(reader: PdfReader) -> str:
    """The document information /Title, unless it is empty or a placeholder."""
    try:
        title = " ".join(str((reader.metadata or {}).get("/Title") or "").split())
    except Exception:
        return ""
    if title.casefold() in {"untitled", "title", "document", "microsoft word"}:
        return ""
    return re.sub(r"^Microsoft Word - ", "", title)
