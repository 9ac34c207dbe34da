"""ASR: one SpeechSegments in, one Transcript out, with word timestamps.

VAD spans are packed into windows of at most max_window_s of speech (Whisper sees 30 s at a
time); the silence between distant spans is cut out, so a long meeting with long pauses
costs only its speech. Each window's samples are read from the PCM file on their own, so
memory stays flat, and the engine runs in a thread. The tail of the previous window's text
is the next window's prompt, which keeps names and spelling consistent across windows.
"""
from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Protocol

import msgspec
import numpy as np

from operators.audio_io import fetch_checked, read_pcm, run_settled, scratch_file
from operators.base import Context, Operator, Reject
from operators.models import MODELS
from schemas import Span, SpeechSegments, Transcript, TranscriptSegment

PAD_S = 0.3  # speech onsets sit before the VAD start; 0.1 s cut first words (evals/RESULTS.md)
KEEP_GAP_S = 0.5     # shorter pauses stay in the audio (Whisper punctuates from them)
PROMPT_WORDS = 40    # of the previous window's text, passed on as the next prompt
RETRY_UNPROMPTED_S = 2.0   # a window this long that came back empty is tried without prompt


class Transcriber(Protocol):
    """What the operator needs from an engine (embedded Whisper today; Riva or Triton later).
    transcribe() blocks and is called from a worker thread; times are window-relative."""

    model: str
    multilingual: bool

    def transcribe(self, pcm: np.ndarray, prompt: str, language: str
                   ) -> list[TranscriptSegment]: ...


class AsrConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str = "whisper-tiny.en"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=16)] = 5
    max_window_s: Annotated[float, msgspec.Meta(gt=1.0, le=30.0)] = 30.0
    language: str = ""    # "" takes the message's language; "auto" detects (multilingual only)
    cpu_threads: Annotated[int, msgspec.Meta(ge=1)] = 2
    pass_audio: bool = False  # put the audio and speech spans on the Transcript (diarization)

    def __post_init__(self) -> None:
        if MODELS.get(self.model) is None or MODELS[self.model].kind != "asr":
            known = ", ".join(n for n, s in MODELS.items() if s.kind == "asr")
            raise ValueError(f"unknown ASR model {self.model!r} (known: {known})")


class Piece(msgspec.Struct, frozen=True):
    """A stretch of the recording placed at `offset` seconds into a window."""

    start: float
    end: float
    offset: float


class Window(msgspec.Struct, frozen=True):
    pieces: list[Piece]

    @property
    def length(self) -> float:
        return self.pieces[-1].offset + self.pieces[-1].end - self.pieces[-1].start

    def to_source(self, t: float) -> float:
        """A time inside the window to a time in the recording."""
        i = max(bisect.bisect_right([p.offset for p in self.pieces], t) - 1, 0)
        p = self.pieces[i]
        return round(float(min(p.start + max(t - p.offset, 0.0), p.end)), 3)


def plan_windows(spans: list[Span], duration: float, max_window_s: float) -> list[Window]:
    """Pack padded spans, in order, into windows of at most max_window_s of audio."""
    windows: list[Window] = []
    pieces: list[Piece] = []
    for start, end in _stretches(spans, duration, max_window_s):
        pieces = _place(pieces, start, end, max_window_s, windows)
    if pieces:
        windows.append(Window(pieces))
    return windows


def _stretches(spans: list[Span], duration: float, limit: float) -> list[tuple[float, float]]:
    """Padded spans, clamped to the recording; any longer than a window split evenly."""
    out: list[tuple[float, float]] = []
    for s in sorted(spans, key=lambda s: s.start):
        start, end = max(s.start - PAD_S, 0.0), min(s.end + PAD_S, duration or s.end + PAD_S)
        if out and start < out[-1][1]:
            start = out[-1][1]          # padding made neighbours overlap: no audio twice
        n = int(np.ceil((end - start) / limit - 1e-9)) if end > start else 0
        step = (end - start) / max(n, 1)
        out += [(start + i * step, start + (i + 1) * step) for i in range(n)]
    return out


