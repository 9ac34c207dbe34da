"""A scripted WebRTC caller for the voice agent: for tests, load tests and a check from a shell.

    async with VoiceCaller("http://127.0.0.1:8080", user="ana") as call:
        await call.say(pcm16k)                   # real time, with silence before and after
        await call.wait_for_reply()              # the reply's audio has played out
        call.received_audio, call.events, call.first_audio_at

The microphone is a track that sends 20 ms of 16 kHz audio every 20 ms (silence when there is
nothing to say), as a browser would. Received audio is kept with its arrival time (wall
clock, like the gateway's timestamps, so the two can be compared on one machine).
"""
from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 16_000
FRAME = 320                       # samples: 20 ms at 16 kHz
FRAME_S = 0.020
SILENT_RMS = 100.0                # below this a received frame counts as silence (of 32768)


class VoiceCallError(Exception):
    """The gateway refused the call (the HTTP status and its error body) or it never connected."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(slots=True)
class Received:
    at: float                     # wall time the frame came out of the receiver
    pcm: bytes                    # s16 mono at `sample_rate`
    sample_rate: int
    rms: float


class Microphone(MediaStreamTrack):
    """Plays queued 16 kHz PCM at real time, silence in between; `at(sample)` is a future for
    the wall time the frame holding that sample was sent."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.queued = 0               # samples ever queued
        self.sent = 0                 # of those, sent (the silence in between is not counted)
        self.frames = 0
        self._marks: list[tuple[int, asyncio.Future]] = []
        self._start: float | None = None

    def feed(self, pcm: bytes) -> int:
        """Queue audio; returns the sample position where it ends."""
        self.buffer += pcm
        self.queued += len(pcm) // 2
        return self.queued

    def at(self, sample: int) -> asyncio.Future:
        mark = asyncio.get_running_loop().create_future()
        self._marks.append((sample, mark))
        return mark

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        elif (due := self._start + self.frames * FRAME_S) > now:
            await asyncio.sleep(due - now)
        pcm = bytes(self.buffer[:FRAME * 2])
        del self.buffer[:FRAME * 2]
        self.sent += len(pcm) // 2
        self._resolve()
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(pcm.ljust(FRAME * 2, b"\0"))
        frame.sample_rate, frame.pts = RATE, self.frames * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self.frames += 1
        return frame

    def _resolve(self) -> None:
        now = time.time()
        for sample, mark in [m for m in self._marks if m[0] <= self.sent]:
            if not mark.done():
                mark.set_result(now)
        self._marks = [m for m in self._marks if m[0] > self.sent]


