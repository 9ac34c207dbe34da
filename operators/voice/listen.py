"""Listen: a session's 20 ms AudioFrames in; what the user says, as it is said, out.

Per session (the operator runs `ordered: true`, so one session's frames come in order):
Silero gives each 32 ms window a speech probability, operators/voice/turns.py turns those
into the start, pauses and end of a turn, and Whisper transcribes:

- partials: every `partial_ms` of new speech, a decode of the turn so far runs in a worker
  thread; its text is published when the next frame arrives (20 ms later at most), and tells
  the turn detector whether the sentence sounds finished;
- the final: decoding starts speculatively at the first pause, so when the pause proves
  long enough the transcript is usually ready; if the user went on, it is decoded again.

While the agent's audio plays (frames say so), speech first pauses the agent
(SpeechStarted.during_playback), becomes an Interrupt once it has words that are not a
backchannel, and a turn of nothing but "mm-hm" or a cough is discarded so the agent resumes.
A hang-up (a frame with `last`) ends the turn in progress and closes the session.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import numpy as np

from operators.audio_io import run_settled
from operators.base import Context, Operator, Reject
from operators.voice.turns import TurnConfig, TurnDetector, is_backchannel, spoken_words
from schemas import (AudioFrame, HearEvent, Interrupt, Partial, SessionClosed, SpeechStarted,
                     TurnDiscarded, UserTurn)

RATE = 16_000
WINDOW = 512                 # Silero's window at 16 kHz: 32 ms
PREROLL_WINDOWS = 10         # ~320 ms before the onset go to the ASR too (the first syllable)


class ListenConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    asr_model: str = "whisper-tiny.en"
    beam_size: int = 1           # greedy: a live turn cannot wait for a beam
    partial_ms: int = 600        # new speech between two partial decodes
    idle_s: float = 120.0        # a session without frames this long is forgotten
    turns: TurnConfig = TurnConfig()


class ListenEngines(msgspec.Struct):
    vad: Any                     # SileroVad (prober() per session)
    asr: Any                     # WhisperEngine (transcribe(pcm, prompt, language, words=))


class _Decode(msgspec.Struct):
    """A decode of a turn's first `upto` windows, running or done."""

    turn: int
    upto: int
    task: asyncio.Task


class Session:
    def __init__(self, session_id: str, engines: ListenEngines, config: ListenConfig):
        self.id, self.config = session_id, config
        self.prober = engines.vad.prober()
        self.turns = TurnDetector(config.turns, WINDOW * 1000 / RATE)
        self.turn, self.windows, self.user = 0, 0, ""
        self.carry = np.zeros(0, np.float32)
        self.preroll: deque[np.ndarray] = deque(maxlen=PREROLL_WINDOWS)
        self.utterance: list[np.ndarray] = []
        self.speech_end, self.speech_end_unix, self.start_window, self.first_window = 0, 0.0, 0, 0
        self.partial: _Decode | None = None
        self.final: _Decode | None = None
        self.decoded_upto = 0
        self.playing = self.during_playback = self.interrupted = False
        self.last_seen = time.monotonic()

    @property
    def at_s(self) -> float:
        return round(self.windows * WINDOW / RATE, 3)

    def audio(self, upto: int) -> np.ndarray:
        return np.concatenate(self.utterance[:upto]) if upto else np.zeros(0, np.float32)


