"""The voice agent end to end: a real aiortc caller speaks to the WebRTC gateway, the real
operators (Silero + Whisper tiny.en, Qwen 0.5B, piper) answer over a real nats-server.
Questions are spoken by piper itself, so the test needs no recordings. Latency is measured in
loadtests/voice.py; here only behaviour: turns, tools, audio back, barge-in, backchannels."""
from __future__ import annotations

import asyncio
import importlib.util
import pytest
import pytest_asyncio

from operators.voice.synthesize import SynthesizeConfig
from operators.voice.tts.piper import PiperEngine
from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.gateway.start import start_gateway
from topology.voice_client import VoiceCaller

pytestmark = [pytest.mark.models, pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")]


async def spoken(text: str) -> bytes:
    engine = PiperEngine(SynthesizeConfig(sample_rate=16_000, noise_scale=0.0, noise_w=0.0))
    await engine.start()
    try:
        return b"".join([piece async for piece in engine.speak(text)])
    finally:
        await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def voice(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voice")
    settings = [f"agent.notebook={tmp / 'voice.sqlite'}", f"agent.store={tmp / 'store.sqlite'}",
                "agent.max_tokens=60"]
    topo = topo_spec.override(topo_spec.load(ROOT / "topology/voice_agent.yaml"), settings)
    dep = await Deployment.open(topo, nats_server.url, "tvoice")
    await dep.start_operators()
    gateway = await start_gateway(dep, topo, 0)
    yield dep, gateway.url
    await gateway.close()
    await dep.close()


def operator(dep: Deployment, name: str):
    return next(r.op for r in dep.runners if r.spec.name == name)


async def test_a_spoken_question_uses_a_tool_and_is_answered_out_loud(voice):
    dep, url = voice
    async with VoiceCaller(url, user="ana") as call:
        await call.say(await spoken("What time is it?"))
        await call.wait_for_reply(turn=1, timeout=180)
        [turn] = call.kinds("UserTurn")
        assert "time" in turn["text"].lower()
        tools = [e for e in call.kinds("ToolActivity") if e["state"] == "finished"]
        assert [t["name"] for t in tools] == ["current_time"]
        assert call.kinds("AgentSentence")[0]["text"] == tools[0]["result"]
        assert call.kinds("Latency") and call.first_audio_at is not None
        pcm, rate = call.received_pcm()
        assert rate and len(pcm) > rate * 0.5          # at least half a second of voice
    for _ in range(100):                               # the hang-up travels: gateway, listen, agent
        if not operator(dep, "listen").sessions and not operator(dep, "agent").sessions:
            break
        await asyncio.sleep(0.1)
    assert operator(dep, "listen").sessions == {} and operator(dep, "agent").sessions == {}


async def test_barge_in_stops_the_reply_and_the_history_keeps_what_was_heard(voice):
    dep, url = voice
    async with VoiceCaller(url, user="ben") as call:
        await call.say(await spoken("Tell me a long story about a dragon and a knight."))
        await call.barge_in(await spoken("Stop, stop. What time is it?"), after_s=1.0, timeout=180)
        try:
            barge = await call.wait_for("BargeIn", timeout=60)
        except TimeoutError:
            print("EVENTS", [(round(t % 1000, 2), e["kind"], e.get("turn"), str(e.get("text", e.get("state", "")))[:40]) for t, e in call.events])
            raise
        assert barge["onset_to_stop_ms"] < 2000
        flushed = await call.wait_for("Playback", lambda e: e["state"] == "flushed", timeout=60)
        assert flushed["turn"] == 1
        await call.wait_for("UserTurn", lambda e: e["turn"] == 2, timeout=60)
        agent = operator(dep, "agent")
        session = next(iter(agent.sessions.values()))
        for _ in range(300):     # the agent ends turn 1 when the Cancel reaches it
            if 1 in session.replies:
                break
            await asyncio.sleep(0.1)
        first = session.history[session.replies[1]].content
        assert first.endswith("—")                      # cut where the user stopped it
        told = " ".join(e["text"] for e in call.kinds("AgentSentence") if e["turn"] == 1)
        assert len(first) < len(told) + 2


async def test_a_backchannel_over_the_reply_does_not_stop_it(voice):
    dep, url = voice
    async with VoiceCaller(url, user="cy") as call:
        await call.say(await spoken("Tell me about the history of bread in three sentences."))
        await call.barge_in(await spoken("Mm-hmm."), after_s=0.8, timeout=180)
        try:
            discarded = await call.wait_for("TurnDiscarded", timeout=60)
        except TimeoutError:
            print("EVENTS", [(e["kind"], e.get("turn"), str(e.get("text", e.get("state", e.get("reason", ""))))[:50]) for _, e in call.events])
            raise
        assert "backchannel" in discarded["reason"] or "no words" in discarded["reason"]
        await call.wait_for_reply(turn=1, timeout=180)
        states = [e["state"] for e in call.kinds("Playback") if e["turn"] == 1]
        assert "flushed" not in states and states[-1] == "finished"
        assert not call.kinds("Interrupt")
