"""Meeting outputs: a Transcript (and its MeetingSummary) as the files people use.

    json        the Transcript itself: segments, words, speakers, times, confidences
    srt, vtt    subtitles; a long segment becomes several cues (by its word times when it has
                them, else in proportion to its characters) so no cue fills the screen
    rttm        speaker turns, one line per segment (NIST RTTM, as diarization tools read it)
    md          minutes: key points, decisions, action items, open questions, each with the
                time it was said, then the transcript
    summary     the MeetingSummary as JSON (validates against schemas.meeting's schema)

`render(fmt, transcript, summary)` gives the bytes of any of them; FORMATS names each one's
file extension and media type.
"""
from __future__ import annotations

import enum
import re
from typing import Iterator

import msgspec

from schemas import Transcript, TranscriptSegment
from schemas.meeting import MeetingSummary

MAX_CUE_CHARS = 84      # two subtitle lines of 42, the usual broadcast limit


class Format(str, enum.Enum):
    JSON = "json"
    SRT = "srt"
    VTT = "vtt"
    RTTM = "rttm"
    MARKDOWN = "md"
    SUMMARY = "summary"


FORMATS: dict[Format, tuple[str, str]] = {        # extension, media type
    Format.JSON: (".json", "application/json"),
    Format.SRT: (".srt", "application/x-subrip"),
    Format.VTT: (".vtt", "text/vtt"),
    Format.RTTM: (".rttm", "text/plain"),
    Format.MARKDOWN: (".md", "text/markdown"),
    Format.SUMMARY: (".summary.json", "application/json"),
}