class VoiceCaller:
    def __init__(self, url: str, *, user: str = "", token: str = "",
                 ice_servers: list[dict] | None = None, silence_s: float = 0.5,
                 connect_timeout_s: float = 15.0, loopback: bool = False,
                 receive_buffer_frames: int = 0) -> None:
        if loopback:                  # one machine, no network: offer 127.0.0.1 as well
            from topology.gateway.voice_config import allow_loopback
            allow_loopback()
        self.url, self.user, self.token = url.rstrip("/"), user, token
        self.silence_s, self.connect_timeout_s = silence_s, connect_timeout_s
        self.receive_buffer_frames = receive_buffer_frames   # 0: aiortc's own (4 frames)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[
            RTCIceServer(**server) for server in ice_servers or []]))
        self.mic = Microphone()
        self.session_id = ""
        self.received_audio: list[Received] = []
        self.events: list[tuple[float, dict]] = []
        self.first_audio_at: float | None = None   # first sound after the last speech ended
        self.last_audio_at: float | None = None
        self.speech_ended_at: float | None = None
        self.quiet_frames = 0                      # received since the last one with sound
        self.connect_s = 0.0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "VoiceCaller":
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        started = time.monotonic()
        self.pc.addTrack(self.mic)
        channel = self.pc.createDataChannel("events")
        channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._changed.set)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self._post_offer(self.pc.localDescription.sdp)
        self.session_id = answer["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        if self.receive_buffer_frames:
            from topology.gateway.voice_config import set_receive_buffer
            set_receive_buffer(self.pc, self.receive_buffer_frames)
        await self._until(lambda: self.pc.connectionState in ("connected", "failed", "closed"),
                          self.connect_timeout_s, "the connection")
        if self.pc.connectionState != "connected":
            raise VoiceCallError(0, "not_connected", f"ICE/DTLS ended {self.pc.connectionState}")
        self.connect_s = time.monotonic() - started

    async def _post_offer(self, sdp: str) -> dict:
        self._http = self._http or aiohttp.ClientSession()
        body = {"sdp": sdp, "type": "offer", **({"user": self.user} if self.user else {})}
        async with self._http.post(f"{self.url}/v1/voice/offer", json=body,
                                   headers=self._auth()) as response:
            reply = await response.json(content_type=None)
            if response.status != 200:
                error = (reply or {}).get("error", {})
                raise VoiceCallError(response.status, error.get("code", ""),
                                     error.get("message", ""))
            return reply

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # --- speaking ---------------------------------------------------------------------

    async def say(self, pcm: bytes | np.ndarray, sample_rate: int = RATE, *,
                  silence_before: float | None = None, silence_after: float | None = None,
                  wait: bool = True) -> None:
        """Speak `pcm` (s16 bytes or an int16/float array) at real time. With wait, returns
        once the trailing silence has been sent too."""
        speech = _to_16k(pcm, sample_rate)
        before = self.silence_s if silence_before is None else silence_before
        after = self.silence_s if silence_after is None else silence_after
        self.mic.feed(bytes(int(before * RATE) * 2))
        speech_end = self.mic.at(self.mic.feed(speech))
        done = self.mic.at(self.mic.feed(bytes(int(after * RATE) * 2)))
        speech_end.add_done_callback(self._speech_ended)
        if wait:
            await asyncio.wait_for(asyncio.shield(done), len(speech) / 2 / RATE + before + after + 10)

    async def say_wav(self, path: str | Path, **kwargs) -> None:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM WAV files can be said")
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            pcm = pcm.reshape(-1, w.getnchannels())[:, 0]
            rate = w.getframerate()
        await self.say(pcm, rate, **kwargs)

    async def barge_in(self, pcm: bytes | np.ndarray, after_s: float, sample_rate: int = RATE,
                       timeout: float = 30.0, **kwargs) -> None:
        """Wait (up to `timeout`) for the reply's audio to start, let `after_s` of it play,
        then speak over it."""
        await self._until(lambda: self.first_audio_at is not None, timeout, "the reply's audio")
        await asyncio.sleep(max(0.0, self.first_audio_at + after_s - time.time()))
        await self.say(pcm, sample_rate, silence_before=0.0, **kwargs)

    def _speech_ended(self, mark: asyncio.Future) -> None:
        if not mark.cancelled():
            self.speech_ended_at = mark.result()
            self.first_audio_at = None

    # --- listening --------------------------------------------------------------------

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._record(track)))

    async def _record(self, track) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
                now = time.time()
                self.received_audio.append(Received(now, samples.astype(np.int16).tobytes(),
                                                    frame.sample_rate, rms))
                self.quiet_frames += 1
                if rms >= SILENT_RMS:
                    self.quiet_frames = 0
                    self.last_audio_at = now
                    if self.first_audio_at is None:
                        self.first_audio_at = now
                    self._changed.set()

    def _on_message(self, text) -> None:
        self.events.append((time.time(), json.loads(text)))
        self._changed.set()

    def kinds(self, kind: str) -> list[dict]:
        return [e for _, e in self.events if e.get("kind") == kind]

    async def wait_for(self, kind: str, where=lambda e: True, timeout: float = 15.0) -> dict:
        """The first data-channel event of `kind` (that `where` accepts), waiting if need be."""
        found: list[dict] = []

        def seen() -> bool:
            found[:] = [e for e in self.kinds(kind) if where(e)][:1]
            return bool(found)
        await self._until(seen, timeout, f"a {kind} event")
        return found[0]

    async def wait_for_reply(self, turn: int | None = None, timeout: float = 30.0,
                             quiet_s: float = 0.2) -> dict:
        """The reply has played out here: the gateway says its playback finished (or was
        flushed), and what was still on the way has arrived (`quiet_s` of silence since)."""
        event = await self.wait_for("Playback", lambda e: e["state"] in ("finished", "flushed")
                                    and (turn is None or e["turn"] == turn), timeout)
        await self._until(lambda: self.quiet_frames >= quiet_s / FRAME_S, timeout,
                          "the reply's audio to end")
        return event

    async def _until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited {timeout:g} s for {what}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.1))

    def received_pcm(self) -> tuple[np.ndarray, int]:
        """Everything received, as one int16 array and its sample rate."""
        if not self.received_audio:
            return np.zeros(0, np.int16), 48_000
        return (np.frombuffer(b"".join(r.pcm for r in self.received_audio), np.int16),
                self.received_audio[0].sample_rate)

    # --- ending -----------------------------------------------------------------------

    async def hang_up(self) -> int:
        """DELETE the session; returns the HTTP status (404 once the gateway ended it)."""
        if not self.session_id or self._http is None:
            return 0
        async with self._http.delete(f"{self.url}/v1/voice/{self.session_id}",
                                     headers=self._auth()) as response:
            return response.status

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.hang_up()
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()


def _to_16k(pcm: bytes | np.ndarray, rate: int) -> bytes:
    samples = np.frombuffer(pcm, np.int16) if isinstance(pcm, (bytes, bytearray)) else pcm
    if samples.dtype.kind == "f":
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    samples = np.ascontiguousarray(samples, np.int16)
    if rate == RATE:
        return samples.tobytes()
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = resampler.resample(frame) + resampler.resample(None)
    return b"".join(bytes(f.planes[0])[:f.samples * 2] for f in out)

