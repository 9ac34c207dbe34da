"""Chunk: a ParsedDocument → token-bounded chunks that follow the document's structure.

The rules, in order:
1. A chunk never crosses a section (a run of blocks with the same section_path). A section
   that holds only headings joins the subsection that follows it, so "# Guide / ## Install"
   is not a chunk of its own.
2. A block that fits in `max_tokens` is never split. Consecutive blocks of one section are
   merged greedily while the chunk still fits.
3. A block over the budget is split at line breaks (code, lists, tables), then at sentence
   ends, then between words. A single word over the budget stays whole: the only way a chunk
   can exceed `max_tokens`.
4. Consecutive chunks of one section overlap: the next chunk starts with the last sentences
   of the previous one, as many as fit in `overlap_tokens` (the last words when even one
   sentence is too long), and only while the chunk stays within `max_tokens`.

A chunk's text is always the exact slice `doc.text[start:end]`, overlap included.
Token counts come from `count`; the default `approx_tokens` needs no tokenizer.
"""
from __future__ import annotations

import hashlib
import re
from typing import Callable, Iterable

import msgspec

from operators.documents.parse import Block, ParsedDocument

Span = tuple[int, int]
Counter = Callable[[str], int]

WORD = re.compile(r"\S+")
LINE = re.compile(r"[^\n]+")
SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|\n")


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    doc_id: str
    index: int
    text: str                            # == the document's text[start:end]
    start: int
    end: int
    section_path: list[str] = []
    title: str = ""
    token_count: int = 0

    @property
    def id(self) -> str:
        return f"{self.doc_id}#{self.index}"


def approx_tokens(text: str) -> int:
    """Whitespace-separated words × 1.3, rounded up: close to a BPE count for English prose
    (short words are one token, long and rare words several). Integer arithmetic, so that
    10 words are 13 tokens, not 14."""
    return (len(text.split()) * 13 + 9) // 10


def content_hash(data: bytes) -> str:
    """SHA-256 of a document's bytes, hex: an unchanged document is not parsed again."""
    return hashlib.sha256(data).hexdigest()


def chunk_document(doc: ParsedDocument, doc_id: str, max_tokens: int = 256,
                   overlap_tokens: int = 32, count: Counter = approx_tokens) -> list[Chunk]:
    if max_tokens < 1 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"need 0 <= overlap_tokens ({overlap_tokens}) < max_tokens ({max_tokens})")
    spans: list[tuple[list[str], Span]] = []
    for path, blocks in _sections(doc.blocks):
        pieces = [p for b in blocks for p in _pieces(doc.text, b, max_tokens, count)]
        spans += [(path, span) for span in _pack(doc.text, pieces, max_tokens, overlap_tokens, count)]
    return [Chunk(doc_id=doc_id, index=i, text=doc.text[s:e], start=s, end=e, section_path=path,
                  title=doc.title, token_count=count(doc.text[s:e]))
            for i, (path, (s, e)) in enumerate(spans)]


def _sections(blocks: Iterable[Block]) -> list[tuple[list[str], list[Block]]]:
    groups: list[tuple[list[str], list[Block]]] = []
    for b in blocks:
        if groups and groups[-1][0] == b.section_path:
            groups[-1][1].append(b)
        elif groups and _leads_into(groups[-1], b):
            groups[-1] = (b.section_path, groups[-1][1] + [b])
        else:
            groups.append((b.section_path, [b]))
    return groups


def _leads_into(group: tuple[list[str], list[Block]], b: Block) -> bool:
    """A group of headings only, and b is inside their section."""
    path, blocks = group
    only_headings = all(x.kind == "heading" for x in blocks)
    return only_headings and b.section_path[:len(path)] == path


def _pieces(text: str, b: Block, max_tokens: int, count: Counter) -> list[Span]:
    prose = (_sentences, _words)
    splitters = {"code": (_lines, _words), "table": (_lines, _words)}.get(b.kind)
    if b.kind == "list":
        splitters = (_lines,) + prose
    return _split(text, (b.start, b.end), splitters or prose, max_tokens, count)


def _split(text: str, span: Span, splitters: tuple, max_tokens: int, count: Counter) -> list[Span]:
    if not splitters or count(text[span[0]:span[1]]) <= max_tokens:
        return [span]
    first, rest = splitters[0], splitters[1:]
    return [p for unit in first(text, *span) for p in _split(text, unit, rest, max_tokens, count)]


def _pack(text: str, pieces: list[Span], max_tokens: int, overlap: int,
          count: Counter) -> list[Span]:
    """Greedy: each chunk takes pieces while it fits; from the second on it starts with an
    overlap carried from the previous chunk."""
    spans: list[Span] = []
    i = 0
    while i < len(pieces):
        start = pieces[i][0]
        if spans and overlap:
            start = _overlap_start(text, spans[-1], pieces[i], overlap, max_tokens, count)
        j = i + 1
        while j < len(pieces) and count(text[start:pieces[j][1]]) <= max_tokens:
            j += 1
        spans.append((start, pieces[j - 1][1]))
        i = j
    return spans


def _overlap_start(text: str, prev: Span, nxt: Span, overlap: int, max_tokens: int,
                   count: Counter) -> int:
    """The earliest sentence start (else word start) in prev whose tail fits in overlap."""
    for units in (_sentences, _words):
        best = None
        for s, _ in reversed(units(text, *prev)):
            if count(text[s:prev[1]]) > overlap or count(text[s:nxt[1]]) > max_tokens:
                break
            best = s
        if best is not None:
            return best
    return nxt[0]


def _trimmed(text: str, s: int, e: int) -> list[Span]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return [(s, e)] if s < e else []


def _sentences(text: str, s: int, e: int) -> list[Span]:
    spans: list[Span] = []
    pos = s
    for m in SENTENCE_END.finditer(text, s, e):
        spans += _trimmed(text, pos, m.end())
        pos = m.end()
    return spans + _trimmed(text, pos, e)


def _lines(text: str, s: int, e: int) -> list[Span]:
    return [span for m in LINE.finditer(text, s, e) for span in _trimmed(text, *m.span())]


def _words(text: str, s: int, e: int) -> list[Span]:
    return [m.span() for m in WORD.finditer(text, s, e)]
