"""The wire contract: every message type by name, re-exported from one place."""
from __future__ import annotations

from schemas.audio import AudioFrame, DecodedAudio, TranscribeJob
from schemas.base import CONTENT_TYPE, Headers, Message, ObjectRef, decoder, encoder
from schemas.control import Cancel, Ping, Progress, Stage
from schemas.documents import (Answer, AnswerDelta, AskEvent, AskRequest, Candidates, ChunkBatch,
                               Draft, DraftEvent, EmbeddedBatch, Indexed, IngestJob, Query)
from schemas.failure import Failure, FailureCategory
from schemas.meeting import MeetingMinutes, MeetingSummary
from schemas.meeting_info import MeetingInfo
from schemas.llm import (ChatMessage, FinishReason, GenerateEvent, GenerateRequest, GenerateResult,
                         SentenceDelta, TokenDelta, ToolCall, ToolSpec, Usage)
from schemas.speech import Span, SpeechSegments, Transcript, TranscriptSegment, Word
from schemas.voice import (AgentEvent, AgentSentence, AgentTurnDone, HearEvent, Interrupt, Partial,
                           SessionClosed, Spoken, SpeechAudio, SpeechStarted, ToolActivity,
                           TurnDiscarded, UserTurn)

MESSAGE_TYPES: dict[str, type[Message]] = {
    t.__name__: t
    for t in (
        TranscribeJob, DecodedAudio, AudioFrame, SpeechSegments, Transcript,
        Failure, Progress, Cancel, Ping, GenerateRequest, TokenDelta, SentenceDelta,
        GenerateResult, IngestJob, ChunkBatch, EmbeddedBatch, Indexed, AskRequest, Query,
        Candidates, AnswerDelta, Draft, Answer, MeetingSummary, MeetingMinutes,
        SpeechStarted, Partial, Interrupt, UserTurn, TurnDiscarded, Spoken, SessionClosed,
        AgentSentence, ToolActivity, AgentTurnDone, SpeechAudio,
    )
}

# Tagged unions that one subject may carry, by name.
UNIONS: dict[str, object] = {"GenerateEvent": GenerateEvent, "DraftEvent": DraftEvent,
                             "AskEvent": AskEvent, "HearEvent": HearEvent,
                             "AgentEvent": AgentEvent}


def message_type(name: str):
    """A message type or a tagged union of them, by the name a topology uses."""
    found = MESSAGE_TYPES.get(name) or UNIONS.get(name)
    if found is None:
        known = ", ".join(sorted([*MESSAGE_TYPES, *UNIONS]))
        raise KeyError(f"unknown message type {name!r} (known: {known})")
    return found


def type_name(kind) -> str:
    """The name of a message type or of a registered union."""
    for name, union in UNIONS.items():
        if union == kind:
            return name
    return kind.__name__


__all__ = [
    "Answer", "AnswerDelta", "AskEvent", "AskRequest", "Candidates", "ChunkBatch", "Draft",
    "DraftEvent", "EmbeddedBatch", "Indexed", "IngestJob", "Query",
    "ChatMessage", "FinishReason", "GenerateEvent", "GenerateRequest", "GenerateResult",
    "SentenceDelta", "TokenDelta", "ToolCall", "ToolSpec", "Usage", "UNIONS", "type_name",
    "AudioFrame", "CONTENT_TYPE", "Cancel", "DecodedAudio", "Failure", "FailureCategory",
    "Headers", "MESSAGE_TYPES", "Message", "ObjectRef", "Ping", "Progress", "Span",
    "SpeechSegments", "Stage", "TranscribeJob", "Transcript", "TranscriptSegment", "Word",
    "decoder", "encoder", "message_type", "MeetingInfo", "MeetingMinutes", "MeetingSummary",
    "AgentEvent", "AgentSentence", "AgentTurnDone", "HearEvent", "Interrupt", "Partial",
    "SessionClosed", "Spoken", "SpeechAudio", "SpeechStarted", "ToolActivity", "TurnDiscarded",
    "UserTurn",
]
