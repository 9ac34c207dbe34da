"""The voice gateway over a real nats-server, with real aiortc callers (and one real headless
chromium), in front of a scripted fake pipeline on the bus: it records the frames the gateway
publishes and answers on cue with heard/said/audio_out events, its "voice" a tone.

Timing is asserted in frames, not in wall-clock time: "the caller hears no more than 10 frames
of tone after the pause reached it", never "within 200 ms"."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from pathlib import Path

import aiohttp
import msgspec
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from schemas import Cancel, Headers, encoder
from schemas.audio import AudioFrame
from schemas.voice import (AgentSentence, AgentTurnDone, HearEvent, Interrupt, Partial,
                           SessionClosed, SpeechAudio, SpeechStarted, Spoken, ToolActivity,
                           TurnDiscarded, UserTurn)
from topology.bus import Bus
from topology.gateway.auth import load_users
from topology.gateway.http import make_app, serve
from topology.gateway.voice import VoiceGateway
from topology.gateway.voice_config import VoiceConfig, config_from_env, default_max_sessions
from topology.gateway.voice_playout import Playout
from topology.subjects import Subjects
from topology.voice_client import SILENT_RMS, VoiceCallError, VoiceCaller

ENC = encoder()
TTS_RATE = 22_050
LONG = "one two three four five six seven eight nine ten."


def tone(seconds: float, rate: int = TTS_RATE, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2").tobytes()


def loud(frames) -> int:
    return sum(1 for f in frames if f.rms >= SILENT_RMS)


class FakePipeline:
    """Stands where listen → agent → synthesize run: sees every frame, Cancel and `heard`
    message of the namespace, and publishes what a test tells it to, as those operators would."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.frames: dict[str, list[tuple[float, AudioFrame, dict]]] = collections.defaultdict(list)
        self.heard: list[HearEvent] = []
        self.cancels: list[Cancel] = []
        self.changed = asyncio.Event()
        self.subs: list = []

    async def start(self) -> "FakePipeline":
        s, nc = self.bus.subjects, self.bus.nc
        frames, heard = msgspec.msgpack.Decoder(AudioFrame), msgspec.msgpack.Decoder(HearEvent)

        async def on_frame(msg):
            self.frames[msg.headers[Headers.SESSION]].append(
                (time.monotonic(), frames.decode(msg.data), dict(msg.headers)))
            self.changed.set()

        async def on_heard(msg):
            self.heard.append(heard.decode(msg.data))
            self.changed.set()

        async def on_cancel(msg):
            self.cancels.append(msgspec.msgpack.decode(msg.data, type=Cancel))
            self.changed.set()
        self.subs = [await nc.subscribe(s.edge_filter("frames"), cb=on_frame),
                     await nc.subscribe(s.edge_filter("heard"), cb=on_heard),
                     await nc.subscribe(f"{s.root}._cancel.>", cb=on_cancel)]
        return self

    async def until(self, condition, timeout: float = 15.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.1)

    async def frames_until(self, session: str, n: int, where=lambda f: True) -> int:
        """Wait until `n` frames of `session` (that `where` accepts) were published; returns
        the count of all its frames at that moment."""
        await self.until(lambda: sum(1 for _, f, _ in self.frames[session] if where(f)) >= n,
                         what=f"{n} frames of {session}")
        return len(self.frames[session])

    async def publish(self, edge: str, session: str, msg) -> None:
        await self.bus.nc.publish(self.bus.subjects.edge(edge, session), ENC.encode(msg),
                                  headers={Headers.SESSION: session})

    async def reply(self, session: str, turn: int, sentences: list[tuple[str, bytes]],
                    piece_s: float = 0.2, end: bool = True) -> None:
        """The agent's sentences and their voice, as synthesize sends them: pieces faster
        than real time, the text on each sentence's first piece."""
        step = int(piece_s * TTS_RATE) * 2
        for index, (text, pcm) in enumerate(sentences):
            await self.publish("said", session, AgentSentence(session_id=session, turn=turn,
                                                              index=index, text=text))
            starts = list(range(0, len(pcm), step))
            for seq, start in enumerate(starts):
                await self.publish("audio_out", session, SpeechAudio(
                    session_id=session, turn=turn, index=index, seq=seq,
                    pcm=pcm[start:start + step], text=text if seq == 0 else "",
                    last=seq == len(starts) - 1))
        if end:
            await self.publish("audio_out", session, SpeechAudio(
                session_id=session, turn=turn, index=len(sentences), seq=0, end_of_turn=True))

    async def stop(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()


@contextlib.asynccontextmanager
async def voice_gateway(nats_server, namespace, users=None, **config):
    bus = await Bus.connect(nats_server.url, Subjects("voice_agent", namespace))
    pipeline = await FakePipeline(bus).start()
    gateway = VoiceGateway(bus, VoiceConfig(loopback=True, **config))
    runner, url = await serve(make_app(None, voice=gateway, users=users))
    try:
        yield gateway, url, pipeline
    finally:
        await runner.cleanup()
        await pipeline.stop()
        await bus.close()


async def test_audio_round_trip_frames_tone_and_latency(nats_server, namespace):
    async with voice_gateway(nats_server, namespace) as (gateway, url, pipeline):
        async with VoiceCaller(url, user="ana") as call:
            sid = call.session_id
            await call.say(tone(1.0, 16_000, 300.0), silence_before=0.3, silence_after=0.3)
            frames = [f for _, f, _ in pipeline.frames[sid]]
            heard_tone = sum(1 for f in frames if _rms(f.pcm) > SILENT_RMS)
            await pipeline.publish("heard", sid, Partial(session_id=sid, turn=1, text="hel"))
            await pipeline.publish("heard", sid, UserTurn(session_id=sid, turn=1, text="hello",
                                                          speech_end_unix=time.time()))
            await pipeline.reply(sid, 1, [("Hello there.", tone(1.0))])
            await call.wait_for_reply(turn=1)
            # Taken together: how far the gateway's frames lag the caller's microphone.
            sent, out = call.mic.frames, len(pipeline.frames[sid])
        published = [f for _, f, _ in pipeline.frames[sid]]
    assert {len(f.pcm) for f in published} == {640} and {f.sample_rate for f in published} == {16_000}
    assert [f.seq for f in published] == list(range(len(published)))
    assert sent - 15 <= out <= sent                 # one frame out per 20 ms sent: 50/s, 300 ms lag
    assert published[0].user == "ana" and published[60].user == ""
    assert published[-1].last and not any(f.last for f in published[:-1])
    assert {h[Headers.SESSION] for _, _, h in pipeline.frames[sid]} == {sid}
    assert 45 <= heard_tone <= 55                               # the caller's 1 s tone, in frames
    assert 45 <= loud(call.received_audio) <= 55                # the agent's 1 s tone came back
    assert [e["text"] for e in call.kinds("Partial")] == ["hel"]
    assert call.kinds("AgentSentence")[0]["text"] == "Hello there."
    assert call.kinds("Latency")[0]["time_to_first_audio_ms"] > 0
    states = [e["state"] for e in call.kinds("Playback")]
    assert states == ["started", "finished"]
    assert gateway.sessions == {}


def _rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(pcm, np.int16).astype(np.float64) ** 2)))