def timestamp(seconds: float, sep: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    ms = round(max(0.0, seconds) * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def clock(seconds: float) -> str:
    """mm:ss, or h:mm:ss from an hour on: how minutes say when something was said."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


# ---- subtitles ---------------------------------------------------------------------------

def cues(seg: TranscriptSegment, max_chars: int = MAX_CUE_CHARS) -> Iterator[tuple[float, float, str]]:
    """(start, end, text) pieces of one segment, each at most `max_chars` where words allow."""
    end = max(seg.end, seg.start + 0.01)        # a cue must end after it starts
    if seg.words:
        timed = [(w.word.strip(), w.start, w.end) for w in seg.words if w.word.strip()]
    else:
        timed = _spread(seg.text.split(), seg.start, end)
    group: list[tuple[str, float, float]] = []
    for word in timed:
        if group and len(" ".join(w for w, _, _ in group + [word])) > max_chars:
            yield _cue(group, seg.start, end)
            group = []
        group.append(word)
    if group:
        yield _cue(group, seg.start, end)


def _spread(words: list[str], start: float, end: float) -> list[tuple[str, float, float]]:
    """Untimed words given times in proportion to their characters."""
    total = sum(len(w) + 1 for w in words) or 1
    out, at = [], start
    for w in words:
        length = (end - start) * (len(w) + 1) / total
        out.append((w, at, at + length))
        at += length
    return out


def _cue(group: list[tuple[str, float, float]], lo: float, hi: float) -> tuple[float, float, str]:
    start = min(max(group[0][1], lo), hi)
    return start, max(min(group[-1][2], hi), start + 0.01), " ".join(w for w, _, _ in group)


def _all_cues(t: Transcript, max_chars: int) -> Iterator[tuple[float, float, str, str]]:
    for seg in t.segments:
        for start, end, text in cues(seg, max_chars):
            yield start, end, seg.speaker, text


def to_srt(t: Transcript, max_chars: int = MAX_CUE_CHARS) -> str:
    blocks = [f"{n}\n{timestamp(start)} --> {timestamp(end)}\n{f'{who}: ' if who else ''}{text}\n"
              for n, (start, end, who, text) in enumerate(_all_cues(t, max_chars), 1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_webvtt(t: Transcript, max_chars: int = MAX_CUE_CHARS) -> str:
    """WebVTT with the speaker as a voice span (<v Ana>), which players can style or show."""
    blocks = ["WEBVTT\n"]
    for start, end, who, text in _all_cues(t, max_chars):
        voice = f"<v {_vtt_escape(who)}>" if who else ""
        blocks.append(f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{voice}{_vtt_escape(text)}\n")
    return "\n".join(blocks)


# ---- RTTM --------------------------------------------------------------------------------

def _rttm_field(text: str, default: str) -> str:
    return re.sub(r"\s+", "_", text.strip()) or default


def to_rttm(t: Transcript, file_id: str = "") -> str:
    """One SPEAKER line per segment, through the diarizer's own writer (operators/diarize)."""
    from operators.diarize.rttm import Turn, write_rttm
    turns = [Turn(s.start, max(s.start, s.end), _rttm_field(s.speaker, "unknown"))
             for s in t.segments]
    return write_rttm(_rttm_field(file_id or t.job_id, "meeting"), turns)


# ---- Markdown minutes --------------------------------------------------------------------

MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md(text: str) -> str:
    """Text as Markdown shows it literally (a transcript's "L_C_D_" is not italics)."""
    return MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _when(item) -> str:
    return f"{clock(item.span.start_s)}–{clock(item.span.end_s)}"


def _section(title: str, items: list) -> list[str]:
    if not items:
        return []
    return [f"## {title}", "", *[f"- {md(i.text)} ({_when(i)})" for i in items], ""]


def _actions(summary: MeetingSummary) -> list[str]:
    if not summary.action_items:
        return []
    rows = [f"| {md(a.text)} | {md(a.owner) or '–'} | {md(a.due) or '–'} | {_when(a)} |"
            for a in summary.action_items]
    return ["## Action items", "", "| action | owner | due | said at |", "|---|---|---|---|",
            *rows, ""]


def speakers(t: Transcript) -> list[str]:
    return list(dict.fromkeys(s.speaker for s in t.segments if s.speaker))


def to_markdown(t: Transcript, summary: MeetingSummary | None = None, title: str = "",
                with_transcript: bool = True) -> str:
    head = [f"# {md(title or t.job_id or 'Meeting')}", "",
            f"Duration: {clock(t.duration_s or (t.segments[-1].end if t.segments else 0))}"
            + (f" · Speakers: {', '.join(md(s) for s in speakers(t))}" if speakers(t) else ""), ""]
    body: list[str] = []
    if summary is not None:
        body += _section("Key points", summary.key_points) + _section("Decisions", summary.decisions)
        body += _actions(summary) + _section("Open questions", summary.open_questions)
    if with_transcript and t.segments:
        body += ["## Transcript", ""]
        body += [f"**{clock(s.start)} {md(s.speaker) or 'Speaker'}:** {md(s.text)}  "
                 for s in t.segments if s.text.strip()]
    return "\n".join(head + body).rstrip() + "\n"


# ---- any ---------------------------------------------------------------------------------

def published(t: Transcript) -> Transcript:
    """The transcript as users get it: without the pipeline's audio reference and VAD spans."""
    return msgspec.structs.replace(t, audio=None, speech=[])


def render(fmt: Format | str, t: Transcript, summary: MeetingSummary | None = None) -> bytes:
    """The file of format `fmt`; the summary is needed for "summary" and used by "md"."""
    fmt = Format(fmt)
    if fmt is Format.SUMMARY:
        if summary is None:
            raise ValueError("the summary format needs a MeetingSummary")
        return msgspec.json.encode(summary)
    text = {Format.JSON: lambda: msgspec.json.encode(published(t)).decode(),
            Format.SRT: lambda: to_srt(t), Format.VTT: lambda: to_webvtt(t),
            Format.RTTM: lambda: to_rttm(t), Format.MARKDOWN: lambda: to_markdown(t, summary)}[fmt]()
    return text.encode()
