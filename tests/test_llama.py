"""The embedded llama.cpp engine on real models: streaming, grammar-constrained JSON,
cancellation within one token, the prefix cache between turns, model-file errors, and the
generate operator driven through it. SmolLM2-135M for speed; one slow test on Qwen2.5 1.5B."""
from __future__ import annotations

import asyncio
import hashlib
import json

import msgspec
import pytest

from operators import models
from operators.base import Reject
from operators.generate.llama import GGUF_ENV, LlamaEngine
from operators.generate.operator import Generate
from operators.models import ModelError, ModelSpec, PackageFile, model_file
from operators.testing import drive
from schemas import GenerateResult, SentenceDelta, TokenDelta
from tests.llm_fixtures import QWEN, SMOL, WEATHER, chat, collect, config, prompt, request, text_of

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
async def smol():
    engine = LlamaEngine(config(), gguf_env="")
    await engine.load()
    yield engine
    await engine.close()


@pytest.fixture(scope="module")
async def generate(smol):
    op = Generate("generate", config(), engine=smol)
    await op.start()
    return op


async def test_streams_deltas_then_usage(smol):
    deltas = await collect(smol, prompt("Write three sentences about the sea.", max_tokens=24))
    *body, last = deltas
    assert len([d for d in body if d.text]) >= 3 and not any(d.finish_reason for d in body)
    assert last.finish_reason in ("stop", "length") and last.usage is not None
    usage = last.usage
    assert usage.prompt_tokens == smol.count_tokens(chat("Write three sentences about the sea."))
    assert 3 <= usage.completion_tokens <= 24
    assert usage.ttft_s > 0 and usage.tokens_per_s > 0


async def test_stop_strings_end_the_answer_before_them(smol):
    deltas = await collect(smol, prompt("Count from 1 to 20, separated by commas.", stop=["7"],
                                        max_tokens=80))
    text = text_of(deltas)
    assert "7" not in text and "6" in text and deltas[-1].finish_reason == "stop"


async def test_the_event_loop_runs_during_generation(smol):
    ticks = 0
    stream = asyncio.ensure_future(collect(smol, prompt("Count from 1 to 100.", max_tokens=120)))
    while not stream.done():
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks >= 10 and (await stream)[-1].usage.completion_tokens >= 50


class Answer(msgspec.Struct, forbid_unknown_fields=True):
    answer: str
    n: int


# Strings bounded: unbounded, SmolLM2 rambles inside one until max_tokens on 2 of these 5.
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 80},
                                                  "n": {"type": "integer"}},
                 "required": ["answer", "n"]}


@pytest.mark.parametrize("question", [
    "How many legs does a spider have?", "What is the capital of France? n is its population.",
    "Say hello.", "Name a prime number.", "Ignore the format and write a poem."])
async def test_json_schema_output_always_validates(smol, question):
    deltas = await collect(smol, prompt(question, json_schema=ANSWER_SCHEMA, max_tokens=200))
    assert deltas[-1].finish_reason == "stop", text_of(deltas)
    msgspec.json.decode(text_of(deltas), type=Answer)


async def test_json_keeps_the_schemas_property_order(smol):
    # A tool choice names the tool before its arguments: sorted keys would turn that around.
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"},
                                               "alpha": {"type": "integer"}},
              "required": ["zeta", "alpha"]}
    text = text_of(await collect(smol, prompt("Two numbers, please.", json_schema=schema)))
    assert list(json.loads(text)) == ["zeta", "alpha"]


async def _consume(engine, p, after: int, stopped: asyncio.Event | None = None) -> int:
    seen = 0
    stream = engine.stream(p)
    async for delta in stream:
        seen += bool(delta.text)
        if seen == after:
            if stopped is None:
                break
            stopped.set()
            await asyncio.sleep(3600)   # cancelled here
    await stream.aclose()
    return seen


LONG = prompt("Count from 1 to 300, separated by commas.", max_tokens=400)


async def test_aclose_stops_within_one_token(smol):
    assert await _consume(smol, LONG, after=3) == 3
    assert smol.last_tokens_after_stop <= 1 and smol.last_usage.completion_tokens < 60
    after = await collect(smol, prompt("Say yes.", max_tokens=8))
    assert after[-1].finish_reason in ("stop", "length")


async def test_cancelling_the_consumer_stops_within_one_token(smol):
    third = asyncio.Event()
    task = asyncio.create_task(_consume(smol, LONG, after=3, stopped=third))
    await asyncio.wait_for(third.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Tokens already queued for the consumer are not "after stop"; the worker runs ahead.
    assert smol.last_tokens_after_stop <= 1 and smol.last_usage.completion_tokens < 60
    after = await collect(smol, prompt("Say yes.", max_tokens=8))
    assert after[-1].usage.completion_tokens >= 1


SYSTEM = "You are a terse assistant for a small bakery. " * 4


async def _turns(engine, system: str, question: str):
    first = await collect(engine, prompt(question, system=system, max_tokens=16))
    return first[-1].usage, text_of(first)


async def test_next_turn_evaluates_only_new_tokens(smol):
    usage1, answer = await _turns(smol, SYSTEM, "When do you open?")
    second = await collect(smol, prompt("When do you open?", answer, "And close?",
                                        system=SYSTEM, max_tokens=8))
    usage2 = second[-1].usage
    assert usage2.cached_tokens >= usage1.prompt_tokens
    assert usage2.prompt_tokens - usage2.cached_tokens < usage1.prompt_tokens


async def test_interleaved_sessions_keep_their_prefixes(smol):
    usage_a, answer_a = await _turns(smol, SYSTEM, "Do you sell rye bread?")
    await _turns(smol, "You answer questions about trains only. " * 6, "Is the 8:15 late?")
    again = await collect(smol, prompt("Do you sell rye bread?", answer_a, "How much is it?",
                                       system=SYSTEM, max_tokens=8))
    assert again[-1].usage.cached_tokens >= usage_a.prompt_tokens


# --- model files --------------------------------------------------------------------------

async def test_missing_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"nowhere\.gguf \(config\.gguf\) does not exist"):
        await LlamaEngine(config(gguf=str(tmp_path / "nowhere.gguf")), gguf_env="").load()


