"""The agent's voice for one call, 20 ms at a time, and the caller's microphone cut to frames.

    Playout      the queue of the agent's audio: pause, resume, flush, stale turns dropped,
                 and how much of each sentence was actually played (for `Spoken`)
    AgentVoice   the outbound WebRTC track: one Playout frame every 20 ms, silence when
                 there is nothing to say (or while paused)
    FrameCutter  inbound: whatever the Opus decoder gives (48 kHz stereo) → 16 kHz mono s16
                 in exact 20 ms pieces (320 samples)

Playout knows no clock, so its tests run without sleeping; only AgentVoice paces.
"""
from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time
from dataclasses import dataclass
from typing import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from schemas.voice import SpeechAudio

log = logging.getLogger(__name__)

OUT_RATE = 48_000
OUT_SAMPLES = 960                      # 20 ms at 48 kHz, what the Opus encoder wants
OUT_BYTES = OUT_SAMPLES * 2
IN_RATE = 16_000
IN_BYTES = 320 * 2                     # 20 ms at 16 kHz, s16 mono
FRAME_S = 0.020
REPLY_GAP_FRAMES = 250                 # 5 s without the next sentence: the reply is taken as over
SILENCE = bytes(OUT_BYTES)
END = b""                              # a queued marker: the turn's audio ends here


@dataclass(slots=True)
class Chunk:
    pcm: bytes                         # OUT_BYTES of audio, or END
    turn: int
    index: int                         # the sentence


@dataclass(slots=True)
class Sentence:
    text: str = ""
    frames: int = 0                    # queued so far (all of it once `complete`)
    played: int = 0
    complete: bool = False


