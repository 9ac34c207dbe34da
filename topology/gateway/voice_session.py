"""One call: a WebRTC peer on one side, the session's subjects on the other.

    caller's Opus ──► FrameCutter ──► `frames` (AudioFrame, 20 ms, Pw-Session header)
    `heard`  ──► SpeechStarted pauses, Interrupt cuts (flush + Cancel + Spoken), TurnDiscarded
                 resumes; everything else is shown on the page
    `said`   ──► the page (sentences, tools, turn done)
    `audio_out` ──► Playout ──► AgentVoice (the outbound track, 20 ms paced)
    the page ◄── data channel: the events above as JSON, plus Playback, Latency and BargeIn

A session ends once, however it ends (hang-up, a silent or vanished peer, ICE failure, the
pipeline's SessionClosed, the gateway stopping): the last frame goes out with `last=True`,
and its subscriptions, tasks and peer connection are freed.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Callable, Literal

import msgspec
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from schemas import Headers, decoder, encoder
from schemas.audio import AudioFrame
from schemas.voice import (AgentEvent, AgentSentence, HearEvent, Interrupt, SessionClosed,
                           SpeechAudio, SpeechStarted, Spoken, TurnDiscarded, UserTurn)
from topology.bus import Bus
from topology.gateway.voice_config import VoiceConfig, set_receive_buffer
from topology.gateway.voice_playout import (FRAME_S, IN_BYTES, AgentVoice, FrameCutter,
                                            Playout)
from topology.jobs import cancel

log = logging.getLogger(__name__)

HEARD, SAID, AUDIO = decoder(HearEvent), decoder(AgentEvent), decoder(SpeechAudio)
ENCODE = encoder()
RING = 3000                            # frame send times kept: 60 s, to date speech onsets
MAX_PENDING = 64                       # events held until the page's data channel opens
MAX_BUFFERED = 1 << 20                 # bytes waiting in the data channel before we drop


class NoMicrophone(ValueError):
    """The offer has audio, but none of it comes from the caller."""


class Playback(msgspec.Struct, frozen=True, tag_field="kind", tag=True):
    turn: int
    state: Literal["started", "finished", "paused", "resumed", "flushed"]
    dropped_frames: int = 0


class Latency(msgspec.Struct, frozen=True, tag_field="kind", tag=True):
    """Time to first audio: the end of the user's speech → the reply's first frame sent."""
    turn: int
    time_to_first_audio_ms: float
    decided_to_audio_ms: float = 0.0   # from the end-of-turn decision


class BargeIn(msgspec.Struct, frozen=True, tag_field="kind", tag=True):
    """Speech onset (as the gateway received that frame) → the agent's audio stopped."""
    turn: int
    onset_to_stop_ms: float


class Closed(msgspec.Struct, frozen=True, tag_field="kind", tag=True):
    reason: str


