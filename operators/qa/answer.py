"""Answer: candidates → the draft answer, streamed, citing the passages as [n].

Assembles the context (operators/qa/assemble.py) and generates with the shared LLM. Token
deltas go out as AnswerDelta so a page can show the answer as it is written; the Draft at
the end goes on to verification, which decides what the user finally gets. With no
relevant passage the model is not called: the draft says the documents do not hold it.
"""
from __future__ import annotations

import contextlib
import time
from typing import Annotated, AsyncIterator

import msgspec

from operators.base import Context, Operator
from operators.documents.chunk import approx_tokens
from operators.generate.engine import EngineQueue, Prompt
from operators.generate.shared import LlmSettings
from operators.qa.assemble import NOT_FOUND, edges_first, messages, within_budget
from schemas.documents import AnswerDelta, Candidates, Draft, DraftEvent


class AnswerConfig(LlmSettings, frozen=True, forbid_unknown_fields=True):
    context_budget: Annotated[int, msgspec.Meta(ge=64)] = 900   # tokens of passages
    max_tokens: Annotated[int, msgspec.Meta(ge=16)] = 220
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.0
    slots: Annotated[int, msgspec.Meta(ge=1)] = 1
    waiting: Annotated[int, msgspec.Meta(ge=0)] = 8


class Answer(Operator[Candidates, DraftEvent]):
    kind = "answer"
    input_type = Candidates
    output_type = DraftEvent
    Config = AnswerConfig

    async def start(self) -> None:
        self.queue = EngineQueue(self.config.slots, self.config.waiting)
        if hasattr(self.engine, "load"):
            await self.engine.load()

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    async def process(self, found: Candidates, ctx: Context) -> AsyncIterator[DraftEvent]:
        query, timings = found.query, dict(found.timings)
        if query.clarify or not found.passages:
            text = "" if query.clarify else NOT_FOUND
            yield Draft(query=query, text=text, passages=found.closest, timings=timings)
            return
        passages = edges_first(within_budget(found.passages, self.config.context_budget,
                                             approx_tokens))
        chat, removed = messages(query.query, passages, query.ask.history)
        prompt = Prompt(messages=chat, max_tokens=self.config.max_tokens,
                        temperature=self.config.temperature, session_id=ctx.session_id)
        parts: list[str] = []
        async with self.queue.slot(timeout=ctx.time_left()):
            started = time.perf_counter()
            async with contextlib.aclosing(self.engine.stream(prompt)) as stream:
                async for delta in stream:
                    if delta.text:
                        if not parts:
                            timings["first_token_ms"] = (time.perf_counter() - started) * 1000
                        parts.append(delta.text)
                        yield AnswerDelta(request_id=query.ask.request_id, index=len(parts) - 1,
                                          text=delta.text)
            timings["generate_ms"] = (time.perf_counter() - started) * 1000
        if removed:
            timings["instructions_removed"] = float(removed)
        yield Draft(query=query, text="".join(parts).strip(), passages=passages, timings=timings)
