"""The diarization engine: audio + where there is speech -> who spoke when.

Speech is cut into 1.5 s windows every 0.75 s; each window gets a CAM++ embedding as soon as
its audio has arrived. Every `chunk_s` of audio the chunk's windows are clustered
(cluster.agglomerate) and the clusters matched to the speakers of earlier chunks
(cluster.SpeakerRegistry), so a meeting of any length keeps one set of labels while memory
holds one chunk's vectors (192 floats per window) and the last `keep_s` of audio. Each
instant of speech takes the label of the window whose centre is nearest; one speaker per
instant: overlapped speech is not detected (evals/diarization.py measures what that costs).

    d = Diarizer(DiarizeConfig())
    turns = d.diarize(pcm, speech)            # whole recording at once
    s = d.stream()                            # or block by block, in order:
    turns = s.feed(block, speech_so_far) ... + s.finish()
"""
from __future__ import annotations

from collections.abc import Iterable

import msgspec
import numpy as np

from operators.diarize.cluster import SpeakerRegistry, agglomerate, centroids
from operators.diarize.embedder import SAMPLE_RATE, SpeakerEmbedder, sliding_windows
from operators.diarize.rttm import Turn


FEED_BLOCK_S = 60      # diarize() hands a whole recording to its stream this much at a time


class DiarizeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window_s: float = 1.5         # one embedding's audio: shorter is noisier, longer blurs turns
    step_s: float = 0.75          # hop between windows: the resolution of speaker changes
    # Tuned on ami_debug train + development (python -m evals.diarization --tune).
    threshold: float = 0.25       # clusters merge while their mean pairwise cosine is above
    min_cluster_windows: int = 3  # a cluster of fewer windows (~2 s) is folded into another
    match_threshold: float = 0.55  # a chunk's cluster joins a known speaker: centroid cosine
    chunk_s: float = 600.0        # audio clustered at once: bounds memory and output delay
    keep_s: float = 30.0          # audio kept for speech spans that arrive late (VAD's lag)