def _place(pieces: list[Piece], start: float, end: float, limit: float,
           windows: list[Window]) -> list[Piece]:
    """Add a stretch to the open window (keeping a short pause), or close it and open anew."""
    if pieces:
        last = pieces[-1]
        used = last.offset + last.end - last.start
        if start - last.end <= KEEP_GAP_S and used + end - last.end <= limit:
            return pieces[:-1] + [Piece(last.start, end, last.offset)]
        if used + end - start <= limit:
            return pieces + [Piece(start, end, used)]
        windows.append(Window(pieces))
    return [Piece(start, end, 0.0)]


class Asr(Operator[SpeechSegments, Transcript]):
    kind = "asr"
    input_type = SpeechSegments
    output_type = Transcript
    Config = AsrConfig

    async def start(self) -> None:
        if self.engine is None:
            from operators.asr.whisper import WhisperEngine  # faster-whisper loads when used
            self.engine = WhisperEngine(self.config)
        if hasattr(self.engine, "load"):
            await run_settled(self.engine.load)  # the first job should not pay for it

    async def process(self, msg: SpeechSegments, ctx: Context) -> AsyncIterator[Transcript]:
        if self.engine is None:  # driven without start(), as in a quick test
            await self.start()
        audio = msg.audio
        if audio.sample_rate != 16_000:
            raise Reject(f"ASR needs 16000 Hz PCM, got {audio.sample_rate} Hz")
        language, warnings = self._language(audio.language)
        windows = plan_windows(msg.segments, audio.duration_s, self.config.max_window_s)
        segments: list[TranscriptSegment] = []
        if windows:
            with scratch_file(ctx, ".s16le") as pcm:
                await fetch_checked(ctx, audio.pcm, pcm)
                segments = await self._transcribe(windows, pcm, audio.prompt, language, ctx)
        yield Transcript(job_id=msg.job_id, segments=segments, language=language or "auto",
                         duration_s=audio.duration_s, model=self.engine.model,
                         warnings=[*audio.warnings, *warnings],
                         audio=audio if self.config.pass_audio else None,
                         speech=msg.segments if self.config.pass_audio else [])

    def _language(self, from_message: str) -> tuple[str, list[str]]:
        wanted = self.config.language or from_message
        wanted = "" if wanted == "auto" else wanted
        if self.engine.multilingual or wanted in ("", "en"):
            return wanted, []
        return "en", [f"model {self.engine.model} is English-only; "
                      f"language {wanted!r} was transcribed as English"]

    async def _transcribe(self, windows: list[Window], pcm: Path, prompt: str, language: str,
                          ctx: Context) -> list[TranscriptSegment]:
        out: list[TranscriptSegment] = []
        speech = sum(w.length for w in windows)
        done, previous = 0.0, ""
        for window in windows:
            full_prompt = " ".join(p for p in (prompt, _tail(previous)) if p)
            found = await run_settled(self._window, window, pcm, full_prompt, language)
            if not found and full_prompt and window.length >= RETRY_UNPROMPTED_S:
                # A prompt can make a small Whisper skip a whole window (tiny.en does with
                # "Ana, Tom." on AMI); silence would have been found without it too.
                found = await run_settled(self._window, window, pcm, "", language)
            out += found
            previous = " ".join(s.text.strip() for s in found) or previous
            done += window.length
            await ctx.progress(done, speech, "transcribing")
        return out

    def _window(self, window: Window, pcm: Path, prompt: str, language: str
                ) -> list[TranscriptSegment]:
        """In a worker thread: read the window's samples, transcribe, map times back."""
        audio = np.concatenate([
            read_pcm(pcm, round(p.start * 16_000), round((p.end - p.start) * 16_000))
            for p in window.pieces])
        return [_shift(s, window) for s in self.engine.transcribe(audio, prompt, language)]


def _shift(seg: TranscriptSegment, window: Window) -> TranscriptSegment:
    words = [msgspec.structs.replace(w, start=window.to_source(w.start),
                                     end=window.to_source(w.end)) for w in seg.words]
    return msgspec.structs.replace(seg, start=window.to_source(seg.start),
                                   end=window.to_source(seg.end), words=words)


def _tail(text: str) -> str:
    return " ".join(text.split()[-PROMPT_WORDS:])
