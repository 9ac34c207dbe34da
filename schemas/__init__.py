"""The wire contract: every message type by name, re-exported from one place."""
from __future__ import annotations

from schemas.audio import AudioFrame, DecodedAudio, TranscribeJob
from schemas.base import CONTENT_TYPE, Headers, Message, ObjectRef, decoder, encoder
from schemas.control import Cancel, Ping, Progress, Stage
from schemas.failure import Failure, FailureCategory
from schemas.speech import Span, SpeechSegments, Transcript, TranscriptSegment, Word

MESSAGE_TYPES: dict[str, type[Message]] = {
    t.__name__: t
    for t in (
        TranscribeJob, DecodedAudio, AudioFrame, SpeechSegments, Transcript,
        Failure, Progress, Cancel, Ping,
    )
}


def message_type(name: str) -> type[Message]:
    try:
        return MESSAGE_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(MESSAGE_TYPES))
        raise KeyError(f"unknown message type {name!r} (known: {known})") from None


__all__ = [
    "AudioFrame", "CONTENT_TYPE", "Cancel", "DecodedAudio", "Failure", "FailureCategory",
    "Headers", "MESSAGE_TYPES", "Message", "ObjectRef", "Ping", "Progress", "Span",
    "SpeechSegments", "Stage", "TranscribeJob", "Transcript", "TranscriptSegment", "Word",
    "decoder", "encoder", "message_type",
]
