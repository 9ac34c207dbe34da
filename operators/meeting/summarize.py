"""Summarize: an attributed, cleaned Transcript in; the meeting's minutes out.

The summary itself is operators/meeting/summary.py (map over sections, ground, reduce);
this operator holds the shared LLM, reports progress per section and wraps the result with
the transcript and what the user asked for. A meeting where nothing was said, or whose
owner asked for no summary, is filed without one and says why.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import msgspec

from operators.base import Context, Operator
from operators.generate.shared import LlmSettings
from operators.meeting.archive import document_id
from operators.meeting.summary import Caps, SummaryConfig, summarize
from schemas import MeetingInfo, MeetingMinutes, Transcript


class SummarizeConfig(LlmSettings, frozen=True, forbid_unknown_fields=True):
    model: str = "qwen2.5-coder-1.5b"     # the 0.5B cannot write grounded minutes (evals/RESULTS.md)
    section_tokens: Annotated[int, msgspec.Meta(ge=200)] = 1500
    max_tokens: Annotated[int, msgspec.Meta(ge=64)] = 700
    min_support: float = 0.5
    reach: int = 2
    cap: Caps = Caps()

    def summary(self) -> SummaryConfig:
        return SummaryConfig(section_tokens=self.section_tokens, max_tokens=self.max_tokens,
                             min_support=self.min_support, reach=self.reach, cap=self.cap)


class Summarize(Operator[Transcript, MeetingMinutes]):
    kind = "summarize"
    input_type = Transcript
    output_type = MeetingMinutes
    Config = SummarizeConfig

    async def stop(self) -> None:
        if self.engine is not None and hasattr(self.engine, "close"):
            await self.engine.close()

    async def process(self, msg: Transcript, ctx: Context) -> AsyncIterator[MeetingMinutes]:
        info = (msg.audio.meeting if msg.audio else None) or MeetingInfo()
        warnings, summary = [], None
        if not info.summarize:
            warnings.append("no summary: the meeting was filed with summarize=false")
        elif not msg.text:
            warnings.append("no summary: nobody spoke (the recording holds no speech the "
                            "ASR could transcribe)")
        else:
            async def report(done: float, total: float, note: str) -> None:
                await ctx.progress(done, total, note)
            summary = await summarize(msg, self.engine, self.config.summary(), report)
            summary = msgspec.structs.replace(summary, job_id=msg.job_id)
        if info.index and not msg.segments:
            warnings.append("not indexed: the transcript is empty")
        yield MeetingMinutes(job_id=msg.job_id, transcript=msg, summary=summary, info=info,
                             audio=msg.audio.pcm if msg.audio else None, warnings=warnings,
                             document_id=document_id(msg.job_id) if info.index and msg.segments
                             else "")
