"""Meeting: the structured summary of a transcript, every item tied to what was said.

Each item carries the span it comes from: the transcript segments it cites (indexes into
`Transcript.segments`) and their times, so minutes can link to the recording and a reader
can check the item against the words. The summary is also published as JSON; its JSON
Schema (`summary_json_schema()`) is the contract for consumers outside patchwire.
"""
from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.base import Message, ObjectRef
from schemas.meeting_info import MeetingInfo
from schemas.speech import Transcript

SCHEMA_ID = "https://patchwire.dev/schemas/meeting-summary.json"

Seconds = Annotated[float, msgspec.Meta(ge=0)]
SegmentIndex = Annotated[int, msgspec.Meta(ge=0)]
ItemText = Annotated[str, msgspec.Meta(min_length=1)]


class SummarySpan(msgspec.Struct, frozen=True, kw_only=True):
    """Where an item comes from: the cited segments (sorted, at least one) and their times."""

    start_s: Seconds
    end_s: Seconds
    segments: Annotated[list[SegmentIndex], msgspec.Meta(min_length=1)]


class SummaryItem(msgspec.Struct, frozen=True, kw_only=True):
    """A key point, a decision or an open question."""

    text: ItemText
    span: SummarySpan


class ActionItem(msgspec.Struct, frozen=True, kw_only=True):
    """Something someone is to do; owner and due only when the meeting said them."""

    text: ItemText
    span: SummarySpan
    owner: str = ""
    due: str = ""


class MeetingSummary(Message, frozen=True):
    """The summary of one meeting's transcript (job_id as in its Transcript)."""

    job_id: str = ""
    key_points: list[SummaryItem] = []
    action_items: list[ActionItem] = []
    decisions: list[SummaryItem] = []
    open_questions: list[SummaryItem] = []
    model: str = ""
    sections: int = 0              # transcript sections summarised separately (map steps)
    removed: list[str] = []        # items dropped because their cited segments did not support them
    warnings: list[str] = []


class MeetingMinutes(Message, frozen=True):
    """A filed meeting: the speaker-attributed transcript, its summary and what was asked for."""

    job_id: str
    transcript: Transcript
    summary: MeetingSummary | None = None
    info: MeetingInfo = MeetingInfo()
    audio: ObjectRef | None = None   # 16 kHz mono s16le PCM, for playback (None once deleted)
    document_id: str = ""            # the transcript's id in the QA store ("" when not indexed)
    warnings: list[str] = []


def summary_json_schema() -> dict:
    """The published JSON Schema of a MeetingSummary as JSON (draft 2020-12)."""
    schema = msgspec.json.schema(MeetingSummary)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "patchwire meeting summary", **schema}
