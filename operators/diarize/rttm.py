"""Speaker turns and the NIST files that carry them: RTTM (who spoke when) and UEM (which
parts of a recording are scored).

RTTM: `SPEAKER <file> <channel> <start_s> <duration_s> <NA> <NA> <speaker> <NA> <NA>`, one
turn a line; other record types (SPKR-INFO, LEXEME, ...) are skipped. UEM:
`<file> <channel> <start_s> <end_s>`. Both may hold many files; readers return per-file lists.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import msgspec


class Turn(msgspec.Struct, frozen=True, array_like=True):
    """One speaker talking from `start` to `end`, seconds from the start of the recording."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


class RttmError(ValueError):
    """A line that is not valid RTTM or UEM; the message names the line."""


def _lines(source: str | Path) -> list[str]:
    text = source.read_text() if isinstance(source, Path) else source
    return text.splitlines()


def read_rttm(source: str | Path) -> dict[str, list[Turn]]:
    """File id -> its turns, sorted by start. `source` is RTTM text or a path."""
    turns: dict[str, list[Turn]] = defaultdict(list)
    for number, line in enumerate(_lines(source), 1):
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")) or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise RttmError(f"RTTM line {number}: {len(fields)} fields, need at least 8: {line!r}")
        try:
            start, duration = float(fields[3]), float(fields[4])
        except ValueError:
            raise RttmError(f"RTTM line {number}: start/duration not numbers: {line!r}") from None
        if duration < 0:
            raise RttmError(f"RTTM line {number}: negative duration: {line!r}")
        turns[fields[1]].append(Turn(start, start + duration, fields[7]))
    return {f: sorted(t, key=lambda x: (x.start, x.end, x.speaker)) for f, t in turns.items()}


def write_rttm(file_id: str, turns: list[Turn]) -> str:
    """RTTM text for one file's turns (times to the millisecond)."""
    if any(c.isspace() for c in file_id):
        raise RttmError(f"file id {file_id!r} has white space, which RTTM cannot carry")
    return "".join(
        f"SPEAKER {file_id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> "
        f"{t.speaker} <NA> <NA>\n" for t in turns)


def read_uem(source: str | Path) -> dict[str, list[tuple[float, float]]]:
    """File id -> its scored regions, sorted."""
    regions: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for number, line in enumerate(_lines(source), 1):
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if len(fields) < 4:
            raise RttmError(f"UEM line {number}: {len(fields)} fields, need 4: {line!r}")
        try:
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            raise RttmError(f"UEM line {number}: start/end not numbers: {line!r}") from None
        regions[fields[0]].append((start, end))
    return {f: sorted(r) for f, r in regions.items()}


def write_uem(file_id: str, regions: list[tuple[float, float]]) -> str:
    return "".join(f"{file_id} 1 {s:.3f} {e:.3f}\n" for s, e in regions)
