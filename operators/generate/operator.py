"""Generate: a GenerateRequest in; token deltas, sentences and one GenerateResult out.

With tools, a grammar-constrained first step picks a tool (or the explicit "none");
with an output schema, the answer is grammar-constrained and decoded before it is returned.
"""
from __future__ import annotations

import contextlib
import json
from typing import Annotated, AsyncIterator

import msgspec
from opentelemetry import trace

from operators.base import Context, Operator, Reject
from operators.generate.engine import Delta, EngineQueue, LlmEngine, Prompt
from operators.generate.prompting import NO_TOOL, fit, tool_choice_schema, tool_instructions
from operators.generate.schema_check import bound_violations, small_ranges_as_enums
from operators.generate.sentences import SentenceSplitter
from schemas import (FinishReason, GenerateEvent, GenerateRequest, GenerateResult, SentenceDelta,
                     TokenDelta, ToolCall, Usage)


TOOL_TOKENS = 256  # room for the tool choice's JSON


class GenerateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str = "qwen2.5-coder-1.5b"   # a name in operators/models.py, for the embedded engine
    gguf: str = ""                      # or any GGUF file (PATCHWIRE_LLM_GGUF overrides both)
    context_tokens: Annotated[int, msgspec.Meta(ge=256)] = 4096
    threads: Annotated[int, msgspec.Meta(ge=1)] = 2
    base_url: str = ""                  # openai engine: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    served_model: str = ""              # openai engine: the server's model name
    slots: Annotated[int, msgspec.Meta(ge=1)] = 1
    waiting: Annotated[int, msgspec.Meta(ge=0)] = 4
    sentence_min_chars: int = 8


class Generate(Operator[GenerateRequest, GenerateEvent]):
    kind = "generate"
    input_type = GenerateRequest
    output_type = GenerateEvent
    Config = GenerateConfig

    async def start(self) -> None:
        if self.engine is None:
            from operators.generate.llama import LlamaEngine  # llama.cpp loads only when used
            self.engine = LlamaEngine(self.config)
        self.queue = EngineQueue(self.config.slots, self.config.waiting)
        if hasattr(self.engine, "load"):
            await self.engine.load()

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    async def process(self, req: GenerateRequest, ctx: Context) -> AsyncIterator[GenerateEvent]:
        engine: LlmEngine = self.engine
        budget = engine.context_tokens - req.max_tokens
        if req.tools:  # the tool step adds its instructions and needs room for its JSON
            budget = (engine.context_tokens - max(req.max_tokens, TOOL_TOKENS)
                      - engine.count_tokens([tool_instructions(req.tools)]))
        messages, dropped = fit(req.messages, budget, engine.count_tokens)
        warnings = [f"{dropped} oldest turns dropped to fit the context"] if dropped else []
        left = ctx.time_left()
        async with self.queue.slot(timeout=left):
            if req.tools:
                call, usage = await self._choose_tool(req, messages, ctx)
                if call is not None:
                    _record(usage)
                    yield GenerateResult(request_id=req.request_id, tool_call=call, model=engine.model,
                                         finish_reason=FinishReason.TOOL, usage=usage,
                                         warnings=warnings)
                    return
            # aclosing: a consumer that stops (a Cancel) stops the engine before the slot is freed
            async with contextlib.aclosing(self._answer(req, messages, ctx, warnings)) as events:
                async for event in events:
                    yield event

    async def _choose_tool(self, req, messages, ctx) -> tuple[ToolCall | None, Usage]:
        prompt = Prompt(messages=[tool_instructions(req.tools), *messages], max_tokens=TOOL_TOKENS,
                        json_schema=tool_choice_schema(req.tools), temperature=0.0,
                        session_id=ctx.session_id)
        async with contextlib.aclosing(self.engine.stream(prompt)) as stream:
            deltas = [d async for d in stream]
        text = "".join(d.text for d in deltas)
        usage = next((d.usage for d in reversed(deltas) if d.usage), None) or Usage()
        try:
            choice = json.loads(text)
        except json.JSONDecodeError as e:
            raise Reject(f"tool choice was not JSON ({e}): {text[:200]!r}") from None
        if choice.get("tool", NO_TOOL) == NO_TOOL:
            return None, usage
        return ToolCall(name=choice["tool"], arguments=choice.get("arguments") or {}), usage

    async def _answer(self, req, messages, ctx, warnings) -> AsyncIterator[GenerateEvent]:
        schema = small_ranges_as_enums(req.output_schema) if req.output_schema else None
        prompt = Prompt(messages=messages, json_schema=schema, max_tokens=req.max_tokens,
                        temperature=req.temperature, stop=req.stop, session_id=ctx.session_id)
        splitter = SentenceSplitter(self.config.sentence_min_chars)
        parts: list[str] = []
        last = Delta()
        stream_text = req.output_schema is None  # JSON is only useful whole
        async with contextlib.aclosing(self.engine.stream(prompt)) as stream:
            async for delta in stream:
                last = delta
                if not delta.text:
                    continue
                parts.append(delta.text)
                if stream_text:
                    yield TokenDelta(request_id=req.request_id, index=len(parts) - 1, text=delta.text)
                    for sentence in splitter.feed(delta.text):
                        yield SentenceDelta(request_id=req.request_id, index=0, text=sentence)
        rest = splitter.flush()
        if stream_text and rest:
            yield SentenceDelta(request_id=req.request_id, index=0, text=rest)
        yield self._result(req, "".join(parts), last, warnings)

    def _result(self, req, text: str, last: Delta, warnings: list[str]) -> GenerateResult:
        usage = last.usage or Usage()
        _record(usage)
        reason = FinishReason.LENGTH if last.finish_reason == "length" else FinishReason.STOP
        decoded = None
        if req.output_schema is not None:
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError as e:
                raise Reject(f"output did not decode as the requested schema ({e}); "
                             f"finish reason {reason.value}: {text[-200:]!r}") from None
            broken = bound_violations(decoded, req.output_schema)
            if broken:
                raise Reject("output breaks the requested schema: " + "; ".join(broken[:5]))
        return GenerateResult(request_id=req.request_id, text=text.strip(), json=decoded,
                              finish_reason=reason, usage=usage, model=self.engine.model,
                              warnings=warnings)


def _record(usage: Usage) -> None:
    """Usage on the operator's span, so a trace shows where the time went."""
    span = trace.get_current_span()
    for key, value in msgspec.structs.asdict(usage).items():
        span.set_attribute(f"gen_ai.usage.{key}", value)
