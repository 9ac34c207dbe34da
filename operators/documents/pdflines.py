"""One PDF page → its paragraphs: pypdf's text lines, with position and font size, grouped.

pypdf's plain extraction writes a page's text in content-stream order, one output line per
baseline. Its text visitor reports every piece of that output with the text matrix and font
size it was drawn with, so joining the pieces gives the same text and each line also gets a
baseline (y) and a font size. When the pieces do not add up to pypdf's text (some text
reached the output without a visitor call), the lines are kept without geometry.

A line starts a new paragraph after a blank line, after a baseline gap clearly larger than
the page's usual line spacing, at a change of font size, and at a bullet (consecutive bullet
items make one list block). Inside a paragraph soft-wrapped lines are joined with a space
and "exam-" + "ple" becomes "example". pypdf's "layout" mode was not used: it pads lines
with spaces to mimic columns and reports no font sizes, worse for paragraphs and headings.
"""
from __future__ import annotations

import math
import re
from statistics import quantiles
from typing import Any, NamedTuple, Optional

PARAGRAPH_GAP = 1.35      # a baseline gap this many times the usual line spacing starts a paragraph
SIZE_CHANGE = 0.1         # so does a font size that differs by more than this fraction
BULLET = re.compile(r"[\u2022\u25cf\u25e6\u25aa\u25a0\u2023\u2043\u25b8\u25ba\uf0b7\uf0a7]\s*")
HYPHENATED = re.compile(r"[^\W\d_]-$")   # "exam-" at a line end, not "1-" or " -"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")
LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi",
                           "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st", "\u00a0": " "})


class Line(NamedTuple):
    text: str
    y: Optional[float]         # baseline in page space; None when unknown or rotated
    size: float                # font size in page space; 0 when unknown


class Para(NamedTuple):
    kind: str                  # "paragraph", "list" or, once headings are found, "heading"
    text: str
    size: float                # the smallest font size of its lines (0: unknown)
    lines: int
    y: Optional[float] = None  # its first baseline
    level: int = 0


def page_paragraphs(page: Any) -> list[Para]:
    return _merge_lists([_para(g) for g in _groups(page_lines(page))])


def page_lines(page: Any) -> list[Line]:
    pieces: list[tuple[str, Optional[float], float]] = []

    def visit(text: str, cm: list, tm: list, font: Any, font_size: float) -> None:
        if text:
            pieces.append((text, *_position(cm, tm, font_size)))

    plain = page.extract_text(visitor_text=visit)
    if "".join(text for text, _, _ in pieces) != plain:
        return [Line(_clean(text), None, 0.0) for text in plain.split("\n")]
    return _lines(pieces)


def _position(cm: list, tm: list, font_size: float) -> tuple[Optional[float], float]:
    """Baseline y and font size in page space (text matrix × current transformation matrix)."""
    a, b, c, d, _, f = _multiply(tm, cm)
    size = abs(float(font_size)) * math.hypot(c, d)
    upright = a > 0 and abs(b) + abs(c) <= 0.01 * a
    return (f if upright else None), size


def _multiply(m: list, n: list) -> tuple[float, ...]:
    m, n = [float(x) for x in m[:6]], [float(x) for x in n[:6]]
    return (m[0] * n[0] + m[1] * n[2], m[0] * n[1] + m[1] * n[3],
            m[2] * n[0] + m[3] * n[2], m[2] * n[1] + m[3] * n[3],
            m[4] * n[0] + m[5] * n[2] + n[4], m[4] * n[1] + m[5] * n[3] + n[5])


def _lines(pieces: list[tuple[str, Optional[float], float]]) -> list[Line]:
    """Cut the pieces at newlines; a line's y and size come from its visible pieces."""
    lines: list[Line] = []
    parts: list[str] = []
    y: Optional[float] = None
    size = 0.0
    for text, piece_y, piece_size in pieces:
        segments = text.split("\n")
        for i, segment in enumerate(segments):
            if i:   # a newline ended the line before this segment
                lines.append(Line(_clean("".join(parts)), y, size))
                parts, y, size = [], None, 0.0
            if segment.strip():
                y = piece_y if not parts or y is None else y
                size = max(size, piece_size)
            parts.append(segment)
    lines.append(Line(_clean("".join(parts)), y, size))
    return lines


def _clean(text: str) -> str:
    return " ".join(CONTROL.sub("", text.translate(LIGATURES)).split())


def _groups(lines: list[Line]) -> list[list[Line]]:
    """Consecutive lines of one paragraph (or one bullet item)."""
    leading = _usual_line_gap(lines)
    groups: list[list[Line]] = []
    prev: Optional[Line] = None
    for line in lines:
        if not line.text:
            prev = None          # a blank line always ends a paragraph
            continue
        if prev is None or BULLET.match(line.text) or _breaks(prev, line, leading):
            groups.append([line])
        else:
            groups[-1].append(line)
        prev = line
    return groups


def _usual_line_gap(lines: list[Line]) -> Optional[float]:
    """The lower quartile of the page's baseline gaps: the spacing inside paragraphs even
    when many paragraphs are a single line."""
    gaps = [a.y - b.y for a, b in zip(lines, lines[1:])
            if a.text and b.text and a.y is not None and b.y is not None and a.y > b.y]
    return quantiles(gaps, n=4)[0] if len(gaps) >= 3 else None


def _breaks(prev: Line, line: Line, leading: Optional[float]) -> bool:
    larger = max(prev.size, line.size)
    if prev.size and line.size and abs(prev.size - line.size) > SIZE_CHANGE * larger:
        return True
    if prev.y is None or line.y is None:
        return False
    size = line.size or prev.size or 10.0
    gap = prev.y - line.y
    # Capped: on a page of one-line paragraphs every gap is a paragraph gap. Splitting too
    # often costs little (the chunker merges small blocks), merging headings into text more.
    usual = min(leading or 1.2 * size, 1.25 * size)
    return gap < -0.5 * size or gap > PARAGRAPH_GAP * usual   # moved up: a new column or box


def _para(lines: list[Line]) -> Para:
    sizes = [line.size for line in lines if line.size]
    text = _join([line.text for line in lines])
    kind = "paragraph"
    if BULLET.match(text):
        kind, text = "list", "\u2022 " + BULLET.sub("", text, count=1)
    return Para(kind=kind, text=text, size=min(sizes, default=0.0), lines=len(lines), y=lines[0].y)


def _join(lines: list[str]) -> str:
    """Soft-wrapped lines into one, with a space; a word hyphenated at the line end is
    joined: "exam-" + "ple" → "example", and "Jean-" + "Paul" → "Jean-Paul" (the hyphen
    stays before a capital or a digit)."""
    parts: list[str] = []
    for line in lines:
        if parts and parts[-1].endswith("\u00ad"):
            parts[-1] = parts[-1][:-1]
        elif parts and HYPHENATED.search(parts[-1]):
            if line[:1].islower():
                parts[-1] = parts[-1][:-1]
        elif parts:
            parts.append(" ")
        parts.append(line)
    return "".join(parts).replace("\u00ad", "")


def _merge_lists(paras: list[Para]) -> list[Para]:
    """Consecutive bullet items make one list block, an item a line."""
    merged: list[Para] = []
    for p in paras:
        if merged and p.kind == merged[-1].kind == "list":
            last = merged[-1]
            merged[-1] = last._replace(text=f"{last.text}\n{p.text}", lines=last.lines + p.lines,
                                       size=min(last.size or p.size, p.size or last.size))
        else:
            merged.append(p)
    return merged
