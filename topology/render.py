"""Human renderings of results."""
from __future__ import annotations

from schemas import Progress, Transcript


def clock(seconds: float) -> str:
    h, rem = divmod(max(0.0, seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:05.2f}"


def transcript_text(t: Transcript) -> str:
    lines = [f"[{clock(s.start)} --> {clock(s.end)}] {s.text.strip()}"
             for s in t.segments if s.text.strip()]
    if not lines:
        lines = ["(no speech found)"]
    for w in t.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def progress_line(p: Progress) -> str:
    amount = ""
    if p.total:
        amount = f" {p.done:.0f}/{p.total:.0f}"
    elif p.done:
        amount = f" {p.done:.0f}"
    retry = f" (attempt {p.attempt})" if p.attempt > 1 else ""
    note = f": {p.note}" if p.note else ""
    return f"{p.operator}: {p.stage.value}{amount}{retry}{note}"
