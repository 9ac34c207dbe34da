"""Diarize: a Transcript (with its audio) in, the same Transcript with speakers out.

The PCM object is read a minute at a time and fed, with the VAD's speech spans, to a
diarization stream (operators/diarize/diarizer.py) in a worker thread: an hour-long meeting
costs one chunk of speaker vectors and the last 30 s of audio in memory. The turns are then
laid over the ASR words (operators/diarize/align.py), so every word and segment has a
speaker; the meeting's `speakers` map renames labels the user has identified.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from operators.audio_io import fetch_checked, pcm_samples, read_pcm, run_settled, scratch_file
from operators.base import Context, Operator, Reject
from operators.diarize.align import attribute
from operators.diarize.diarizer import DiarizeConfig, Diarizer
from operators.diarize.rttm import Turn
from schemas import Span, Transcript

BLOCK_S = 60


class Diarize(Operator[Transcript, Transcript]):
    kind = "diarize"
    input_type = Transcript
    output_type = Transcript
    Config = DiarizeConfig

    async def start(self) -> None:
        if self.engine is None:
            self.engine = await run_settled(Diarizer, self.config)

    async def process(self, msg: Transcript, ctx: Context) -> AsyncIterator[Transcript]:
        if self.engine is None:  # driven without start(), as in a quick test
            await self.start()
        audio = msg.audio
        if audio is None:
            raise Reject("diarization needs the transcript's audio: run the asr with "
                         "pass_audio: true (topology/meeting_transcriber.yaml does)")
        if audio.sample_rate != self.engine.sample_rate:
            raise Reject(f"diarization needs {self.engine.sample_rate} Hz PCM, "
                         f"got {audio.sample_rate} Hz")
        turns: list[Turn] = []
        if msg.speech and msg.segments:
            with scratch_file(ctx, ".s16le") as pcm:
                await fetch_checked(ctx, audio.pcm, pcm)
                turns = await self._turns(pcm, msg.speech, ctx)
        names = audio.meeting.speakers if audio.meeting else {}
        segments = attribute(msg.segments, turns, names)
        yield msgspec.structs.replace(msg, segments=segments)

    async def _turns(self, pcm: Path, speech: list[Span], ctx: Context) -> list[Turn]:
        rate = self.engine.sample_rate
        total, block = pcm_samples(pcm), BLOCK_S * rate
        stream, turns = self.engine.stream(), []
        spans = sorted(speech, key=lambda s: s.start)
        for start in range(0, total, block):
            lo, hi = start / rate, (start + block) / rate
            new = [s for s in spans if lo <= s.start < hi]   # each span once, when it begins
            turns += await run_settled(_feed, stream, pcm, start, block, new)
            await ctx.progress(min(start + block, total) / rate, total / rate, "diarization")
        turns += await run_settled(stream.finish)
        return turns


def _feed(stream, pcm: Path, start: int, count: int, spans: list[Span]) -> list[Turn]:
    return stream.feed(read_pcm(pcm, start, count), spans)