class VoiceSession:
    def __init__(self, session_id: str, user: str, bus: Bus, config: VoiceConfig,
                 on_closed: Callable[["VoiceSession"], None]) -> None:
        self.id, self.user, self.bus, self.config = session_id, user, bus, config
        self.on_closed = on_closed
        self.playout = Playout(max_frames=int(config.max_queued_s / FRAME_S))
        self.voice = AgentVoice(self.playout, on_frame=self._after_frame)
        self.pc = RTCPeerConnection(config.rtc())
        self.cutter = FrameCutter()
        self.headers = {Headers.SESSION: session_id}
        self.frames_subject = bus.subjects.edge(config.frames_edge, session_id)
        self.seq = 0
        self.sent_at = [0.0] * RING     # wall time each frame was published, by seq % RING
        self.tasks: set[asyncio.Task] = set()
        self.subs: list = []
        self.channel = None
        self.pending: collections.deque[str] = collections.deque(maxlen=MAX_PENDING)
        self.speech_end: dict[int, tuple[float, float]] = {}   # turn → (speech end, decided)
        self.done_turns: set[int] = set()
        self.barge: tuple[int, float] | None = None            # (turn, onset wall time)
        self.events_dropped = self.undecodable = 0
        self.connected_at = 0.0          # wall time of the caller's first audio
        self.reason = ""
        self._reading = False
        self._ending: asyncio.Task | None = None
        self.created_at = time.time()

    # --- start and end --------------------------------------------------------------

    async def start(self, offer_sdp: str) -> str:
        """Answer the caller's offer (every ICE candidate is in the answer: no trickle)."""
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if not self._reading:             # aiortc announced no incoming audio track
            raise NoMicrophone("the offer's audio is receive-only: send the microphone too")
        set_receive_buffer(self.pc, self.config.uplink_buffer_frames)
        self.pc.addTrack(self.voice)
        nc, s, c = self.bus.nc, self.bus.subjects, self.config
        self.subs = [await nc.subscribe(s.edge(c.heard_edge, self.id), cb=self._on_heard),
                     await nc.subscribe(s.edge(c.said_edge, self.id), cb=self._on_said),
                     await nc.subscribe(s.edge(c.audio_edge, self.id), cb=self._on_audio)]
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def end(self, reason: str) -> asyncio.Task:
        """Start closing (once); callbacks use this, since unsubscribing from inside a
        subscription's own callback would cancel the callback midway."""
        if self._ending is None:
            self._ending = asyncio.create_task(self._close(reason))
        return self._ending

    async def close(self, reason: str) -> None:
        await asyncio.shield(self.end(reason))   # a caller that gives up does not stop cleanup

    async def _close(self, reason: str) -> None:
        self.reason = reason
        log.info("voice session %s ends: %s; %s", self.id, reason, self.stats())
        self.send(Closed(reason=reason))
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.seq:                       # the pipeline saw this call: tell it it is over
            with contextlib.suppress(Exception):
                await self._publish(bytes(IN_BYTES), last=True)
                await self.bus.nc.flush(timeout=2)
        for sub in self.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self.voice.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)
        self.on_closed(self)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the caller's side ----------------------------------------------------------

    def _on_track(self, track) -> None:
        if track.kind == "audio" and not self._reading:
            self._reading = True         # one inbound audio track is read, any other ignored
            self._spawn(self._pump(track))

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self.end(f"the connection {'failed' if state == 'failed' else 'closed'}")

    def _on_channel(self, channel) -> None:
        self.channel = channel
        while self.pending:
            self._send_text(self.pending.popleft())

    async def _pump(self, track) -> None:
        """Caller audio → frames, until the caller stops sending (or never starts)."""
        wait = self.config.connect_timeout_s
        while True:
            try:
                frame = await asyncio.wait_for(track.recv(), wait)
            except asyncio.TimeoutError:
                what = "no audio" if self.seq else "no connection"
                self.end(f"{what} from the caller for {wait:g} s")
                return
            except MediaStreamError:
                self.end("the caller's audio ended")
                return
            if not self.seq:
                self.connected_at = time.time()
                wait = self.config.no_audio_timeout_s
            try:
                for pcm in self.cutter.push(frame):
                    await self._publish(pcm)
            except Exception as exc:       # the bus is gone or the audio is not audio
                log.exception("voice session %s: frame not published", self.id)
                self.end(f"the caller's audio could not be passed on ({type(exc).__name__})")
                return

    async def _publish(self, pcm: bytes, last: bool = False) -> None:
        frame = AudioFrame(seq=self.seq, pcm=pcm, playing=self.playout.playing, last=last,
                           user=self.user if self.seq < self.config.user_frames else "")
        self.sent_at[self.seq % RING] = time.time()
        self.seq += 1
        await self.bus.nc.publish(self.frames_subject, ENCODE.encode(frame), headers=self.headers)

    # --- the pipeline's side --------------------------------------------------------

    async def _on_heard(self, msg) -> None:
        event = self._decode(HEARD, msg)
        if event is None or isinstance(event, Spoken):   # Spoken is ours, echoed back
            return
        with _logged(self.id, event):
            if isinstance(event, SpeechStarted) and event.during_playback:
                self._pause(event)
            elif isinstance(event, Interrupt):
                await self._interrupt(event)
            elif isinstance(event, TurnDiscarded) and self.playout.paused:
                self.playout.resume()
                self.barge = None
                self.send(Playback(turn=self.playout.turn, state="resumed"))
            elif isinstance(event, UserTurn):
                self.speech_end[event.turn] = (event.speech_end_unix or time.time(),
                                               event.decided_unix)
            self.send(event)
            if isinstance(event, SessionClosed):
                self.end(f"the pipeline closed the session ({event.reason or 'no reason'})")

    def _pause(self, event: SpeechStarted) -> None:
        if self.playout.playing:
            self.barge = (self.playout.turn, self._onset_time(event.at_s))
        self.playout.pause()
        self.send(Playback(turn=self.playout.turn, state="paused"))

    async def _interrupt(self, event: Interrupt) -> None:
        """Stop the agent now: the queued audio first (the user hears it stop), then its
        work, then tell it what the user actually heard."""
        if self.barge is None and self.playout.playing:
            self.barge = (self.playout.turn, self._onset_time(event.at_s))
        self.playout.resume()             # what comes next is the next turn's audio
        if self.playout.turn >= event.turn:
            return                        # the answer to this very turn already plays
        dropped = self.playout.flush()
        cut = self.playout.cut()
        self.send(Playback(turn=cut, state="flushed", dropped_frames=dropped))
        await cancel(self.bus, session_id=self.id, reason="barge-in",   # the new turn is spared
                     operators=list(self.config.cancel_operators), before_turn=event.turn)
        if cut >= 0 and cut not in self.done_turns:
            spoken = Spoken(session_id=self.id, turn=cut, text=self.playout.heard_text(cut))
            # immediate: the agent must not see it only after the turn that interrupted it
            await self.bus.nc.publish(self.bus.subjects.edge(self.config.heard_edge, self.id),
                                      ENCODE.encode(spoken),
                                      headers={**self.headers, Headers.PRIORITY: "immediate"})

    async def _on_said(self, msg) -> None:
        event = self._decode(SAID, msg)
        if event is not None:
            if isinstance(event, AgentSentence):
                self.playout.set_text(event.turn, event.index, event.text)
            self.send(event)

    async def _on_audio(self, msg) -> None:
        piece = self._decode(AUDIO, msg)
        if piece is not None:
            with _logged(self.id, piece):
                self.playout.add(piece)

    def _decode(self, dec: msgspec.msgpack.Decoder, msg):
        try:
            return dec.decode(msg.data)
        except msgspec.DecodeError as exc:
            self.undecodable += 1
            if self.undecodable == 1:      # once per session: a broken producer floods
                log.warning("voice session %s: undecodable message on %s: %s",
                            self.id, msg.subject, exc)
            return None

    def _onset_time(self, at_s: float) -> float:
        """Wall time the frame holding stream time `at_s` was published (now if too old)."""
        index = int(round(at_s / FRAME_S))
        if self.seq - RING <= index < self.seq:
            return self.sent_at[index % RING]
        return time.time()

    # --- each outbound frame ----------------------------------------------------------

    def _after_frame(self, audio: bool) -> None:
        now = time.time()
        for what, turn in self.playout.events:
            if what == "started" and turn in self.speech_end:
                ended, decided = self.speech_end.pop(turn)
                self.send(Latency(turn=turn, time_to_first_audio_ms=(now - ended) * 1e3,
                                  decided_to_audio_ms=(now - decided) * 1e3 if decided else 0.0))
            if what == "finished":
                self.done_turns.add(turn)
            self.send(Playback(turn=turn, state=what))
        self.playout.events.clear()
        if not audio and self.barge is not None:
            turn, onset = self.barge
            self.barge = None
            self.send(BargeIn(turn=turn, onset_to_stop_ms=(now - onset) * 1e3))
        if len(self.speech_end) > 8:       # turns that never got audio (refused, cut)
            for turn in sorted(self.speech_end)[:-8]:
                del self.speech_end[turn]

    # --- to the page ----------------------------------------------------------------

    def send(self, event) -> None:
        text = msgspec.json.encode(event).decode()
        if self.channel is None:
            if len(self.pending) == MAX_PENDING:
                self.events_dropped += 1   # the oldest goes: the page never opened its channel
            self.pending.append(text)
        else:
            self._send_text(text)

    def _send_text(self, text: str) -> None:
        channel = self.channel
        if channel.readyState != "open" or channel.bufferedAmount > MAX_BUFFERED:
            self.events_dropped += 1       # a page that stopped reading loses events, not memory
            return
        channel.send(text)

    def stats(self) -> dict:
        p = self.playout
        return {"session_id": self.id, "frames_in": self.seq, "frames_out": self.voice.frames,
                "overflow_drops": p.overflow_drops, "stale_drops": p.stale_drops,
                "late_resets": self.voice.late_resets, "events_dropped": self.events_dropped,
                "undecodable": self.undecodable, "state": self.pc.connectionState}


@contextlib.contextmanager
def _logged(session_id: str, event):
    """A handler's failure is logged and the session serves on (the next event may work)."""
    try:
        yield
    except Exception:
        log.exception("voice session %s: handling %s failed", session_id, type(event).__name__)
