"""The meeting transcriber's client side: submit a recording with its meeting, wait for the
minutes (and for the meeting to be searchable), render them. Used by `patchwire meeting`,
the gateway's /v1/meetings and the evals.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import msgspec
from opentelemetry import trace

from operators.meeting.formats import Format, published, render, to_markdown
from operators.meeting.redact import Pii
from schemas import Indexed, MeetingInfo, MeetingMinutes, Progress, TranscribeJob
from topology.bus import Bus
from topology.jobs import JobWatch, new_job_id, publish_job

PROMPT_CHARS = 600      # Whisper's prompt holds ~224 tokens; the rest of it is its own context
STAGES = ("decode", "vad", "asr", "diarize", "cleanup", "summarize", "archive", "chunk",
          "embed", "index")


class MeetingError(ValueError):
    """A meeting request that cannot be run as given; the message says what to change."""


def meeting_info(*, title: str = "", participants: str = "", agenda: str = "",
                 speakers: str = "", acl: str = "", tenant: str = "default",
                 collection: str = "meetings", redact: str = "", redact_names: bool = False,
                 disfluencies: bool = False, summarize: bool = True, index: bool = True,
                 keep_audio: bool = True) -> MeetingInfo:
    """A MeetingInfo from the comma-separated forms a command line or a form gives."""
    kinds = _split(redact)
    unknown = [k for k in kinds if k not in {p.value for p in Pii}]
    if unknown:
        raise MeetingError(f"unknown personal data kind(s) {unknown} in redact "
                           f"(known: {', '.join(p.value for p in Pii)})")
    mapping = {}
    for pair in _split(speakers):
        label, sep, name = pair.partition("=")
        if not sep or not label.strip() or not name.strip():
            raise MeetingError(f"speakers takes LABEL=NAME pairs (SPEAKER_00=Ana), got {pair!r}")
        mapping[label.strip()] = name.strip()
    info = MeetingInfo(title=title.strip(), participants=_split(participants),
                       agenda=agenda.strip(), speakers=mapping, tenant=tenant or "default",
                       collection=collection or "meetings", redact=kinds,
                       redact_names=redact_names, remove_disfluencies=disfluencies,
                       summarize=summarize, index=index, keep_audio=keep_audio)
    return msgspec.structs.replace(info, acl=_split(acl)) if acl else info


def _split(text: str) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def asr_prompt(info: MeetingInfo) -> str:
    """Names and agenda as Whisper's prompt: it spells what it has just 'heard'."""
    parts = []
    if info.participants:
        parts.append("Participants: " + ", ".join(info.participants) + ".")
    if info.agenda:
        parts.append("Agenda: " + re.sub(r"\s+", " ", info.agenda).strip())
    return " ".join(parts)[:PROMPT_CHARS]


async def submit(bus: Bus, blobs, path: Path, info: MeetingInfo, *, job_id: str = "",
                 language: str = "en") -> str:
    """Store the recording and publish its job; returns the job id (watch before calling)."""
    job_id = job_id or new_job_id()
    ref = await blobs.put_file(f"{job_id}/{path.name}", path)
    job = TranscribeJob(job_id=job_id, audio=ref, filename=path.name, language=language,
                        prompt=asr_prompt(info), meeting=info)
    await publish_job(bus, "jobs", job_id, job)
    return job_id


async def transcribe_meeting(bus: Bus, blobs, path: Path, info: MeetingInfo, *,
                             timeout: float | None = None, language: str = "en",
                             on_progress: Callable[[Progress], None] | None = None
                             ) -> tuple[MeetingMinutes, Indexed | None]:
    """Run one meeting to the end: its minutes, and its Indexed when it was indexed."""
    job_id = new_job_id()
    tracer = trace.get_tracer("patchwire.client")
    with tracer.start_as_current_span("meeting", attributes={"pw.job": job_id,
                                                             "pw.file": path.name}):
        started = time.monotonic()
        async with JobWatch(bus, job_id, "minutes", MeetingMinutes, "errors", on_progress) as m, \
                JobWatch(bus, job_id, "indexed", Indexed, "errors") as ix:
            await submit(bus, blobs, path, info, job_id=job_id, language=language)
            minutes = await m.wait(timeout)
            indexed = None
            if minutes.document_id:     # set when the meeting goes to the QA store
                left = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
                indexed = await ix.wait(left)
        return minutes, indexed


def minutes_json(minutes: MeetingMinutes) -> bytes:
    """The minutes as users get them: the transcript without the pipeline's internals."""
    return msgspec.json.encode(msgspec.structs.replace(
        minutes, transcript=published(minutes.transcript)))


def render_minutes(fmt: str, minutes: MeetingMinutes) -> bytes:
    """json: the whole filed meeting; the other formats as operators/meeting/formats.py."""
    if fmt == "json":
        return minutes_json(minutes)
    if fmt == "summary" and minutes.summary is None:
        raise MeetingError("this meeting has no summary: " + "; ".join(minutes.warnings))
    if fmt == "md":
        return to_markdown(minutes.transcript, minutes.summary, title=minutes.info.title).encode()
    return render(Format(fmt), minutes.transcript, minutes.summary)


def write_all(minutes: MeetingMinutes, folder: Path) -> list[Path]:
    """Every format into `folder` (the minutes' JSON, the summary when there is one)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [(folder / "meeting.json", minutes_json(minutes))]
    for fmt in Format:
        if fmt is Format.SUMMARY and minutes.summary is None:
            continue
        name = "summary.json" if fmt is Format.SUMMARY else f"transcript.{fmt.value}"
        out.append((folder / name, render_minutes(fmt.value, minutes)))
    for path, data in out:
        path.write_bytes(data)
    return [p for p, _ in out]
