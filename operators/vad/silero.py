"""Silero VAD v6 on onnxruntime, as a streaming segmenter (no torch).

A re-implementation of silero_vad.utils_vad (OnnxWrapper and get_speech_timestamps, with
its default use_max_poss_sil_at_max_speech=True) that takes audio a block at a time: 512
samples per window at 16 kHz, the previous window's last 64 samples prepended as context,
an LSTM state of shape (2, 1, 128) carried between windows. Spans come out as soon as they
are final. One deliberate difference: times are rounded to 1 ms, not 0.1 s.

Digital silence skips the model. A short run (up to EXACT_RUN windows) is held back and,
once speech resumes, run through the model after all, so a dropout inside speech gives
exactly what the full model gives. A longer run is scored 0; the LSTM state it would have
drifted to is not recoverable, so speech that follows starts from a fresh state warmed on
the last WARMUP windows of that silence (measured closest to the full model).
"""
from __future__ import annotations

from collections import deque

import msgspec
import numpy as np
import onnxruntime

from operators.models import model_path
from operators.vad.operator import VadConfig
from schemas import Span

SAMPLE_RATE = 16_000
WINDOW = 512
CONTEXT = 64
SILENCE_RMS = 1e-4          # about -80 dBFS, 3 LSB of 16-bit audio: nothing but dither
EXACT_RUN = 32              # ~1 s of silent windows replayed exactly when speech resumes
WARMUP = 16                 # silent windows replayed into a fresh state after a longer run
MIN_SILENCE_AT_MAX_MS = 98  # silero's min_silence_at_max_speech: a pause worth cutting at


class _Params(msgspec.Struct, frozen=True):
    """The wrapper's thresholds, in samples, computed once as get_speech_timestamps does."""

    threshold: float
    neg_threshold: float
    min_speech: float
    min_silence: float
    min_silence_at_max: float
    max_speech: float
    pad: int

    @classmethod
    def of(cls, c: VadConfig) -> _Params:
        pad = SAMPLE_RATE * c.speech_pad_ms / 1000
        return cls(threshold=c.threshold, neg_threshold=max(c.threshold - 0.15, 0.01),
                   min_speech=SAMPLE_RATE * c.min_speech_ms / 1000,
                   min_silence=SAMPLE_RATE * c.min_silence_ms / 1000,
                   min_silence_at_max=SAMPLE_RATE * MIN_SILENCE_AT_MAX_MS / 1000,
                   max_speech=SAMPLE_RATE * c.max_segment_s - WINDOW - 2 * pad, pad=int(pad))