class Playout:
    """What the agent will say next, frame by frame. `events` collects ("started", turn) and
    ("finished", turn) as playback crosses them; the session drains it after each frame."""

    def __init__(self, max_frames: int, reply_gap_frames: int = REPLY_GAP_FRAMES) -> None:
        self.queue: collections.deque[Chunk] = collections.deque()
        self.max_frames = max(1, max_frames)
        self.paused = False
        # The agent is mid-reply: its audio is going out, or a sentence of a started turn has
        # ended and the next is still being written. Speech in such a gap is a barge-in, not
        # a new turn that would wait behind the rest of the reply. A reply whose end never
        # comes (its turn failed) stops counting after reply_gap_frames of silence.
        self.playing = False
        self.speaking: int | None = None   # the turn started and not finished
        self.reply_gap_frames = reply_gap_frames
        self._quiet = 0                # silent frames handed out since the last audio
        self.floor = 0                 # pieces of turns below this are stale
        self.turn = -1                 # the newest turn that has audio
        self.overflow_drops = 0        # frames dropped because the queue was full
        self.stale_drops = 0           # pieces dropped because their turn is over
        self.sentences: dict[tuple[int, int], Sentence] = {}
        self.events: list[tuple[str, int]] = []
        self._audio_frames = 0         # audio chunks in the queue (END markers not counted)
        self._started: set[int] = set()
        self._resampler: tuple[tuple[int, int, int], av.AudioResampler] | None = None
        self._tail = b""               # resampled audio short of a whole frame

    def add(self, piece: SpeechAudio) -> None:
        if piece.turn < self.floor:
            self.stale_drops += 1
            return
        if piece.turn > self.turn:
            self.advance(piece.turn)
        sentence = self.sentences.setdefault((piece.turn, piece.index), Sentence())
        if piece.text and not sentence.text:
            sentence.text = piece.text
        if piece.pcm:
            self._push(self._resample(piece), piece.turn, piece.index, sentence)
        if piece.last or piece.end_of_turn:
            self._push(self._finish_sentence(), piece.turn, piece.index, sentence)
            sentence.complete = True
        if piece.end_of_turn:
            self.queue.append(Chunk(END, piece.turn, piece.index))

    def set_text(self, turn: int, index: int, text: str) -> None:
        """The sentence's text from the agent's own event, where the audio had none."""
        if turn >= self.floor:
            sentence = self.sentences.setdefault((turn, index), Sentence())
            sentence.text = sentence.text or text

    def next_frame(self) -> bytes | None:
        """The next 20 ms of agent audio, or None for silence (nothing queued, or paused)."""
        chunk = None if self.paused else self._pop_audio()
        if chunk is None:
            self._quiet += 1
            if self._quiet >= self.reply_gap_frames:
                self.speaking = None
            self.playing = not self.paused and self.speaking is not None
            return None
        self._quiet = 0
        self.playing = True
        self.speaking = chunk.turn
        if chunk.turn not in self._started:
            self._started.add(chunk.turn)
            self.events.append(("started", chunk.turn))
        sentence = self.sentences.get((chunk.turn, chunk.index))
        if sentence is not None:
            sentence.played += 1
        self._pop_markers()              # a turn that ends here is finished now, not later
        return chunk.pcm

    def pause(self) -> None:
        self.paused = True
        self.playing = False

    def resume(self) -> None:
        self.paused = False

    def flush(self) -> int:
        """Drop everything queued (barge-in); returns how many frames of audio were dropped."""
        dropped = self._audio_frames
        self.queue.clear()
        self._audio_frames = 0
        self._resampler, self._tail = None, b""
        self.playing, self.speaking = False, None
        return dropped

    def advance(self, turn: int) -> None:
        """Turn `turn` is now the newest: older turns' audio is dropped, their records freed."""
        self.turn = max(self.turn, turn)
        if turn <= self.floor:
            return
        self.floor = turn
        self.paused = False            # a pause belonged to the old turn: the agent moved on
        if self.speaking is not None and self.speaking < self.floor:
            self.speaking = None       # its end marker may be among what is dropped below
        kept = [c for c in self.queue if c.turn >= self.floor]
        if len(kept) != len(self.queue):
            self.queue = collections.deque(kept)
            self._audio_frames = sum(1 for c in kept if c.pcm)
            self._resampler, self._tail = None, b""
        # Keep the turn before the floor: an Interrupt may still ask what was heard of it.
        for key in [k for k in self.sentences if k[0] < self.floor - 1]:
            del self.sentences[key]
        self._started = {t for t in self._started if t >= self.floor - 1}

    def cut(self) -> int:
        """Barge-in: flush, and refuse the rest of the newest turn; returns that turn."""
        cut = self.turn
        self.flush()
        self.floor = max(self.floor, cut + 1)
        return cut

    def heard_text(self, turn: int) -> str:
        """The sentences of `turn` played in full, then the played share of the one cut, by
        words (the share of its frames that went out; a sentence still being synthesized
        counts against what had arrived)."""
        parts: list[str] = []
        mine = sorted((index, s) for (t, index), s in self.sentences.items() if t == turn)
        for _, sentence in mine:
            if sentence.played == 0:
                break
            if sentence.complete and sentence.played >= sentence.frames:
                parts.append(sentence.text)
                continue
            words = sentence.text.split()
            share = sentence.played / max(sentence.frames, 1)
            parts.append(" ".join(words[:round(len(words) * share)]))
            break
        return " ".join(p for p in parts if p)

    # --- inside ---------------------------------------------------------------------

    def _pop_audio(self) -> Chunk | None:
        self._pop_markers()
        if not self.queue:
            return None
        chunk = self.queue.popleft()
        self._audio_frames -= 1
        return chunk

    def _pop_markers(self) -> None:
        while self.queue and not self.queue[0].pcm:
            marker = self.queue.popleft()
            if marker.turn == self.speaking:
                self.speaking = None
            if marker.turn in self._started:
                self.events.append(("finished", marker.turn))

    def _resample(self, piece: SpeechAudio) -> bytes:
        key = (piece.turn, piece.index, piece.sample_rate)
        if self._resampler is None or self._resampler[0] != key:
            self._resampler = (key, av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE))
            self._tail = b""
        samples = np.frombuffer(piece.pcm[:len(piece.pcm) // 2 * 2], np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = piece.sample_rate
        return b"".join(bytes(f.planes[0])[:f.samples * 2]
                        for f in self._resampler[1].resample(frame))

    def _finish_sentence(self) -> bytes:
        """What the resampler still holds, and the tail padded to a whole frame."""
        out = b""
        if self._resampler is not None:
            out = b"".join(bytes(f.planes[0])[:f.samples * 2]
                           for f in self._resampler[1].resample(None))
            self._resampler = None
        out = self._tail + out
        self._tail = b""
        if len(out) % OUT_BYTES:
            out += bytes(OUT_BYTES - len(out) % OUT_BYTES)
        return out

    def _push(self, pcm: bytes, turn: int, index: int, sentence: Sentence) -> None:
        pcm = self._tail + pcm
        whole = len(pcm) - len(pcm) % OUT_BYTES
        self._tail = pcm[whole:]
        for start in range(0, whole, OUT_BYTES):
            if self._audio_frames >= self.max_frames:
                self._drop_stalest()
            self.queue.append(Chunk(pcm[start:start + OUT_BYTES], turn, index))
            self._audio_frames += 1
            sentence.frames += 1

    def _drop_stalest(self) -> None:
        for i, chunk in enumerate(self.queue):
            if chunk.pcm:
                del self.queue[i]
                self._audio_frames -= 1
                self.overflow_drops += 1
                return


class AgentVoice(MediaStreamTrack):
    """The outbound track: a Playout frame (or silence) every 20 ms of real time.

    `on_frame(audio: bool)` runs after each frame is handed to the encoder (the session
    measures latency and tells the page about playback there)."""

    kind = "audio"

    def __init__(self, playout: Playout, on_frame: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.playout, self.on_frame, self.clock = playout, on_frame, clock
        self.frames = 0
        self.late_resets = 0           # times the loop was so late that pacing re-anchored
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._wait_turn()
        pcm = self.playout.next_frame()
        frame = av.AudioFrame(format="s16", layout="mono", samples=OUT_SAMPLES)
        frame.planes[0].update(pcm or SILENCE)
        frame.sample_rate = OUT_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, OUT_RATE)
        self._pts += OUT_SAMPLES
        self.frames += 1
        if self.on_frame is not None:
            try:
                self.on_frame(pcm is not None)
            except Exception:          # a reporting bug must not silence the call
                log.exception("after-frame hook failed")
        return frame

    async def _wait_turn(self) -> None:
        now = self.clock()
        if self._start is None:
            self._start = now
            return
        due = self._start + self.frames * FRAME_S
        if now - due > 0.2:
            # The loop stalled: play on from now instead of bursting out the backlog,
            # which the far end's jitter buffer would only throw away.
            self._start = now - self.frames * FRAME_S
            self.late_resets += 1
        elif due > now:
            await asyncio.sleep(due - now)


class FrameCutter:
    """Decoded caller audio → 16 kHz mono s16 in exact 20 ms pieces."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=IN_RATE)
        self._buffer = bytearray()

    def push(self, frame: av.AudioFrame) -> list[bytes]:
        for out in self._resampler.resample(frame):
            self._buffer += bytes(out.planes[0])[:out.samples * 2]
        whole = len(self._buffer) - len(self._buffer) % IN_BYTES
        pieces = [bytes(self._buffer[i:i + IN_BYTES]) for i in range(0, whole, IN_BYTES)]
        del self._buffer[:whole]
        return pieces