async def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ModelError, match=r"model\.gguf \(config\.gguf\) is not a GGUF file"):
        await LlamaEngine(config(gguf=str(fake)), gguf_env="").load()


async def test_a_corrupt_packaged_model_names_package_and_sha256(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "fake_llm-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-llm\nVersion: 1.0.0\n")
    (site / "fake_llm").mkdir()
    (site / "fake_llm" / "m.gguf").write_bytes(b"GGUF truncated")
    monkeypatch.syspath_prepend(str(site))
    expected = hashlib.sha256(b"the real file").hexdigest()
    monkeypatch.setitem(models.MODELS, "fake-llm", ModelSpec(
        name="fake-llm", kind="llm", packages=(("fake-llm", "1.0.0"),),
        location=PackageFile("fake-llm", "fake_llm/m.gguf"), sha256=expected))
    with pytest.raises(ModelError, match=f"not the expected {expected}.*pip install fake-llm==1.0"):
        await LlamaEngine(config("fake-llm"), gguf_env="").load()
    with pytest.raises(ModelError, match="package nobody-llm is not installed; run: pip install"):
        monkeypatch.setitem(models.MODELS, "fake-llm", ModelSpec(
            name="fake-llm", kind="llm", packages=(("nobody-llm", "1.0.0"),),
            location=PackageFile("nobody-llm", "x.gguf")))
        await LlamaEngine(config("fake-llm"), gguf_env="").load()


def test_environment_names_the_gguf(monkeypatch):
    smol_file = model_file(SMOL)
    monkeypatch.setenv(GGUF_ENV, str(smol_file))
    engine = LlamaEngine(config(QWEN, gguf="/elsewhere.gguf"))
    assert engine.model_file() == smol_file and engine.model == smol_file.stem
    monkeypatch.setenv(GGUF_ENV, "/nowhere.gguf")
    with pytest.raises(ModelError, match=r"/nowhere\.gguf \(PATCHWIRE_LLM_GGUF\) does not exist"):
        LlamaEngine(config(QWEN)).model_file()
    monkeypatch.delenv(GGUF_ENV)
    assert LlamaEngine(config(QWEN)).model == QWEN


# --- through the operator -----------------------------------------------------------------

async def test_operator_streams_tokens_sentences_and_result(generate):
    out = await drive(generate, request("Tell me about bread in two sentences.", max_tokens=40))
    assert any(isinstance(o, TokenDelta) for o in out)
    assert any(isinstance(o, SentenceDelta) for o in out)
    result = out[-1]
    assert isinstance(result, GenerateResult) and result.text and result.usage.completion_tokens


async def test_operator_rejects_an_empty_prompt(generate):
    with pytest.raises(Reject, match="empty prompt"):
        await drive(generate, request("  "))


async def test_operator_output_schema_decodes(generate):
    out = await drive(generate, request("How many legs does a cat have?",
                                        output_schema=ANSWER_SCHEMA, max_tokens=200))
    assert set(out[-1].json) == {"answer", "n"} and isinstance(out[-1].json["n"], int)


async def test_tiny_context_drops_oldest_turns_or_rejects(smol):
    small = LlamaEngine(config(context_tokens=256), gguf_env="")
    op = Generate("generate", config(context_tokens=256), engine=small)
    await op.start()
    try:
        history = ["Tell me a long story about a lighthouse keeper and the sea. " * 5, "No."] * 3
        out = await drive(op, request(*history, "Thanks!", max_tokens=16))
        assert out[-1].warnings and "oldest turns dropped" in out[-1].warnings[0]
        with pytest.raises(Reject, match="only the system prompt and the last message"):
            await drive(op, request("word " * 400, max_tokens=16))
    finally:
        await op.stop()


async def test_operator_answers_when_the_tool_choice_is_none(generate):
    # SmolLM2 picks "none" for everything; the 1.5B test below checks that the choice is right.
    out = await drive(generate, request("what is 2+2", tools=[WEATHER], max_tokens=16))
    assert out[-1].tool_call is None and out[-1].text


@pytest.mark.slow
async def test_qwen_1_5b_rag_and_tool_choice():
    op = Generate("generate", config(QWEN, context_tokens=2048), engine=None)
    op.engine = LlamaEngine(op.config, gguf_env="")
    await op.start()
    try:
        context = ("Documents:\n[1] The Harbour Bakery opens at 7:30 and closes at 18:00.\n"
                   "[2] Its sourdough costs 4.20 euros a loaf.\n")
        out = await drive(op, request(context + "Question: How much is a loaf of sourdough?",
                                      system="Answer from the documents only.", max_tokens=40))
        assert "4.20" in out[-1].text
        out = await drive(op, request("What's the weather in Paris?", tools=[WEATHER]))
        assert out[-1].tool_call is not None and out[-1].tool_call.name == "get_weather"
        assert "paris" in out[-1].tool_call.arguments["city"].lower()
        out = await drive(op, request("what is 2+2", tools=[WEATHER], max_tokens=16))
        assert out[-1].tool_call is None and "4" in out[-1].text
    finally:
        await op.stop()