class SileroVad:
    """The engine: one ONNX session, shared by every stream (run() is thread-safe)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: VadConfig | None = None):
        self._params = _Params.of(config or VadConfig())
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1   # one window is tiny: threads cost more than they give
        opts.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(model_path("silero-vad")), sess_options=opts,
            providers=["CPUExecutionProvider"])

    def stream(self) -> SileroStream:
        return SileroStream(self._session, self._params)

    def prober(self) -> WindowProber:
        """Per-window speech probabilities, for realtime turn-taking (operators/voice)."""
        return WindowProber(self._session)


class WindowProber:
    """One live stream's model state: the speech probability of each 512-sample window as it
    arrives (32 ms), with no span logic and no look-ahead."""

    window = WINDOW

    def __init__(self, session: onnxruntime.InferenceSession):
        self._session = session
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def prob(self, window: np.ndarray) -> float:
        if float(np.sqrt(np.mean(window * window))) < SILENCE_RMS:
            return 0.0     # digital silence (a muted mic): no model call, no state drift
        x = np.concatenate([self._context, window])[np.newaxis, :]
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = window[-CONTEXT:]
        return float(out[0, 0])


class SileroStream:
    """One recording: feed() float32 16 kHz audio in order, then finish()."""

    def __init__(self, session: onnxruntime.InferenceSession, params: _Params):
        self._session = session
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._fresh_state()
        self._pending = np.zeros(0, np.float32)    # samples short of a whole window
        self._held: list[np.ndarray] = []          # the current silent run, while short
        self._silent_run = 0
        self._recent_silence: deque[np.ndarray] = deque(maxlen=WARMUP)
        self._tracker = _SpanTracker(params)
        self._padder = _Padder(params.pad)
        self.samples = 0
        self.model_calls = 0

    def feed(self, pcm: np.ndarray) -> list[Span]:
        buf = np.concatenate([self._pending, np.asarray(pcm, np.float32)])
        whole = len(buf) - len(buf) % WINDOW
        for window in buf[:whole].reshape(-1, WINDOW):
            self._window(window)
        self._pending = buf[whole:].copy()
        self.samples += len(pcm)
        return self._spans()

    def finish(self) -> list[Span]:
        if len(self._pending):  # the wrapper zero-pads the last window
            self._window(np.pad(self._pending, (0, WINDOW - len(self._pending))))
            self._pending = np.zeros(0, np.float32)
        if self._silent_run <= EXACT_RUN:  # a long run is scored already; nothing follows it
            self._resolve_silence()
        for start, end in self._tracker.finish(self.samples):
            self._padder.add(start, end)
        self._padder.finish(self.samples)
        return self._spans()

    def _spans(self) -> list[Span]:
        for start, end in self._tracker.take():
            self._padder.add(start, end)
        return [Span(round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3))
                for s, e in self._padder.take()]

    def _window(self, window: np.ndarray) -> None:
        if float(np.sqrt(np.mean(window * window))) >= SILENCE_RMS:
            self._resolve_silence()
            self._tracker.push(self._infer(window))
            return
        self._silent_run += 1
        self._recent_silence.append(window)
        if self._silent_run <= EXACT_RUN:
            self._held.append(window)
            return
        for _ in range(len(self._held) + 1):  # a long run: score it all as silence
            self._tracker.push(0.0)
        self._held = []

    def _resolve_silence(self) -> None:
        """Speech (or the end) after a silent run: catch the model state up with it."""
        if not self._silent_run:
            return
        if self._silent_run <= EXACT_RUN:
            for window in self._held:
                self._tracker.push(self._infer(window))
        else:
            self._fresh_state()
            for window in self._recent_silence:
                self._infer(window)
        self._held, self._silent_run = [], 0

    def _fresh_state(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def _infer(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window])[np.newaxis, :]
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = window[-CONTEXT:]
        self.model_calls += 1
        return float(out[0, 0])


class _SpanTracker:
    """get_speech_timestamps_from_probs, one probability at a time. Spans in samples."""

    def __init__(self, p: _Params):
        self.p = p
        self._i = 0
        self._start: int | None = None   # set while triggered (inside speech)
        self._temp_end = 0               # where the current pause began, 0 if none
        self._possible_ends: list[tuple[int, int]] = []  # (pause start, pause length)
        self._done: list[tuple[int, int]] = []

    def push(self, prob: float) -> None:
        cur, p = WINDOW * self._i, self.p
        self._i += 1
        if prob >= p.threshold and self._temp_end:
            self._speech_resumed(cur)
        if prob >= p.threshold and self._start is None:
            self._start = cur
            return
        too_long = self._start is not None and cur - self._start > p.max_speech
        if too_long and not self._cut_at_max(cur):
            return
        if prob < p.neg_threshold and self._start is not None:
            self._silence(cur)

    def _speech_resumed(self, cur: int) -> None:
        pause = cur - self._temp_end
        if pause > self.p.min_silence_at_max:
            self._possible_ends.append((self._temp_end, pause))
        self._temp_end = 0

    def _cut_at_max(self, cur: int) -> bool:
        """Too long: cut at the longest pause so far (speech goes on), else right here."""
        if self._possible_ends:
            end, pause = max(self._possible_ends, key=lambda e: e[1])
            self._done.append((self._start, end))
            self._start, self._temp_end, self._possible_ends = end + pause, 0, []
            return True
        self._done.append((self._start, cur))
        self._end_speech()
        return False

    def _silence(self, cur: int) -> None:
        if not self._temp_end:
            self._temp_end = cur
        if cur - self._temp_end < self.p.min_silence:
            return
        if self._temp_end - self._start > self.p.min_speech:
            self._done.append((self._start, self._temp_end))
        self._end_speech()

    def _end_speech(self) -> None:
        self._start, self._temp_end, self._possible_ends = None, 0, []

    def finish(self, total: int) -> list[tuple[int, int]]:
        if self._start is not None and total - self._start > self.p.min_speech:
            self._done.append((self._start, total))
        self._start = None
        return self.take()

    def take(self) -> list[tuple[int, int]]:
        done, self._done = self._done, []
        return done


class _Padder:
    """speech_pad on both sides; neighbours closer than two pads split the gap. A span is
    final only once the next one (or the end) is known, so one is always held back."""

    def __init__(self, pad: int):
        self._pad = pad
        self._held: list[int] | None = None
        self._ready: list[tuple[int, int]] = []

    def add(self, start: int, end: int) -> None:
        if self._held is None:
            self._held = [max(0, start - self._pad), end]
            return
        gap = start - self._held[1]
        shift = gap // 2 if gap < 2 * self._pad else self._pad
        self._ready.append((self._held[0], self._held[1] + shift))
        self._held = [max(0, start - shift), end]

    def finish(self, total: int) -> None:
        if self._held is not None:
            self._ready.append((self._held[0], min(total, self._held[1] + self._pad)))
            self._held = None

    def take(self) -> list[tuple[int, int]]:
        ready, self._ready = self._ready, []
        return ready
