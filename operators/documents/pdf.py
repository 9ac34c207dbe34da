"""PDF → (title, blocks with section paths, warnings) with pypdf.

Each page becomes paragraphs in pdflines.py. Page numbers go, and so do running headers and
footers (the same short text first or last on many pages, kept where it first appears).

Headings come from the PDF outline (bookmarks) when there is one: a paragraph on an entry's
page that reads as its title, section numbers aside, becomes a heading of the entry's depth;
an entry not found in the text still opens its section, after the page's earlier headings.
Without an outline, a short paragraph set clearly larger than the body text is a heading.
A block's section path is its enclosing headings and then its page, ["2 Methods", "page 5"]
or just ["page 5"], so that a citation can always name the page. The title is the document
information /Title, else the largest text on the first page, else the first heading.

Bad PDFs raise Reject: password-protected, damaged or truncated, over MAX_PDF_PAGES, or
without extractable text (a scan). No pypdf exception escapes as anything but Reject.
"""
from __future__ import annotations

import io
import re
from collections import Counter
from typing import Callable, NamedTuple, TypeVar

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError

from operators.base import Reject
from operators.documents.pdflines import Para, page_paragraphs

MAX_PDF_PAGES = 2_000
HEADING_SCALE = 1.15          # a paragraph this much larger than the body text may be a heading
HEADING_MAX_CHARS = 120
TRUNCATED = "the file is truncated (no %%EOF marker at its end)"
PAGE_NUMBER = re.compile(r"(page\s+)?(\d{1,5}(\s*(of|/)\s*\d{1,5})?|[ivxlc]{1,7})", re.IGNORECASE)
NUMBERING = re.compile(r"^((chapter|section|appendix|part)\s+)?([0-9]+|[a-z]|[ivxlc]+)"
                       r"(\.[0-9]+)*\.?\s+", re.IGNORECASE)   # "2.1 ", "Chapter 3. ", "A. "

SectionBlock = tuple[str, int, str, list[str]]   # kind, level, text, section path
T = TypeVar("T")


class Entry(NamedTuple):
    """One outline (bookmark) entry: its title, 0-based page and depth (1 = top level)."""

    title: str
    page: int
    level: int


def read_pdf(data: bytes) -> tuple[str, list[SectionBlock], list[str]]:
    if b"%PDF-" not in data[:1024]:
        raise Reject("not a PDF: the file does not start with %PDF-")
    # pypdf recovers from much, so a missing end marker is only a warning when it coped
    truncated = b"%%EOF" not in data[-4096:]
    try:
        title, blocks, warnings = _read(data)
    except Reject as err:
        if truncated and err.reason.startswith("PDF is damaged"):
            raise Reject(f"PDF is damaged: {TRUNCATED}") from None
        raise
    if truncated:
        warnings.append("no %%EOF marker at the end of the file (truncated?): pages may be missing")
    return title, blocks, warnings


def _read(data: bytes) -> tuple[str, list[SectionBlock], list[str]]:
    reader = _open(data)
    count = _guarded(lambda: len(reader.pages))
    if count > MAX_PDF_PAGES:
        raise Reject(f"PDF has {count:,} pages; at most {MAX_PDF_PAGES:,} are read")
    warnings: list[str] = []
    read = [_page_paragraphs(reader, n, warnings) for n in range(count)]
    pages = [paras or [] for paras in read]
    if not any(pages):
        if count and all(paras is None for paras in read):
            raise Reject(f"PDF is damaged: no page could be read ({warnings[0]})")
        raise Reject("PDF has no extractable text (scanned? OCR is not supported)")
    empty = sum(1 for paras in read if paras == [])
    if empty:
        warnings.append(f"{empty} of {count} pages have no extractable text (scanned?)")
    pages, body = _without_running_lines(pages), _body_size(pages)
    outline = _outline(reader, warnings)
    pages = _mark_outline_headings(pages, outline) if outline else _mark_font_headings(pages, body)
    blocks = _sectioned(pages, outline)
    first_heading = next((text for kind, _, text, _ in blocks if kind == "heading"), "")
    return _info_title(reader) or _display_title(pages, body) or first_heading, blocks, warnings


