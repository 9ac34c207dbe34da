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


def answer_text(answer) -> str:
    """An Answer for a terminal: the text, then its citations with their quotes."""
    if answer is None:
        return "(no answer)"
    lines = [answer.text]
    for c in answer.citations:
        where = " › ".join([c.title] + [s for s in c.section_path if s and s != c.title])
        lines.append(f"  [{c.n}] {where} ({c.key.doc_id}, chars {c.start}-{c.end})")
        lines.append(f"      “{c.quote.strip()[:300]}”")
    if answer.outcome == "abstained" and answer.sources:
        lines.append("Closest passages:")
        for p in answer.sources[:3]:
            lines.append(f"  - {p.title or p.key.doc_id}: {p.text.strip()[:160]}…")
    if answer.removed:
        lines.append(f"({len(answer.removed)} unsupported sentence(s) removed)")
    return "\n".join(lines)
