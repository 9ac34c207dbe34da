"""What a user says about a meeting recording; it travels with the job from decode to index.

Its own module because TranscribeJob and DecodedAudio (schemas.audio) carry it, and the
summary types (schemas.meeting) need the Transcript, which needs schemas.audio.
"""
from __future__ import annotations

import msgspec

EVERYONE = "*"      # as schemas.documents.EVERYONE: a meeting anyone may read


class MeetingInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the user says about a recording: it travels with the job from decode to index.

    participants and agenda become the ASR prompt and the cleanup's domain terms; `speakers`
    maps diarization labels to names once the user knows who is who ("SPEAKER_00": "Ana")."""

    title: str = ""
    participants: list[str] = []
    agenda: str = ""
    speakers: dict[str, str] = {}
    tenant: str = "default"
    collection: str = "meetings"
    acl: list[str] = msgspec.field(default_factory=lambda: [EVERYONE])
    redact: list[str] = []          # personal data kinds (operators/meeting/redact.Pii) to mask
    redact_names: bool = False      # also mask the participants' names
    remove_disfluencies: bool = False
    summarize: bool = True
    index: bool = True              # make the transcript searchable in the QA store
    keep_audio: bool = True         # False: the recording is deleted once the meeting is filed