def _without_running_lines(pages: list[list[Para]]) -> list[list[Para]]:
    """Running headers and footers ("Chapter 2: Methods 14") out: a short first or last
    paragraph whose letters recur at the same height, first or last, on many pages is kept
    only where it first appears (often the title page)."""
    edges = Counter(k for paras in pages for k in {_running_key(paras[i]) for i in _ends(paras)} if k)
    running = {k for k, n in edges.items() if n >= max(3, len(pages) // 5)}
    seen: set[tuple] = set()
    kept = []
    for paras in pages:
        keep = []
        for i, p in enumerate(paras):
            k = _running_key(p) if i in _ends(paras) else None
            if k in running and k in seen:
                continue
            seen.add(k)
            keep.append(p)
        kept.append(keep)
    return kept


def _ends(paras: list[Para]) -> set[int]:
    """Where a page's first and last paragraph are; none when it has only one (content)."""
    return {0, len(paras) - 1} if len(paras) > 1 else set()


def _running_key(p: Para) -> tuple | None:
    if len(p.text) > 150 or p.y is None:
        return None
    return "".join(ch for ch in p.text.casefold() if ch.isalpha()), round(p.y)


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


def _describe(exc: BaseException, limit: int = 160) -> str:
    """pypdf's message, short: some quote raw bytes at length."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _open(data: bytes) -> PdfReader:
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


def _page_paragraphs(reader: PdfReader, n: int, warnings: list[str]) -> list[Para] | None:
    """One page's paragraphs; None, and a warning, for a page pypdf cannot read."""
    try:
        paras = page_paragraphs(reader.pages[n])
    except Exception as exc:   # MemoryError and RecursionError too: one bad page, not the PDF
        warnings.append(f"page {n + 1} could not be read: {_describe(exc)}")
        return None
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
    """What must agree for a paragraph to be an outline title: letters and digits, after
    any section number ("2.1 Data" and the entry "Data" agree)."""
    text = NUMBERING.sub("", text, count=1) or text
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _by_page(outline: list[Entry]) -> dict[int, list[Entry]]:
    pages: dict[int, list[Entry]] = {}
    for entry in outline:
        pages.setdefault(entry.page, []).append(entry)
    return pages


def _mark_outline_headings(pages: list[list[Para]], outline: list[Entry]) -> list[list[Para]]:
    """Paragraphs that match an outline title on their page become headings of its level."""
    by_page = _by_page(outline)
    marked = []
    for n, paras in enumerate(pages):
        wanted = {_key(e.title): e.level for e in by_page.get(n, [])}
        marked.append([p._replace(kind="heading", level=wanted[_key(p.text)])
                       if p.kind != "list" and _key(p.text) in wanted else p for p in paras])
    return marked


def _mark_font_headings(pages: list[list[Para]], body: float) -> list[list[Para]]:
    """Without an outline: short paragraphs in a clearly larger font than the body text are
    headings; the largest such size is level 1."""
    if not body:
        return pages
    sizes = sorted({round(p.size) for paras in pages for p in paras if _looks_like_heading(p, body)},
                   reverse=True)
    level = {size: min(i + 1, 6) for i, size in enumerate(sizes)}
    return [[p._replace(kind="heading", level=level[round(p.size)])
             if _looks_like_heading(p, body) else p for p in paras] for paras in pages]


def _looks_like_heading(p: Para, body: float) -> bool:
    return (p.kind != "list" and p.size >= body * HEADING_SCALE and p.lines <= 2
            and len(p.text) <= HEADING_MAX_CHARS)


def _display_title(pages: list[list[Para]], body: float) -> str:
    """The largest short text on the first page with text, when larger than the body."""
    first = next((paras for paras in pages if paras), [])
    big = max(first, key=lambda p: p.size, default=None)
    return big.text if big and body and _looks_like_heading(big, body) else ""


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
    """Blocks with section paths: the open headings, then the page. An outline entry whose
    title is not on its page opens its section where it falls among the page's headings."""
    by_page = _by_page(outline)
    blocks: list[SectionBlock] = []
    stack: list[tuple[int, str]] = []

    def emit(paras: list[Para], page: int) -> None:
        for p in paras:
            if p.kind == "heading":
                _push(stack, p.level, p.text)
            blocks.append((p.kind, p.level, p.text, [t for _, t in stack] + [f"page {page + 1}"]))

    for n, paras in enumerate(pages):
        done = 0
        for entry in by_page.get(n, []):
            k = _find_heading(paras, done, entry.title)
            if k is None:
                _push(stack, entry.level, entry.title)
            else:
                emit(paras[done:k + 1], n)
                done = k + 1
        emit(paras[done:], n)
    return blocks


def _find_heading(paras: list[Para], start: int, title: str) -> int | None:
    key = _key(title)
    return next((i for i in range(start, len(paras))
                 if paras[i].kind == "heading" and _key(paras[i].text) == key), None)


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
