"""Meeting transcripts → blocks: one paragraph per speaker turn, under the section "Transcript".

Two sources:
- the JSON that `patchwire transcribe --json` prints: a schemas.speech.Transcript as
  builtins (`{"kind": "Transcript", "job_id": …, "segments": [{"start", "end", "text",
  "speaker", …}], …}`). Any other JSON is rejected: JSON is only read as a transcript.
- WebVTT (.vtt) and SubRip (.srt) subtitles; a WebVTT voice tag `<v Ana>` names the speaker.

Consecutive segments of one speaker make one turn, cut when it grows past MAX_TURN_CHARS or
after a pause of PAUSE_S, so that a long monologue is several paragraphs that each start
with their own time. A turn reads "[00:01:23] Ana: …", or "[00:01:23] …" without a speaker.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Iterator

import msgspec

from operators.base import Reject
from schemas.speech import Transcript, TranscriptSegment

MAX_TURN_CHARS = 1_500        # about 250 words: a paragraph the chunker rarely has to split
PAUSE_S = 30.0                # a silence this long starts a new paragraph, same speaker or not
SECTION = ["Transcript"]
NOT_A_TRANSCRIPT = "JSON files are only read as patchwire meeting transcripts"

SectionBlock = tuple[str, int, str, list[str]]   # kind, level, text, section path

# Bounded repeats and no nested "<": a hostile 5 MB line must not make these quadratic.
STAMP = r"(?:\d{1,4}:)?\d{1,2}:\d{2}[.,]\d{1,3}"
CUE_TIME = re.compile(rf"({STAMP})[ \t]*-->[ \t]*({STAMP})")
VOICE = re.compile(r"<v(?:\.[^\s<>]{0,100})?[ \t]+([^<>]{1,200})>")
TAG = re.compile(r"<[^<>]*>")


def read_transcript_json(text: str) -> tuple[list[SectionBlock], list[str]]:
    """patchwire's transcript JSON → (blocks, the transcript's own warnings)."""
    try:
        obj = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise Reject(f"{NOT_A_TRANSCRIPT}, and this one is not valid JSON ({exc})") from None
    if not (isinstance(obj, dict) and obj.get("kind") == "Transcript"
            and isinstance(obj.get("segments"), list)):
        raise Reject(f'{NOT_A_TRANSCRIPT} (a JSON object with "kind": "Transcript" and '
                     f'"segments"); this one is {_what(obj)}')
    obj.setdefault("job_id", "")   # hand-edited files may drop it; nothing here needs it
    try:
        transcript = msgspec.convert(obj, Transcript)
    except msgspec.ValidationError as exc:
        raise Reject(f"transcript JSON does not match patchwire's Transcript: {exc}") from None
    warnings = [f"transcript: {w}" for w in transcript.warnings]
    return turn_blocks(transcript.segments), warnings


def _what(obj: Any) -> str:
    if isinstance(obj, dict):
        return f'an object with kind {obj["kind"]!r}' if "kind" in obj else "an object without a kind"
    return f"a JSON {type(obj).__name__}"


def read_subtitles(text: str) -> list[SectionBlock]:
    """WebVTT or SubRip text (decoded, newlines normalised) → blocks."""
    return turn_blocks(subtitle_segments(text))


def subtitle_segments(text: str) -> list[TranscriptSegment]:
    """Each cue (a timing line and the text lines under it) is one segment; cue numbers,
    the WEBVTT header, NOTE, STYLE and REGION blocks carry no timing line and are dropped."""
    segments = []
    for cue in re.split(r"\n[ \t]*\n", text):
        lines = cue.strip("\n").split("\n")
        timing = next((i for i, line in enumerate(lines) if CUE_TIME.search(line)), None)
        if timing is None:
            continue
        m = CUE_TIME.search(lines[timing])
        speaker, words = _cue_text(lines[timing + 1:])
        if words:
            segments.append(TranscriptSegment(start=_seconds(m.group(1)), end=_seconds(m.group(2)),
                                              text=words, speaker=speaker))
    return segments


def _cue_text(lines: list[str]) -> tuple[str, str]:
    """The speaker of a WebVTT voice tag, and the cue's text with its tags removed."""
    joined = " ".join(line.strip() for line in lines)
    voice = VOICE.search(joined)
    speaker = " ".join(voice.group(1).split()) if voice else ""
    return speaker, " ".join(TAG.sub("", joined).split())


def _seconds(stamp: str) -> float:
    """"01:02:03.500", "02:03,500" (SubRip's comma) or "2:03.5" → seconds."""
    total = 0.0
    for part in stamp.replace(",", ".").split(":"):
        total = total * 60 + float(part)
    return total


def turn_blocks(segments: Iterable[TranscriptSegment]) -> list[SectionBlock]:
    return [("paragraph", 0, text, list(SECTION)) for text in _turns(segments)]


def _turns(segments: Iterable[TranscriptSegment]) -> Iterator[str]:
    """Consecutive segments of one speaker, with no long pause between them, make one turn
    of at most MAX_TURN_CHARS (a single longer segment stays whole)."""
    start, speaker, texts, size, end = 0.0, "", [], 0, 0.0
    for seg in segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        same_turn = texts and seg.speaker == speaker and seg.start - end < PAUSE_S
        if same_turn and size + 1 + len(text) <= MAX_TURN_CHARS:
            texts.append(text)
            size += 1 + len(text)
        else:
            if texts:
                yield _turn(start, speaker, texts)
            start, speaker, texts, size = seg.start, seg.speaker, [text], len(text)
        end = seg.end
    if texts:
        yield _turn(start, speaker, texts)


def _turn(start: float, speaker: str, texts: list[str]) -> str:
    who = f"{speaker.strip()}: " if speaker.strip() else ""
    return f"[{clock(start)}] {who}{' '.join(texts)}"


def clock(seconds: float) -> str:
    """Whole seconds as HH:MM:SS, the form a reader quotes back ("at 00:01:23")."""
    seconds = seconds if math.isfinite(seconds) else 0.0
    h, rest = divmod(int(max(0.0, seconds)), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"
