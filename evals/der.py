"""Diarization error rate, as NIST md-eval scores it (and pyannote.metrics with the same
settings).

    DER = (missed speech + false alarm + speaker confusion) / reference speech

over the scored time: the UEM regions less a collar of `collar` seconds on either side of
every reference turn boundary (md-eval's `-c 0.25` is collar=0.25 here; pyannote's collar is
the total width, so its collar=0.5 is the same thing). Overlapped speech is scored: an
instant with two reference speakers counts twice. Hypothesis speakers are mapped one-to-one
to reference speakers so as to maximise the time they agree (Hungarian method); time where a
reference speaker is active and its mapped hypothesis speaker is not, while some other
hypothesis speaker is, is confusion.

The time line is cut at every turn boundary; between two cuts nothing changes, so each
piece is scored exactly, with no frame rounding.
"""
from __future__ import annotations

import msgspec
import numpy as np

from operators.diarize.cluster import assign
from operators.diarize.rttm import Turn


class DerResult(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds of each error kind over `total` seconds of scored reference speech."""

    total: float = 0.0
    miss: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    overlap: float = 0.0           # the part of `total` in time with 2+ reference speakers
    overlap_miss: float = 0.0      # the part of `miss` that lies in such time

    @property
    def der(self) -> float:
        return (self.miss + self.false_alarm + self.confusion) / self.total if self.total \
            else 0.0

    def __add__(self, other: DerResult) -> DerResult:
        return DerResult(**{f: getattr(self, f) + getattr(other, f)
                            for f in self.__struct_fields__})


def der(reference: list[Turn], hypothesis: list[Turn],
        uem: list[tuple[float, float]] | None = None, collar: float = 0.0,
        skip_overlap: bool = False, focus: list[tuple[float, float]] | None = None,
        ) -> DerResult:
    """Score one recording. Without a UEM the scored time is the extent of both turn lists.
    `focus` counts errors only inside those regions (e.g. short turns), with the speaker
    mapping still found over all the scored time."""
    regions = _scored(reference, hypothesis, uem, collar)
    focus_regions = np.array(sorted(focus or []), dtype=np.float64).reshape(-1, 2)
    cuts = np.unique(np.concatenate([[t for turn in reference + hypothesis
                                      for t in (turn.start, turn.end)],
                                     np.ravel(regions), np.ravel(focus_regions)]))
    if len(cuts) < 2:
        return DerResult()
    width = np.diff(cuts) * _inside(cuts, regions)
    ref, hyp = _activity(reference, cuts), _activity(hypothesis, cuts)
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    if skip_overlap:
        width = width * (n_ref <= 1)
    correct = _mapped_correct(ref, hyp, width)
    if focus is not None:
        width = width * _inside(cuts, focus_regions)
    overlap = n_ref >= 2
    miss = np.maximum(n_ref - n_hyp, 0) * width
    return DerResult(
        total=float((n_ref * width).sum()), miss=float(miss.sum()),
        false_alarm=float((np.maximum(n_hyp - n_ref, 0) * width).sum()),
        confusion=float(((np.minimum(n_ref, n_hyp) - correct) * width).sum()),
        overlap=float((n_ref * width)[overlap].sum()), overlap_miss=float(miss[overlap].sum()))


def _scored(reference: list[Turn], hypothesis: list[Turn],
            uem: list[tuple[float, float]] | None, collar: float) -> np.ndarray:
    """(n, 2) disjoint scored regions: the UEM less the collars."""
    if uem is None:
        times = [t for turn in reference + hypothesis for t in (turn.start, turn.end)]
        uem = [(min(times), max(times))] if times else []
    regions = [tuple(r) for r in uem]
    if collar > 0:
        for t in sorted({x for turn in reference for x in (turn.start, turn.end)}):
            regions = _subtract(regions, t - collar, t + collar)
    return np.array(sorted(regions), dtype=np.float64).reshape(-1, 2)


def _subtract(regions: list[tuple[float, float]], a: float, b: float) -> list[tuple]:
    out = []
    for s, e in regions:
        if b <= s or a >= e:
            out.append((s, e))
            continue
        if s < a:
            out.append((s, a))
        if b < e:
            out.append((b, e))
    return out


def _inside(cuts: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """1 for each piece between consecutive cuts that lies in a scored region (region edges
    are among the cuts, so a piece is wholly in or wholly out)."""
    mids = (cuts[1:] + cuts[:-1]) / 2
    if not len(regions):
        return np.zeros(len(mids))
    i = np.searchsorted(regions[:, 0], mids, side="right") - 1
    return ((i >= 0) & (mids < regions[np.maximum(i, 0), 1])).astype(np.float64)


def _activity(turns: list[Turn], cuts: np.ndarray) -> np.ndarray:
    """(speakers, pieces) 0/1: who is active in each piece (a speaker's own overlapping
    turns count once). Speakers are ordered by label."""
    labels = sorted({t.speaker for t in turns})
    active = np.zeros((len(labels), len(cuts) - 1), dtype=np.int64)
    for t in turns:
        a, b = np.searchsorted(cuts, [t.start, t.end])
        active[labels.index(t.speaker), a:b] = 1
    return active


def _mapped_correct(ref: np.ndarray, hyp: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Per piece, how many reference speakers have their mapped hypothesis speaker active."""
    correct = np.zeros(ref.shape[1])
    if not len(ref) or not len(hyp):
        return correct
    agree = (ref * width) @ hyp.T                      # seconds each pair is active together
    for r, h in assign(-agree):
        correct += ref[r] * hyp[h]
    return correct
