"""Who said each word: diarization turns laid over ASR words, segments cut where speakers change.

A word takes the speaker whose turn overlaps it most; a word in no turn (the VAD and the
diarizer disagree by a few hundred ms at the edges) takes the nearest turn within
NEAREST_S, else the speaker of the word before it. A segment spoken by two people becomes
two segments, each with its own words, text and times; a segment without word timestamps
takes the speaker of its whole span.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping

import msgspec

from operators.diarize.rttm import Turn
from schemas import TranscriptSegment, Word

NEAREST_S = 1.0


class SpeakerIndex:
    """Turns sorted by start, for overlap and nearest lookups."""

    def __init__(self, turns: list[Turn]):
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self.starts = [t.start for t in self.turns]

    def speaker(self, start: float, end: float, fallback: str = "") -> str:
        best, best_overlap = "", 0.0
        hi = bisect.bisect_left(self.starts, end)
        for turn in self.turns[max(0, hi - 8):hi]:   # turns never nest deeply: 8 is plenty
            overlap = min(end, turn.end) - max(start, turn.start)
            if overlap > best_overlap:
                best, best_overlap = turn.speaker, overlap
        return best or self._nearest(start, end) or fallback

    def _nearest(self, start: float, end: float) -> str:
        i = bisect.bisect_left(self.starts, start)
        near = [t for t in self.turns[max(0, i - 2):i + 2]
                if min(abs(t.start - end), abs(start - t.end)) <= NEAREST_S]
        if not near:
            return ""
        return min(near, key=lambda t: min(abs(t.start - end), abs(start - t.end))).speaker


def attribute(segments: list[TranscriptSegment], turns: list[Turn],
              names: Mapping[str, str] | None = None) -> list[TranscriptSegment]:
    """Segments with speakers, split at speaker changes; labels renamed through `names`."""
    index, names = SpeakerIndex(turns), names or {}
    out: list[TranscriptSegment] = []
    previous = ""
    for seg in segments:
        if not seg.words:
            previous = index.speaker(seg.start, seg.end, previous)
            out.append(msgspec.structs.replace(seg, speaker=names.get(previous, previous)))
            continue
        for speaker, words in _runs(seg.words, index, previous):
            out.append(_piece(seg, words, names.get(speaker, speaker)))
            previous = speaker
    return out


def _runs(words: list[Word], index: SpeakerIndex, previous: str) -> list[tuple[str, list[Word]]]:
    runs: list[tuple[str, list[Word]]] = []
    for w in words:
        speaker = index.speaker(w.start, w.end, previous)
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(w)
        else:
            runs.append((speaker, [w]))
        previous = speaker
    return runs


def _piece(seg: TranscriptSegment, words: list[Word], speaker: str) -> TranscriptSegment:
    if len(words) == len(seg.words):
        return msgspec.structs.replace(seg, speaker=speaker)
    return msgspec.structs.replace(seg, start=words[0].start, end=words[-1].end, words=words,
                                   text=" ".join(w.word for w in words), speaker=speaker)