class Listen(Operator[AudioFrame, Any]):
    kind = "listen"
    input_type = AudioFrame
    output_type = HearEvent
    Config = ListenConfig

    def __init__(self, name: str, config: ListenConfig | None = None, engine: Any = None):
        super().__init__(name, config, engine)
        self.sessions: dict[str, Session] = {}
        self._swept = time.monotonic()

    async def start(self) -> None:
        if self.engine is None:
            self.engine = await run_settled(_load_engines, self.config)

    async def process(self, frame: AudioFrame, ctx: Context) -> AsyncIterator[Any]:
        if self.engine is None:
            await self.start()
        if frame.sample_rate != RATE:
            raise Reject(f"listen needs {RATE} Hz frames, got {frame.sample_rate} Hz")
        if len(frame.pcm) % 2:
            raise Reject(f"a frame of s16le PCM has an even size, got {len(frame.pcm)} bytes")
        key = ctx.session_id or "default"
        s = self.sessions.get(key) or self.sessions.setdefault(
            key, Session(key, self.engine, self.config))
        s.last_seen, s.playing, s.user = time.monotonic(), frame.playing, frame.user or s.user
        pcm = np.frombuffer(frame.pcm, "<i2").astype(np.float32) / 32768.0
        async for event in self._windows(s, pcm):
            yield event
        async for event in self._partial_ready(s):
            yield event
        self._final_ready(s)
        if frame.last:
            async for event in self._hang_up(s):
                yield event
        self._sweep()

    # -- windows and turn events -----------------------------------------------------------
    async def _windows(self, s: Session, pcm: np.ndarray) -> AsyncIterator[Any]:
        buf = np.concatenate([s.carry, pcm])
        whole = len(buf) - len(buf) % WINDOW
        s.carry = buf[whole:].copy()
        for window in buf[:whole].reshape(-1, WINDOW):
            s.windows += 1
            event = s.turns.push(s.prober.prob(window), playing=s.playing)
            if s.turns.phase.value == "idle" and event not in ("end", "discard"):
                s.preroll.append(window)
                continue
            async for out in self._on_window(s, window, event):
                yield out

    async def _on_window(self, s: Session, window: np.ndarray, event: str) -> AsyncIterator[Any]:
        if event == "start":
            s.turn += 1
            s.utterance = [*s.preroll, window]
            s.preroll.clear()
            s.speech_end, s.decoded_upto = len(s.utterance), 0
            s.first_window = s.windows - len(s.utterance)         # utterance[0], preroll first
            s.start_window = s.windows - round(s.turns.run_ms * RATE / 1000 / WINDOW)
            s.partial = s.final = None
            s.during_playback, s.interrupted = s.playing, False
            yield SpeechStarted(session_id=s.id, turn=s.turn, at_s=s.at_s,
                                during_playback=s.playing)
            return
        if event in ("end", "discard"):
            async for out in self._finish(s, event):
                yield out
            return
        s.utterance.append(window)
        if s.turns.phase.value == "speaking":
            s.speech_end, s.speech_end_unix = len(s.utterance), time.time()
            self._maybe_partial(s)
        elif event == "pause" and (s.final is None or s.final.upto != s.speech_end):
            s.final = _Decode(s.turn, s.speech_end,
                              self._decode(s.audio(s.speech_end), words=False))

    # -- decoding --------------------------------------------------------------------------
    def _decode(self, audio: np.ndarray, words: bool) -> asyncio.Task:
        async def run() -> tuple[str, float]:
            started = time.perf_counter()
            segments = await run_settled(self.engine.asr.transcribe, audio, "", "en", words)
            text = " ".join(seg.text.strip() for seg in segments if seg.text.strip())
            return text, (time.perf_counter() - started) * 1000
        return asyncio.ensure_future(run())

    def _maybe_partial(self, s: Session) -> None:
        new_ms = (s.speech_end - s.decoded_upto) * WINDOW * 1000 / RATE
        if s.partial is None and new_ms >= self.config.partial_ms:
            s.partial = _Decode(s.turn, s.speech_end,
                                self._decode(s.audio(s.speech_end), words=False))
            s.decoded_upto = s.speech_end

    async def _partial_ready(self, s: Session) -> AsyncIterator[Any]:
        if s.partial is None or not s.partial.task.done():
            return
        done, s.partial = s.partial, None
        if done.task.cancelled() or done.task.exception() is not None:
            return     # a failed partial costs nothing: the final decodes again
        text, _ = done.task.result()
        if not text or done.turn != s.turn or s.turns.phase.value == "idle":
            return
        s.turns.text = text
        yield Partial(session_id=s.id, turn=s.turn, text=text, at_s=s.at_s)
        if s.during_playback and not s.interrupted and s.turns.interrupts(text):
            s.interrupted = True
            yield Interrupt(session_id=s.id, turn=s.turn, text=text, at_s=s.at_s)

    def _final_ready(self, s: Session) -> None:
        """The decode started at the pause holds every word said: it decides how long the pause
        must be, not the last partial (Whisper ends a cut-off partial with "...", which reads
        as unfinished and would hold the turn open 1.2 s)."""
        done = s.final
        if (done is None or not done.task.done() or done.task.cancelled()
                or done.task.exception() is not None or done.turn != s.turn
                or done.upto != s.speech_end or s.turns.phase.value != "paused"):
            return
        text, _ = done.task.result()
        if text:
            s.turns.text = text

    async def _final_text(self, s: Session) -> tuple[str, float]:
        if s.final is not None and s.final.upto == s.speech_end and s.final.turn == s.turn:
            text, ms = await s.final.task     # started at the pause: usually done already
            return text, ms
        return await self._decode(s.audio(s.speech_end), words=False)

    async def _finish(self, s: Session, event: str) -> AsyncIterator[Any]:
        decided = time.time()
        if event == "discard":
            yield TurnDiscarded(session_id=s.id, turn=s.turn, reason="too short to be speech")
            self._reset(s)
            return
        text, asr_ms = await self._final_text(s)
        reason = _discard_reason(text, s.during_playback and not s.interrupted)
        if reason:
            yield TurnDiscarded(session_id=s.id, turn=s.turn, reason=reason, text=text)
        else:
            if s.during_playback and not s.interrupted:   # words, but no partial saw them
                yield Interrupt(session_id=s.id, turn=s.turn, text=text, at_s=s.at_s)
            yield UserTurn(session_id=s.id, turn=s.turn, text=text, user=s.user,
                           start_s=round(s.start_window * WINDOW / RATE, 3),
                           end_s=round((s.first_window + s.speech_end) * WINDOW / RATE, 3),
                           speech_end_unix=s.speech_end_unix, decided_unix=decided,
                           asr_ms=round(asr_ms, 1), during_playback=s.during_playback)
        self._reset(s)

    def _reset(self, s: Session) -> None:
        s.utterance, s.partial, s.final, s.decoded_upto = [], None, None, 0

    # -- session end -----------------------------------------------------------------------
    async def _hang_up(self, s: Session) -> AsyncIterator[Any]:
        event = s.turns.force_end()
        if event:
            async for out in self._finish(s, event):
                yield out
        self.sessions.pop(s.id, None)
        yield SessionClosed(session_id=s.id, reason="hang-up", user=s.user)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < 5.0:
            return
        self._swept = now
        for key in [k for k, s in self.sessions.items() if now - s.last_seen > self.config.idle_s]:
            del self.sessions[key]


def _discard_reason(text: str, over_the_agent: bool) -> str:
    if not spoken_words(text):
        return "no words (noise, a cough, breathing)"
    if over_the_agent and is_backchannel(text):
        return "a backchannel while the agent spoke"
    return ""


def _load_engines(config: ListenConfig) -> ListenEngines:
    from operators.asr.operator import AsrConfig
    from operators.asr.whisper import WhisperEngine
    from operators.vad.operator import VadConfig
    from operators.vad.silero import SileroVad
    asr = WhisperEngine(AsrConfig(model=config.asr_model, beam_size=config.beam_size))
    asr.load()
    return ListenEngines(vad=SileroVad(VadConfig()), asr=asr)
