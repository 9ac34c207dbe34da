"""VAD: one DecodedAudio in, one SpeechSegments out (where in the recording someone speaks).

The PCM object is read a minute at a time and fed to a streaming detector, so memory stays
flat whatever the length; the detector runs in a thread, never on the event loop.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np

from operators.audio_io import fetch_checked, pcm_samples, read_pcm, run_settled, scratch_file
from operators.base import Context, Operator, Reject
from schemas import DecodedAudio, Span, SpeechSegments

BLOCK_S = 60           # audio read and analysed per thread call
PROGRESS_EVERY_S = 300


class SpeechStream(Protocol):
    """One recording's detector state: feed float32 PCM in order, get finished spans."""

    def feed(self, pcm: np.ndarray) -> list[Span]: ...
    def finish(self) -> list[Span]: ...


class SpeechDetector(Protocol):
    """What the operator needs from an engine. Shared by concurrent jobs: state lives in the
    streams it hands out, not in the detector."""

    sample_rate: int

    def stream(self) -> SpeechStream: ...


class VadConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    threshold: float = 0.5        # speech starts at this probability, ends below it - 0.15
    min_speech_ms: int = 250      # shorter bursts are dropped
    min_silence_ms: int = 100     # shorter pauses do not end a segment
    speech_pad_ms: int = 30       # added on both sides of each segment
    max_segment_s: float = 30.0   # longer speech is cut at its longest pause (one ASR window)


class Vad(Operator[DecodedAudio, SpeechSegments]):
    kind = "vad"
    input_type = DecodedAudio
    output_type = SpeechSegments
    Config = VadConfig

    async def start(self) -> None:
        if self.engine is None:
            from operators.vad.silero import SileroVad  # onnxruntime loads only when used
            self.engine = await run_settled(SileroVad, self.config)

    async def process(self, msg: DecodedAudio, ctx: Context) -> AsyncIterator[SpeechSegments]:
        if self.engine is None:  # driven without start(), as in a quick test
            await self.start()
        if msg.sample_rate != self.engine.sample_rate:
            raise Reject(f"VAD needs {self.engine.sample_rate} Hz PCM, got {msg.sample_rate} Hz")
        with scratch_file(ctx, ".s16le") as pcm:
            await fetch_checked(ctx, msg.pcm, pcm)
            spans = await self._detect(pcm, msg.sample_rate, ctx)
        speech_s = round(sum(s.end - s.start for s in spans), 3)
        yield SpeechSegments(job_id=msg.job_id, audio=msg, segments=spans, speech_s=speech_s)

    async def _detect(self, pcm: Path, rate: int, ctx: Context) -> list[Span]:
        total, block = pcm_samples(pcm), BLOCK_S * rate
        stream, spans, reported = self.engine.stream(), [], 0
        for start in range(0, total, block):
            spans += await run_settled(_feed, stream, pcm, start, block)
            done = min(start + block, total)
            if done - reported >= PROGRESS_EVERY_S * rate or done == total:
                await ctx.progress(done / rate, total / rate, "voice activity")
                reported = done
        return spans + await run_settled(stream.finish)


def _feed(stream: SpeechStream, pcm: Path, start: int, count: int) -> list[Span]:
    return stream.feed(read_pcm(pcm, start, count))
