"""Audio on the wire: durable jobs carry object references; realtime carries 20 ms frames."""
from __future__ import annotations

from schemas.base import Message, ObjectRef
from schemas.meeting_info import MeetingInfo


class TranscribeJob(Message, frozen=True):
    """An audio or video file stored in the object store, to be transcribed."""

    job_id: str
    audio: ObjectRef
    filename: str = ""
    language: str = "en"
    prompt: str = ""
    meeting: MeetingInfo | None = None    # set by the meeting transcriber; carried to the end


class DecodedAudio(Message, frozen=True):
    """16 kHz mono signed 16-bit little-endian PCM, stored as one object."""

    job_id: str
    pcm: ObjectRef
    sample_rate: int = 16_000
    duration_s: float = 0.0
    source_format: str = ""
    source_sample_rate: int = 0
    source_channels: int = 0
    warnings: list[str] = []
    language: str = "en"
    prompt: str = ""
    meeting: MeetingInfo | None = None
    source: ObjectRef | None = None       # the file it came from (retention deletes both)


class AudioFrame(Message, frozen=True, gc=False):
    """A realtime frame (20 ms at 16 kHz is 320 samples)."""

    seq: int
    pcm: bytes
    sample_rate: int = 16_000
    playing: bool = False     # the agent's audio is playing at the client (barge-in context)
    user: str = ""            # who speaks (set by the gateway on the session's first frames)
    last: bool = False        # hang-up: the session ends after this frame