async def test_barge_in_pauses_at_once_then_flushes_cancels_and_says_what_was_heard(
        nats_server, namespace):
    async with voice_gateway(nats_server, namespace) as (gateway, url, pipeline):
        async with VoiceCaller(url) as call:
            sid = call.session_id
            await pipeline.frames_until(sid, 5)
            await pipeline.publish("heard", sid, UserTurn(session_id=sid, turn=1, text="hi",
                                                          speech_end_unix=time.time()))
            await pipeline.reply(sid, 1, [("Hello there.", tone(0.5)), (LONG, tone(4.0))],
                                 end=False)
            # The listener hears the user start speaking 0.8 s into the reply.
            await pipeline.frames_until(sid, 40, where=lambda f: f.playing)
            onset = pipeline.frames[sid][-1][1].seq
            await pipeline.publish("heard", sid, SpeechStarted(
                session_id=sid, turn=2, at_s=onset * 0.02, during_playback=True))
            paused = await call.wait_for("Playback", lambda e: e["state"] == "paused")
            before_pause = len(pipeline.frames[sid])
            await pipeline.frames_until(sid, before_pause + 25)     # 0.5 s: words, not a cough
            await pipeline.publish("heard", sid, Interrupt(session_id=sid, turn=2, text="wait"))
            await pipeline.until(lambda: any(isinstance(e, Spoken) for e in pipeline.heard))
            # The agent's last pieces, sent before it saw the Cancel: refused.
            await pipeline.publish("audio_out", sid, SpeechAudio(
                session_id=sid, turn=1, index=1, seq=99, pcm=tone(0.5)))
            await pipeline.frames_until(sid, len(pipeline.frames[sid]) + 25)
            stale = gateway.sessions[sid].playout.stale_drops
    paused_at = next(at for at, e in call.events if e is paused)
    after_pause = [r for r in call.received_audio if r.at > paused_at]
    assert loud(after_pause) <= 10                   # at most 200 ms of tone after the pause
    assert loud(call.received_audio) < 40 + 25       # 0.8 s played, not the 4.5 s queued
    after = [f for _, f, _ in pipeline.frames[sid][before_pause + 2:]]
    assert not any(f.playing for f in after)         # the listener is told it stopped
    assert [c.operators for c in pipeline.cancels] == [["agent", "guardrail", "synthesize"]]
    assert pipeline.cancels[0].session_id == sid
    spoken = next(e for e in pipeline.heard if isinstance(e, Spoken))
    assert spoken.turn == 1 and spoken.interrupted
    assert spoken.text.startswith("Hello there. ")   # sentence 0 in full, then a share of 1
    cut_words = spoken.text.removeprefix("Hello there. ").split()
    assert 1 <= len(cut_words) <= 3 and cut_words == LONG.split()[:len(cut_words)]
    assert stale == 1
    flushed = call.kinds("Playback")[-1]
    assert flushed["state"] == "flushed" and flushed["dropped_frames"] > 100
    assert call.kinds("BargeIn")[0]["onset_to_stop_ms"] > 0
    assert [e["kind"] for e in call.kinds("Interrupt")] == ["Interrupt"]


