"""What the synthesize operator needs from a speech engine, and the PCM plumbing engines share.

An engine speaks one text at a time per call and streams it back as s16le mono pieces of
about piece_ms, each as soon as it exists. Closing the `speak()` generator early (a barge-in
cancels the operator's task) abandons the utterance; the engine must then be as clean for
the next call as if that utterance had never started.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np

BYTES_PER_SAMPLE = 2


class TtsError(RuntimeError):
    """The engine cannot speak: a missing binary or voice (the message says the fix), or a
    synthesizer that died or hung twice on the same text."""


class SpeechEngine(Protocol):
    sample_rate: int          # of the pieces speak() yields

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def speak(self, text: str) -> AsyncIterator[bytes]:
        """Pieces of s16le mono PCM for already-normalised text; nothing for ""."""
        ...


class PieceMaker:
    """Engine audio in, at whatever chunk sizes it comes; equal pieces of piece_ms out (the
    last one shorter), resampled to out_rate on the way when it differs from in_rate."""

    def __init__(self, in_rate: int, out_rate: int, piece_ms: int):
        if in_rate <= 0 or out_rate <= 0 or piece_ms <= 0:
            raise ValueError(f"bad audio shape: {in_rate} Hz in, {out_rate} Hz out, {piece_ms} ms")
        self.in_rate, self.out_rate = in_rate, out_rate
        self.piece_bytes = max(1, out_rate * piece_ms // 1000) * BYTES_PER_SAMPLE
        self._resampler = _Resampler(in_rate, out_rate) if in_rate != out_rate else None
        self._buf = bytearray()

    def feed(self, pcm: bytes) -> list[bytes]:
        self._buf += self._resampler.feed(pcm) if self._resampler else pcm
        return self._take(whole_only=True)

    def flush(self) -> list[bytes]:
        if self._resampler:
            self._buf += self._resampler.flush()
        return self._take(whole_only=False)

    def _take(self, whole_only: bool) -> list[bytes]:
        n = self.piece_bytes
        usable = len(self._buf) - len(self._buf) % BYTES_PER_SAMPLE
        end = usable - usable % n if whole_only else usable
        pieces = [bytes(self._buf[i:i + n]) for i in range(0, end, n)]
        del self._buf[:end]
        return pieces


class _Resampler:
    """PyAV's (libswresample) streaming resampler: its filter state carries across chunks, so
    an utterance cut into clauses has no clicks at the joins."""

    def __init__(self, in_rate: int, out_rate: int):
        import av   # only here: engines at the voice's own rate need no codec library
        self._av = av
        self.in_rate = in_rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
        self._odd = b""    # a half sample held until the next chunk

    def feed(self, pcm: bytes) -> bytes:
        pcm, cut = self._odd + pcm, (len(self._odd) + len(pcm)) % BYTES_PER_SAMPLE
        pcm, self._odd = (pcm[:-cut], pcm[-cut:]) if cut else (pcm, b"")
        if not pcm:
            return b""
        frame = self._av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.in_rate
        return b"".join(_s16(f) for f in self._resampler.resample(frame))

    def flush(self) -> bytes:
        return b"".join(_s16(f) for f in self._resampler.resample(None))


def _s16(frame) -> bytes:
    return frame.to_ndarray()[0].astype("<i2").tobytes()
