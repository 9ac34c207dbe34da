"""The generate topology over a real nats-server with the embedded engine (SmolLM2):
streaming on the bus, barge-in by a Cancel on the session, overload shed as busy."""
from __future__ import annotations

import asyncio
import importlib.util

import msgspec
import pytest
import pytest_asyncio

from schemas import (ChatMessage, Failure, FailureCategory, GenerateEvent, GenerateRequest,
                     GenerateResult, Headers,
                     TokenDelta, decoder)
from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.jobs import cancel

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed (bash infra/install.sh builds it)")
EVENTS = decoder(GenerateEvent)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def generate(nats_server):
    topo = topo_spec.override(topo_spec.load(ROOT / "topology/generate.yaml"),
                              ["generate.model=smollm2-135m", "generate.waiting=1"])
    dep = await Deployment.open(topo, nats_server.url, "tgenerate")
    await dep.start_operators()
    yield dep
    await dep.close()


async def ask(dep, session: str, text: str, max_tokens: int = 200) -> None:
    req = GenerateRequest(request_id=session, max_tokens=max_tokens,
                          messages=[ChatMessage(role="user", content=text)])
    await dep.bus.nc.publish(dep.bus.subjects.edge("requests", session), msgspec.msgpack.encode(req),
                             headers={Headers.SESSION: session})


async def listen(dep, edge: str, session: str) -> list:
    got: list = []

    async def cb(msg):
        got.append(msg.data)
    await dep.bus.nc.subscribe(dep.bus.subjects.edge(edge, session), cb=cb)
    return got


async def until(predicate, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_answer_streams_on_the_bus(generate):
    events = await listen(generate, "events", "s-stream")
    await ask(generate, "s-stream", "Say hello in one short sentence.", max_tokens=24)
    await until(lambda: any(isinstance(EVENTS.decode(e), GenerateResult) for e in events))
    decoded = [EVENTS.decode(e) for e in events]
    assert sum(isinstance(e, TokenDelta) for e in decoded) >= 2
    assert decoded[-1].usage.completion_tokens > 0


async def test_cancel_on_the_session_stops_within_a_token(generate):
    events = await listen(generate, "events", "s-barge")
    await ask(generate, "s-barge", "Tell me a long story about a lighthouse keeper.", max_tokens=400)
    await until(lambda: len(events) >= 3)
    await cancel(generate.bus, session_id="s-barge", reason="user spoke")
    engine = generate.runners[0].op.engine
    await asyncio.sleep(1.0)
    decoded = [EVENTS.decode(e) for e in events]
    assert not any(isinstance(e, GenerateResult) for e in decoded)  # stopped, not finished
    assert engine.last_tokens_after_stop <= 1
    after = await listen(generate, "events", "s-after")
    await ask(generate, "s-after", "Say yes.", max_tokens=4)  # the slot is free again
    await until(lambda: any(isinstance(EVENTS.decode(e), GenerateResult) for e in after))


async def test_overload_is_shed_as_busy_never_left_hanging(generate):
    errors = await listen(generate, "errors", "s-busy-3")
    for i in range(4):  # one generating, one waiting (waiting=1), the rest shed
        await ask(generate, f"s-busy-{i}", "Count to twenty.", max_tokens=60)
    await until(lambda: errors, timeout=30)
    failure = msgspec.msgpack.decode(errors[0], type=Failure)
    assert failure.category is FailureCategory.BUSY and "busy" in failure.reason
