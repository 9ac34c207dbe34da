"""Speech: VAD segments, words with timestamps, transcripts."""
from __future__ import annotations

import msgspec

from schemas.audio import DecodedAudio
from schemas.base import Message


class Span(msgspec.Struct, frozen=True, array_like=True):
    """A time span in seconds from the start of the recording."""

    start: float
    end: float


class SpeechSegments(Message, frozen=True):
    """Where the VAD heard speech in a decoded recording."""

    job_id: str
    audio: DecodedAudio
    segments: list[Span] = []
    speech_s: float = 0.0


class Word(msgspec.Struct, frozen=True, kw_only=True):
    word: str
    start: float
    end: float
    probability: float = 0.0


class TranscriptSegment(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    text: str
    words: list[Word] = []
    speaker: str = ""
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


class Transcript(Message, frozen=True):
    job_id: str
    segments: list[TranscriptSegment] = []
    language: str = "en"
    duration_s: float = 0.0
    model: str = ""
    warnings: list[str] = []
    # Set when the ASR is asked to pass the audio on (a meeting: diarization reads it again).
    audio: DecodedAudio | None = None
    speech: list[Span] = []

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())
