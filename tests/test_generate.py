"""The generate operator with a scripted engine: streaming, sentences, tools, structure, limits."""
from __future__ import annotations

import asyncio

import pytest

from operators.base import Busy, Reject
from operators.generate.engine import Delta, EngineQueue, Prompt
from operators.generate.operator import Generate
from operators.generate.sentences import SentenceSplitter
from operators.testing import drive
from schemas import (ChatMessage, FinishReason, GenerateRequest, GenerateResult, SentenceDelta,
                     TokenDelta, ToolSpec, Usage)


class ScriptedEngine:
    """Streams a scripted answer word by word; JSON-constrained prompts get `json_answer`."""

    model = "scripted"

    def __init__(self, answer: str, json_answer: str = '{"tool": "none"}', context_tokens: int = 4096):
        self.answer, self.json_answer = answer, json_answer
        self.context_tokens = context_tokens
        self.prompts: list[Prompt] = []

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    async def stream(self, prompt: Prompt):
        self.prompts.append(prompt)
        text = self.json_answer if prompt.json_schema else self.answer
        pieces = [w + " " for w in text.split(" ")] if not prompt.json_schema else [text]
        for piece in pieces:
            await asyncio.sleep(0)
            yield Delta(text=piece)
        yield Delta(finish_reason="stop", usage=Usage(completion_tokens=len(pieces)))

    async def close(self) -> None: ...


def request(*turns: str, **kw) -> GenerateRequest:
    roles = ["user", "assistant"]
    messages = [ChatMessage(role="system", content="Be brief.")] + [
        ChatMessage(role=roles[i % 2], content=t) for i, t in enumerate(turns)]
    return GenerateRequest(request_id="r1", messages=messages, **kw)


async def run(engine, req, **config) -> list:
    op = Generate("generate", Generate.Config(**config), engine)
    await op.start()
    return await drive(op, req)


async def test_tokens_then_sentences_then_one_result():
    out = await run(ScriptedEngine("It rains in Paris. Take an umbrella! Dr. Smith agrees."), request("Weather?"))
    assert sum(isinstance(o, TokenDelta) for o in out) >= 5
    assert [o.text for o in out if isinstance(o, SentenceDelta)] == [
        "It rains in Paris.", "Take an umbrella!", "Dr. Smith agrees."]
    assert isinstance(out[-1], GenerateResult) and out[-1].text.startswith("It rains")
    assert out[-1].finish_reason is FinishReason.STOP and out[-1].usage.completion_tokens > 0


async def test_a_tool_is_called_through_the_constrained_choice():
    engine = ScriptedEngine("unused", json_answer='{"tool": "get_weather", "arguments": {"city": "Paris"}}')
    tools = [ToolSpec(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})]
    out = await run(engine, request("Weather in Paris?", tools=tools))
    assert len(out) == 1 and out[0].tool_call.name == "get_weather"
    assert out[0].tool_call.arguments == {"city": "Paris"} and out[0].finish_reason is FinishReason.TOOL
    schema = engine.prompts[0].json_schema
    assert {"tool": {"const": "none"}} in [o["properties"] for o in schema["anyOf"]]


async def test_no_tool_means_an_answer():
    tools = [ToolSpec(name="get_weather")]
    out = await run(ScriptedEngine("Four."), request("What is 2+2?", tools=tools))
    assert out[-1].tool_call is None and out[-1].text == "Four."


async def test_structured_output_is_decoded_or_rejected():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    out = await run(ScriptedEngine("", json_answer='{"n": 4}'), request("2+2?", output_schema=schema))
    assert out[-1].json == {"n": 4} and not any(isinstance(o, TokenDelta) for o in out)
    with pytest.raises(Reject, match="did not decode"):
        await run(ScriptedEngine("", json_answer='{"n": 4'), request("2+2?", output_schema=schema))


async def test_empty_prompt_is_rejected():
    with pytest.raises(Reject, match="empty prompt"):
        await run(ScriptedEngine("x"), request("   "))


async def test_long_conversation_keeps_system_and_newest_turns():
    engine = ScriptedEngine("ok", context_tokens=600)
    turns = [f"turn {i} " + "word " * 40 for i in range(20)]
    out = await run(engine, request(*turns, "the last question", max_tokens=256))
    kept = engine.prompts[0].messages
    assert kept[0].role == "system" and kept[-1].content == "the last question"
    assert 1 < len(kept) < 22 and "oldest turns dropped" in out[-1].warnings[0]
    with pytest.raises(Reject, match="the context leaves"):
        await run(ScriptedEngine("ok", context_tokens=300), request("word " * 400, max_tokens=256))


async def test_engine_queue_sheds_when_full():
    queue = EngineQueue(slots=1, waiting=1)
    async with queue.slot():
        waiter = asyncio.create_task(queue.slot().__aenter__())
        await asyncio.sleep(0)
        with pytest.raises(Busy, match="already waiting"):
            async with queue.slot():
                pass
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    with pytest.raises(Busy, match="deadline"):
        async with queue.slot():
            async with queue.slot(timeout=0.01):
                pass


@pytest.mark.parametrize("text, sentences", [
    ("Pi is 3.14 today. Yes.", ["Pi is 3.14 today."]),
    ("Line one without stop\nLine two. ", ["Line one without stop", "Line two."]),
    ("Hi. Short. This one is long enough. ", ["Hi. Short.", "This one is long enough."]),
    ("e.g. apples and pears are fine. ok", ["e.g. apples and pears are fine."]),
])
def test_sentence_splitter(text, sentences):
    splitter = SentenceSplitter(min_chars=8)
    got = [s for ch in text for s in splitter.feed(ch)]
    assert got == sentences


async def test_numeric_bounds_the_grammar_cannot_enforce_are_checked():
    schema = {"type": "object", "properties": {"confidence": {"type": "number", "maximum": 1},
                                               "stars": {"type": "integer", "minimum": 1, "maximum": 5}}}
    engine = ScriptedEngine("", json_answer='{"confidence": 3, "stars": 4}')
    with pytest.raises(Reject, match=r"\$\.confidence = 3 breaks maximum 1"):
        await run(engine, request("Rate it.", output_schema=schema))
    # a small integer range reaches the engine as an enum, which a grammar does enforce
    assert engine.prompts[0].json_schema["properties"]["stars"] == {"enum": [1, 2, 3, 4, 5]}
