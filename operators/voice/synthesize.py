"""Synthesize: the agent's words in (AgentEvent), its voice out (SpeechAudio), piece by piece.

    AgentSentence  -> its audio in pieces of piece_ms: the sentence's text on the first piece,
                      `last` on the final one (one empty `last` piece if nothing is sayable)
    AgentTurnDone  -> one empty piece with end_of_turn, index = the sentences of that turn
    ToolActivity   -> nothing

Text is made speakable first (operators/voice/tts/normalize.py). The engine streams: the
first piece goes out as soon as the first clause is synthesized, not the whole sentence.
A barge-in (a Cancel for the session) cancels process(): speaking stops at once, the engine
abandons the utterance cleanly, and later sentences of that turn still queued for this
session are skipped, since the user interrupted them too.

Engines: "embedded" is piper (operators/voice/tts/piper.py), "espeak" is espeak-ng.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec

from operators.base import Context, Operator, Reject
from operators.models import MODELS
from operators.voice.tts.engine import SpeechEngine
from operators.voice.tts.normalize import speakable
from schemas import AgentEvent, AgentSentence, AgentTurnDone, SpeechAudio

MAX_SESSIONS = 10_000     # sessions remembered (turn, sentence count, cut); oldest forgotten


class SynthesizeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    voice: str = "en_US-joe-medium"     # a "tts" model in operators/models.py (embedded engine)
    espeak_voice: str = "en-us"         # the espeak engine's voice (espeak-ng --voices)
    speed: Annotated[float, msgspec.Meta(ge=0.5, le=2.0)] = 1.0    # >1 faster (1/length scale)
    piece_ms: Annotated[int, msgspec.Meta(ge=20, le=1000)] = 160
    sample_rate: Annotated[int, msgspec.Meta(ge=8_000, le=48_000)] = 22_050  # else resampled
    noise_scale: float | None = None    # piper's voice defaults; 0 and 0 make the voice repeatable
    noise_w: float | None = None
    processes: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1        # piper children, ~190 MB each
    max_chars: Annotated[int, msgspec.Meta(ge=1)] = 5_000          # a longer sentence is rejected
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0         # one clause, queueing included
    # A piper child grows (onnxruntime keeps buffers for every input length it has seen): one
    # past either bound is replaced by a fresh one, started beside it, swapped in when ready.
    recycle_mib: Annotated[int, msgspec.Meta(ge=0)] = 320           # its RSS (0: never)
    recycle_lines: Annotated[int, msgspec.Meta(ge=0)] = 20_000      # clauses served (0: never)

    def __post_init__(self) -> None:
        if MODELS.get(self.voice) is None or MODELS[self.voice].kind != "tts":
            known = ", ".join(n for n, s in MODELS.items() if s.kind == "tts")
            raise ValueError(f"unknown voice {self.voice!r} (known: {known})")


class _Turn(msgspec.Struct):
    turn: int
    sentences: int = 0
    cut: bool = False


class Synthesize(Operator[AgentEvent, SpeechAudio]):
    kind = "synthesize"
    input_type = AgentEvent
    output_type = SpeechAudio
    Config = SynthesizeConfig

    def __init__(self, name: str, config: SynthesizeConfig | None = None, engine=None):
        super().__init__(name, config, engine)
        self._turns: collections.OrderedDict[str, _Turn] = collections.OrderedDict()

    async def start(self) -> None:
        if self.engine is None:
            from operators.voice.tts.piper import PiperEngine   # spawns processes only when used
            self.engine = PiperEngine(self.config)
        await self.engine.start()

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    async def process(self, event: AgentEvent, ctx: Context) -> AsyncIterator[SpeechAudio]:
        if isinstance(event, AgentSentence):
            async with contextlib.aclosing(self._sentence(event)) as pieces:
                async for piece in pieces:
                    yield piece
        elif isinstance(event, AgentTurnDone):
            state = self._turn(event.session_id, event.turn)
            yield SpeechAudio(session_id=event.session_id, turn=event.turn, index=state.sentences,
                              seq=0, sample_rate=self.engine.sample_rate, end_of_turn=True)
        # ToolActivity: nothing to say (the gateway shows it from the `said` edge)

    async def _sentence(self, s: AgentSentence) -> AsyncIterator[SpeechAudio]:
        state = self._turn(s.session_id, s.turn)
        state.sentences = max(state.sentences, s.index + 1)
        if state.cut:
            return              # the user interrupted this turn: its queued sentences are stale
        text = speakable(s.text)
        if len(text) > self.config.max_chars:
            raise Reject(f"sentence {s.index} has {len(text)} characters to speak; "
                         f"max_chars is {self.config.max_chars}")
        engine: SpeechEngine = self.engine
        seq, held = 0, None     # one piece held back, so the final one can carry `last`
        try:
            async with contextlib.aclosing(engine.speak(text)) as pieces:
                async for pcm in pieces:
                    if held is not None:
                        yield self._audio(s, seq, held)
                        seq += 1
                    held = pcm
        except (asyncio.CancelledError, GeneratorExit):
            state.cut = True    # a barge-in: cancelled while synthesizing or while publishing
            raise
        yield self._audio(s, seq, held or b"", last=True)

    def _audio(self, s: AgentSentence, seq: int, pcm: bytes, last: bool = False) -> SpeechAudio:
        return SpeechAudio(session_id=s.session_id, turn=s.turn, index=s.index, seq=seq, pcm=pcm,
                           sample_rate=self.engine.sample_rate, text=s.text if seq == 0 else "",
                           last=last)

    def _turn(self, session_id: str, turn: int) -> _Turn:
        """This session's state for `turn`, fresh when the turn changed; least recently used
        sessions are forgotten past MAX_SESSIONS."""
        state = self._turns.pop(session_id, None)
        if state is None or state.turn != turn:
            state = _Turn(turn)
        self._turns[session_id] = state
        while len(self._turns) > MAX_SESSIONS:
            self._turns.popitem(last=False)
        return state