class Diarizer:
    """The engine: one network shared by every stream; state lives in the streams."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: DiarizeConfig | None = None,
                 embedder: SpeakerEmbedder | None = None):
        self.config = config or DiarizeConfig()
        self.embedder = embedder or SpeakerEmbedder()

    def stream(self) -> DiarizationStream:
        return DiarizationStream(self.embedder, self.config)

    def diarize(self, pcm: np.ndarray, speech: Iterable | None = None) -> list[Turn]:
        """Turns for a whole recording. `speech`: (start_s, end_s) pairs or Spans; None
        means all of it is speech."""
        pcm = _as_float(pcm)
        if speech is None:
            speech = [(0.0, len(pcm) / SAMPLE_RATE)]
        stream, turns, block = self.stream(), [], FEED_BLOCK_S * SAMPLE_RATE
        for start in range(0, len(pcm), block):    # in blocks, so chunks close as they fill
            turns += stream.feed(pcm[start:start + block], speech if start == 0 else ())
        return turns + stream.finish()


class _Span(msgspec.Struct):
    """A speech span in samples, and how many of its windows are embedded. Its windows are
    a fixed grid from `start`, so those made while it was still open stay a prefix of the
    list once its end is known; `resume` is where the next one starts."""

    start: int
    end: int
    made: int = 0
    resume: int = 0


class DiarizationStream:
    """One recording, fed in order. feed() and finish() return the turns that are final:
    those of each chunk once it is clustered, the last turn held back until the next chunk
    shows whether the same speaker goes on."""

    def __init__(self, embedder: SpeakerEmbedder, config: DiarizeConfig):
        self._embedder, self._config = embedder, config
        self._window = int(config.window_s * SAMPLE_RATE)
        self._step = int(config.step_s * SAMPLE_RATE)
        self._registry = SpeakerRegistry(config.match_threshold, embedder.dim)
        self._audio = np.zeros(0, np.float32)   # samples from _audio_start on
        self._audio_start = 0
        self._fed = 0
        self._pending: list[_Span] = []          # speech not yet fully windowed
        self._covered = 0                        # end of the speech accepted so far
        self._chunk_start = 0
        self._chunk_speech: list[tuple[int, int]] = []
        self._windows: list[tuple[int, int]] = []
        self._vectors: list[np.ndarray] = []
        self._held: Turn | None = None
        self.dropped_s = 0.0                     # speech that came after its audio was gone

    @property
    def speakers(self) -> int:
        return len(self._registry)

    def feed(self, pcm: np.ndarray, speech: Iterable = ()) -> list[Turn]:
        """The next block of audio, and speech spans (seconds from the recording's start)
        known so far that were not given before. A span may run past the audio fed yet."""
        pcm = _as_float(pcm)
        self._audio = np.concatenate([self._audio, pcm])
        self._fed += len(pcm)
        self._add_speech(speech)
        self._embed_ready()
        self._trim()
        if self._fed - self._chunk_start >= self._config.chunk_s * SAMPLE_RATE:
            return self._close_chunk(force=self._fed - self._chunk_start
                                     >= 2 * self._config.chunk_s * SAMPLE_RATE)
        return []

    def finish(self) -> list[Turn]:
        """End of the recording: spans still open end where the audio ends."""
        for span in self._pending:
            span.end = min(span.end, self._fed)
        self._pending = [s for s in self._pending if s.end > s.start]   # began after the end
        self._embed_ready()
        turns = self._close_chunk(force=True)
        if self._held:
            turns.append(self._held)
            self._held = None
        return turns

    # --- windows ------------------------------------------------------------------------

    def _add_speech(self, speech: Iterable) -> None:
        """Spans are merged into a union (overlapping turns of a reference, or a VAD that
        repeats itself); what overlaps speech already accepted extends or is cut."""
        for start_s, end_s in sorted(_pairs(speech)):
            start, end = int(round(start_s * SAMPLE_RATE)), int(round(end_s * SAMPLE_RATE))
            if start < self._audio_start:
                self.dropped_s += (min(end, self._audio_start) - start) / SAMPLE_RATE
                start = self._audio_start
            last = self._pending[-1] if self._pending else None
            if last and start <= last.end:
                last.end = max(last.end, end)    # still open, so its tail is not windowed
            elif end > max(start, self._covered):
                start = max(start, self._covered)
                self._pending.append(_Span(start, end, resume=start))
            self._covered = max(self._covered, end)

    def _embed_ready(self) -> None:
        """Embed every window whose audio is all here; move finished spans to the chunk."""
        new: list[tuple[int, int]] = []
        for span in self._pending:
            done = span.end <= self._fed
            grid = sliding_windows(span.start, span.end, self._window, self._step)
            ready = [w for w in grid[span.made:] if done or w[1] <= self._fed]
            new += ready
            span.made += len(ready)
            span.resume = grid[span.made][0] if span.made < len(grid) else span.end
            if done:
                self._chunk_speech.append((span.start, span.end))
        self._pending = [s for s in self._pending if s.end > self._fed]
        if new:
            local = [(s - self._audio_start, e - self._audio_start) for s, e in new]
            self._vectors.append(self._embedder.embed(self._audio, local))
            self._windows += new

    def _trim(self) -> None:
        keep_from = self._fed - int(self._config.keep_s * SAMPLE_RATE)
        for span in self._pending:
            keep_from = min(keep_from, span.resume)
        cut = max(0, keep_from - self._audio_start)
        if cut:
            self._audio = self._audio[cut:]
            self._audio_start += cut

    # --- chunks -------------------------------------------------------------------------

    def _close_chunk(self, force: bool) -> list[Turn]:
        """Cluster the chunk's windows and turn them into turns. Without `force`, waits for
        a pause (no span open) so no span is split between two chunks."""
        if self._pending and not force:
            return []
        for span in self._pending:   # forced: the part already windowed goes in this chunk
            if span.made:
                self._chunk_speech.append((span.start, span.resume))
                span.start, span.made = span.resume, 0
        turns = self._chunk_turns()
        self._chunk_start = self._fed
        self._chunk_speech, self._windows, self._vectors = [], [], []
        return self._stitch(turns)

    def _chunk_turns(self) -> list[Turn]:
        if not self._windows:
            return []
        vectors = np.concatenate(self._vectors)
        labels = agglomerate(vectors, self._config.threshold, self._config.min_cluster_windows)
        ids = self._registry.match(*centroids(vectors, labels))[labels]
        return _label_speech(sorted(self._chunk_speech), self._windows, ids)

    def _stitch(self, turns: list[Turn]) -> list[Turn]:
        """Join a chunk's first turn to the previous chunk's last if they touch, same speaker."""
        if self._held and turns and turns[0].speaker == self._held.speaker \
                and turns[0].start - self._held.end < 1e-6:
            turns[0] = Turn(self._held.start, turns[0].end, turns[0].speaker)
        elif self._held:
            turns.insert(0, self._held)
        self._held = turns.pop() if turns else None
        return turns


def _label_speech(speech: list[tuple[int, int]], windows: list[tuple[int, int]],
                  ids: np.ndarray) -> list[Turn]:
    """Each instant of speech goes to the window with the nearest centre: the boundaries are
    the midpoints between consecutive centres. Touching pieces of one speaker are joined."""
    centres = np.array([(s + e) / 2 for s, e in windows])
    order = np.argsort(centres, kind="stable")
    centres, ids = centres[order], ids[order]
    bounds = (centres[1:] + centres[:-1]) / 2
    turns: list[Turn] = []
    for start, end in speech:
        cuts = bounds[(bounds > start) & (bounds < end)]
        edges = np.concatenate([[start], cuts, [end]])
        for a, b in zip(edges[:-1], edges[1:]):
            speaker = f"SPEAKER_{int(ids[np.searchsorted(bounds, (a + b) / 2)]):02d}"
            a_s, b_s = round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3)
            if turns and turns[-1].speaker == speaker and abs(turns[-1].end - a_s) < 1e-6:
                turns[-1] = Turn(turns[-1].start, b_s, speaker)
            else:
                turns.append(Turn(a_s, b_s, speaker))
    return turns


def _pairs(speech: Iterable) -> list[tuple[float, float]]:
    """(start, end) seconds from pairs or Span-like objects; empty and inverted ones dropped."""
    out = []
    for s in speech:
        start, end = (s.start, s.end) if hasattr(s, "start") else (s[0], s[1])
        if end > start:
            out.append((max(0.0, float(start)), float(end)))
    return out


def _as_float(pcm: np.ndarray) -> np.ndarray:
    """float32 mono in [-1, 1]; int16/int32 PCM is scaled, NaN and inf become silence."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"diarization needs mono PCM (1-D), got shape {pcm.shape}")
    if np.issubdtype(pcm.dtype, np.integer):
        return pcm.astype(np.float32) / float(np.iinfo(pcm.dtype).max + 1)
    pcm = pcm.astype(np.float32, copy=False)
    return pcm if np.isfinite(pcm).all() else np.nan_to_num(pcm, nan=0.0, posinf=0.0,
                                                            neginf=0.0)