async def test_backchannel_pause_then_resume_loses_no_audio(nats_server, namespace):
    async with voice_gateway(nats_server, namespace) as (gateway, url, pipeline):
        async with VoiceCaller(url) as call:
            sid = call.session_id
            await pipeline.frames_until(sid, 5)
            await pipeline.reply(sid, 1, [("A longer answer.", tone(1.5))])
            await pipeline.frames_until(sid, 20, where=lambda f: f.playing)
            await pipeline.publish("heard", sid, SpeechStarted(session_id=sid, turn=2,
                                                               during_playback=True))
            await call.wait_for("Playback", lambda e: e["state"] == "paused")
            await pipeline.frames_until(sid, len(pipeline.frames[sid]) + 15)
            await pipeline.publish("heard", sid, TurnDiscarded(session_id=sid, turn=2,
                                                               reason="backchannel", text="mm"))
            await call.wait_for_reply(turn=1)
    assert 72 <= loud(call.received_audio) <= 78      # all 1.5 s of the reply, in frames
    states = [e["state"] for e in call.kinds("Playback")]
    assert states == ["started", "paused", "resumed", "finished"]
    assert pipeline.cancels == [] and not any(isinstance(e, Spoken) for e in pipeline.heard)


async def test_admission_refuses_over_the_limit_with_503_then_admits_again(
        nats_server, namespace):
    async with voice_gateway(nats_server, namespace, max_sessions=1) as (gateway, url, _):
        async with VoiceCaller(url) as first:
            with pytest.raises(VoiceCallError) as refused:
                async with VoiceCaller(url):
                    pass
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/v1/voice/config") as response:
                    config = await response.json()
                async with http.post(f"{url}/v1/voice/offer",
                                     json={"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}
                                     ) as response:
                    assert response.status == 503 and response.headers["Retry-After"] == "5"
            assert list(gateway.sessions) == [first.session_id]
        async with VoiceCaller(url) as again:
            assert list(gateway.sessions) == [again.session_id]
    assert refused.value.status == 503 and refused.value.code == "busy"
    assert "all 1 voice sessions are in use" in refused.value.message
    assert config == {"ice_servers": [], "max_sessions": 1, "sessions": 1}


async def test_offers_that_cannot_be_a_call_get_400_and_leave_nothing(nats_server, namespace):
    data_only = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    data_only.createDataChannel("events")
    await data_only.setLocalDescription(await data_only.createOffer())
    listen_only = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    listen_only.addTransceiver("audio", direction="recvonly")
    await listen_only.setLocalDescription(await listen_only.createOffer())
    bodies = {"no_audio": {"sdp": data_only.localDescription.sdp, "type": "offer"},
              "no_microphone": {"sdp": listen_only.localDescription.sdp},
              "not_an_offer": {"sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n", "type": "answer"},
              "invalid_sdp": {"sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n", "type": "offer"},
              "invalid_request": {"sdp": "m=audio ", "principal": "me"}}
    async with voice_gateway(nats_server, namespace) as (gateway, url, _):
        async with aiohttp.ClientSession() as http:
            got = {}
            for code, body in bodies.items():
                async with http.post(f"{url}/v1/voice/offer", json=body) as response:
                    got[code] = (response.status, (await response.json())["error"]["code"])
            async with http.post(f"{url}/v1/voice/offer", data=b"{not json") as response:
                got["malformed_json"] = (response.status, (await response.json())["error"]["code"])
            async with http.delete(f"{url}/v1/voice/vnothere") as response:
                got["no_session"] = (response.status, (await response.json())["error"]["code"])
        assert gateway.sessions == {}
    await data_only.close()
    await listen_only.close()
    assert got.pop("no_microphone") == (400, "no_audio")
    assert got == {code: (404 if code == "no_session" else 400, code) for code in got}


async def test_hang_up_frees_the_session(nats_server, namespace):
    async with voice_gateway(nats_server, namespace) as (gateway, url, pipeline):
        baseline = len(gateway.bus.nc._subs)
        call = VoiceCaller(url)
        await call.connect()
        sid = call.session_id
        session = gateway.sessions[sid]
        assert len(gateway.bus.nc._subs) == baseline + 3
        await pipeline.frames_until(sid, 10)
        assert await call.hang_up() == 200
        assert gateway.sessions == {} and await call.hang_up() == 404
        assert len(gateway.bus.nc._subs) == baseline          # heard, said, audio_out: gone
        assert session.tasks == set() and session.pc.connectionState == "closed"
        assert session.voice.readyState == "ended" and session.reason == "the caller hung up"
        assert pipeline.frames[sid][-1][1].last
        await call.close()


async def test_a_caller_that_vanishes_or_never_connects_is_ended(nats_server, namespace):
    async with voice_gateway(nats_server, namespace, connect_timeout_s=1.0,
                             no_audio_timeout_s=1.0) as (gateway, url, pipeline):
        call = VoiceCaller(url)
        await call.connect()
        gone = call.session_id
        await pipeline.frames_until(gone, 5)
        await call.pc.close()                      # no DELETE: the peer just goes away
        await pipeline.until(lambda: gone not in gateway.sessions, what="the session to end")
        assert pipeline.frames[gone][-1][1].last

        silent = RTCPeerConnection(RTCConfiguration(iceServers=[]))   # offers, never answers
        silent.addTransceiver("audio")
        await silent.setLocalDescription(await silent.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/voice/offer",
                                 json={"sdp": silent.localDescription.sdp}) as response:
                never = (await response.json())["session_id"]
        session = gateway.sessions[never]
        await pipeline.until(lambda: never not in gateway.sessions, what="the timeout")
        await silent.close()
        await call.close()
    assert session.reason == "no connection from the caller for 1 s"
    assert never not in pipeline.frames               # it never spoke: nothing to end


async def test_the_pipeline_can_end_a_session(nats_server, namespace):
    async with voice_gateway(nats_server, namespace) as (gateway, url, pipeline):
        async with VoiceCaller(url) as call:
            sid = call.session_id
            await pipeline.frames_until(sid, 3)
            await pipeline.publish("heard", sid, SessionClosed(session_id=sid, reason="idle"))
            closed = await call.wait_for("Closed")
            await pipeline.until(lambda: sid not in gateway.sessions)
    assert closed["reason"] == "the pipeline closed the session (idle)"
    assert pipeline.frames[sid][-1][1].last


async def test_with_users_the_speaker_comes_from_the_token(nats_server, namespace, tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text('users:\n  alice: {token: "tok-alice"}\n  bob: {token: "tok-bob"}\n')
    async with voice_gateway(nats_server, namespace, users=load_users(path)) as (
            gateway, url, pipeline):
        with pytest.raises(VoiceCallError) as anonymous:
            await VoiceCaller(url).__aenter__()
        with pytest.raises(VoiceCallError) as someone_else:
            await VoiceCaller(url, token="tok-alice", user="bob").__aenter__()
        async with VoiceCaller(url, token="tok-alice") as call:
            await pipeline.frames_until(call.session_id, 1)
            async with aiohttp.ClientSession() as http:   # bob may not hang up alice's call
                async with http.delete(f"{url}/v1/voice/{call.session_id}",
                                       headers={"Authorization": "Bearer tok-bob"}) as response:
                    assert response.status == 404
            assert pipeline.frames[call.session_id][0][1].user == "alice"
    assert anonymous.value.status == 401 and someone_else.value.status == 403


async def test_the_voice_agent_topology_serves_the_page_and_the_api(nats_server, namespace,
                                                                    monkeypatch):
    from topology import spec as topo_spec
    from topology.app import Deployment
    from topology.gateway.start import start_gateway
    monkeypatch.setenv("PATCHWIRE_VOICE_MAX_SESSIONS", "2")
    monkeypatch.setenv("PATCHWIRE_VOICE_LOOPBACK", "1")
    topo = topo_spec.load(Path(__file__).resolve().parents[1] / "topology/voice_agent.yaml")
    dep = await Deployment.open(topo, nats_server.url, namespace)    # operators not started
    running = None
    try:
        running = await start_gateway(dep, topo, port=0)
        pipeline = await FakePipeline(dep.bus).start()
        async with aiohttp.ClientSession() as http:
            async with http.get(running.url + "/") as response:
                page = await response.text()
            async with http.get(running.url + "/v1/voice/config") as response:
                config = await response.json()
        async with VoiceCaller(running.url) as call:
            await pipeline.frames_until(call.session_id, 5)
        await pipeline.stop()
    finally:
        if running is not None:
            await running.close()
        await dep.close()
    assert "<title>patchwire · voice agent</title>" in page
    assert config["max_sessions"] == 2


# --- the playout queue, without a network or a clock --------------------------------------

def piece(turn: int, index: int, seq: int, seconds: float = 0.0, **kw) -> SpeechAudio:
    return SpeechAudio(session_id="s", turn=turn, index=index, seq=seq,
                       pcm=tone(seconds) if seconds else b"", **kw)


def play(playout: Playout, frames: int) -> int:
    return sum(playout.next_frame() is not None for _ in range(frames))


def test_playout_resamples_to_whole_20ms_frames_and_reports_turns():
    playout = Playout(max_frames=1000)
    for seq in range(5):
        playout.add(piece(1, 0, seq, 0.2, text="Hi." if seq == 0 else "", last=seq == 4))
    playout.add(piece(1, 1, 0, end_of_turn=True))
    assert play(playout, 60) == 50                       # 1 s of 22.05 kHz → 50 frames of 48 kHz
    assert playout.events == [("started", 1), ("finished", 1)]
    assert playout.heard_text(1) == "Hi." and not playout.playing


def test_a_pause_between_sentences_is_still_mid_reply():
    playout = Playout(max_frames=1000, reply_gap_frames=30)
    playout.add(piece(1, 0, 0, 0.2, text="First.", last=True))
    assert play(playout, 10) == 10 and playout.playing
    assert play(playout, 5) == 0 and playout.playing       # the next sentence is being written
    playout.add(piece(1, 1, 0, 0.2, text="Second.", last=True))
    playout.add(piece(1, 2, 0, end_of_turn=True))
    assert play(playout, 10) == 10
    assert play(playout, 1) == 0 and not playout.playing    # the reply is over
    playout.add(piece(2, 0, 0, 0.2, last=True))             # a reply whose end never comes
    assert play(playout, 10) == 10
    assert play(playout, 29) == 0 and playout.playing
    assert play(playout, 1) == 0 and not playout.playing
    playout.add(piece(3, 0, 0, 0.2, last=True))
    assert play(playout, 12) == 10 and playout.playing
    playout.pause()
    assert play(playout, 1) == 0 and not playout.playing
    playout.resume()
    assert play(playout, 1) == 0 and playout.playing
    playout.flush()
    assert play(playout, 1) == 0 and not playout.playing


def test_playout_pause_keeps_audio_flush_drops_it_and_stale_turns_are_refused():
    playout = Playout(max_frames=1000)
    playout.add(piece(1, 0, 0, 1.0, text=LONG, last=True))
    assert play(playout, 10) == 10
    playout.pause()
    assert play(playout, 10) == 0 and not playout.playing
    playout.resume()
    assert play(playout, 10) == 10
    assert playout.heard_text(1) == "one two three four"            # 20 of 50 frames: 4 words
    assert playout.cut() == 1 and play(playout, 10) == 0
    playout.add(piece(1, 0, 1, 0.2))
    assert playout.stale_drops == 1 and play(playout, 10) == 0
    playout.add(piece(2, 0, 0, 0.2, last=True))
    assert play(playout, 20) == 10


def test_playout_overflow_drops_the_stalest_audio_and_counts_it():
    playout = Playout(max_frames=20)
    playout.add(piece(1, 0, 0, 1.0, last=True))          # 50 frames into a queue of 20
    assert playout.overflow_drops == 30 and play(playout, 60) == 20


def test_a_newer_turn_drops_what_is_left_of_the_older_one():
    playout = Playout(max_frames=1000)
    playout.add(piece(1, 0, 0, 1.0, last=True))
    play(playout, 10)
    playout.pause()                                       # left paused (no Interrupt came)
    playout.add(piece(2, 0, 0, 0.2, last=True))
    assert play(playout, 30) == 10 and playout.turn == 2


def test_settings_from_the_environment():
    config = config_from_env({"PATCHWIRE_VOICE_MAX_SESSIONS": "3", "PATCHWIRE_ICE_SERVERS":
                              '[{"urls": ["turn:t.example:3478"], "username": "u", '
                              '"credential": "p"}]', "PATCHWIRE_VOICE_LOOPBACK": "1"})
    assert config.max_sessions == 3 and config.loopback
    assert default_max_sessions(2) == 1 and default_max_sessions(16) == 8 and default_max_sessions(1) == 1
    assert config.for_page() == [{"urls": ["turn:t.example:3478"], "username": "u",
                                  "credential": "p"}]
    assert config.rtc().iceServers[0].username == "u"
    with pytest.raises(ValueError, match="PATCHWIRE_ICE_SERVERS"):
        config_from_env({"PATCHWIRE_ICE_SERVERS": '[{"url": "stun:x"}]'})


# --- the page, in a real headless chromium with a fake microphone -------------------------

@pytest.fixture
async def speaking_browser(shared_data):
    """Chromium whose microphone plays a LibriSpeech clip, and which may connect over
    loopback; skipped (failed in CI) like the other page tests when chromium is absent."""
    from tests.browser import Browser, find_chromium
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed in CI: run `bash infra/browser.sh` first")
        pytest.skip("chromium is not installed: run `bash infra/browser.sh` to get the page tests")
    clip = shared_data / "asr" / "librispeech_wenet" / "1995-1837-0001.wav"
    launched = await Browser.launch(binary, extra_flags=(
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}", "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required"))
    try:
        yield launched
    finally:
        await launched.close()


async def test_page_talks_and_shows_what_the_pipeline_says(speaking_browser, nats_server,
                                                            namespace):
    async with voice_gateway(nats_server, namespace) as (gateway, url, pipeline):
        page = await speaking_browser.new_page()
        try:
            await page.goto(url + "/")
            await page.click("#talk")
            await page.wait_for("document.getElementById('status').dataset.state === 'live'")
            sid = next(iter(gateway.sessions))
            await pipeline.frames_until(sid, 25, where=lambda f: _rms(f.pcm) > SILENT_RMS)
            await pipeline.publish("heard", sid, Partial(session_id=sid, turn=1,
                                                         text="<b>what is</b>"))
            await page.wait_for("document.getElementById('partial').textContent"
                                " === '<b>what is</b>'")
            await pipeline.publish("heard", sid, UserTurn(session_id=sid, turn=1,
                                                          text="what is the time",
                                                          speech_end_unix=time.time()))
            await pipeline.publish("said", sid, ToolActivity(session_id=sid, turn=1,
                                                             name="clock", state="finished",
                                                             result="12:00"))
            await pipeline.reply(sid, 1, [("It is noon.", tone(0.6))])
            await pipeline.publish("said", sid, AgentTurnDone(
                session_id=sid, turn=1, text="It is noon.", timings={"llm_first_token": 120}))
            turn = "document.querySelector('#turns li[data-turn=\"1\"]')"
            figures = f"{turn}?.querySelector('.latency')?.textContent"
            await page.wait_for(f"{figures}?.includes('first audio') &&"
                                f" {figures}.includes('llm_first_token')")
            texts = await page.evaluate(f"""(() => {{ const t = {turn}; return {{
                user: t.querySelector('.user').textContent,
                agent: t.querySelector('.agent').textContent,
                tool: t.querySelector('.tool').textContent,
                latency: t.querySelector('.latency').textContent}}; }})()""")
            await page.click("#talk")                      # hang up
            await page.wait_for("document.getElementById('status').dataset.state === 'idle'")
            await pipeline.until(lambda: gateway.sessions == {}, what="the hang-up")
        finally:
            await page.close()
    assert texts["user"] == "what is the time" and texts["agent"] == "It is noon."
    assert "clock" in texts["tool"] and "finished" in texts["tool"]
    assert "first audio" in texts["latency"] and "llm_first_token 120 ms" in texts["latency"]
    assert pipeline.frames[sid][-1][1].last
    assert not [m for m in page.console if m.startswith("uncaught")], page.console
