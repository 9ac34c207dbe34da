"""What the gateway needs from the meeting transcriber, and the client that does it over the bus.

A meeting is a job: the recording and what the user said about it (MeetingInfo) go in, its
progress comes out per stage, and it ends in minutes that the archive operator files as
`{job}/minutes.json` in the object store (or in a failure). The gateway turns HTTP into
these calls; tests drive it with any object that has MeetingService's methods.

Events are read back from the topology's events stream (it keeps progress, results and
failures) with an ordered consumer that starts at the job's first message, so nothing is
lost between the POST and the page's GET of the events, and a reload replays the stages.

Object layout per job, next to what the operators write (`pcm16k.s16le`, `minutes.json`,
`transcript.json`): the recording under its own name and `meeting.json`, the MeetingInfo
as submitted, so a job can be permission-checked before its minutes exist.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import struct
import tempfile
import uuid
from pathlib import Path
from typing import AsyncIterator, Protocol

import msgspec
from nats.js import api

from operators.audio_io import BYTES_PER_SAMPLE, SAMPLE_RATE
from operators.meeting.archive import minutes_name
from schemas import Failure, MeetingInfo, MeetingMinutes, ObjectRef, Progress, Stage
from topology.bus import Bus
from topology.gateway.service import Upload
from topology.jobs import new_job_id
from topology.meeting import submit
from topology.subjects import valid_token

INFO_NAME = "meeting.json"
# Names the pipeline writes in a job's folder: a recording must not take one of them.
RESERVED = {INFO_NAME, "minutes.json", "transcript.json", "pcm16k.s16le"}
FINAL_STAGES = ("done", "failed")
PROGRESS_STEP = 0.01      # a stage's progress is passed on in steps of at least 1 %
CACHED_INFOS = 4096
CACHED_INFOS = 4096
CACHED_MINUTES = 16       # whole transcripts: a 4-hour meeting is a few MB
CACHED_AUDIO = 16         # WAV files kept for playback (~2 MB a minute each)


class MeetingTicket(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    filename: str = ""


class MeetingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a meeting job. `stage` is "queued" first, then the operator's name
    (decode … index) while it runs, then "done" (minutes filed, and indexed when they were
    to be) or "failed"."""

    job_id: str
    stage: str
    state: str = ""        # for an operator: started, progress, done, retrying
    done: float = 0.0
    total: float = 0.0
    note: str = ""         # for "failed": the reason, for the user
    operator: str = ""     # for "failed": the stage that failed

    @property
    def final(self) -> bool:
        return self.stage in FINAL_STAGES


class MeetingService(Protocol):
    async def submit(self, upload: Upload, info: MeetingInfo) -> MeetingTicket: ...

    async def info(self, job_id: str) -> MeetingInfo | None:
        """The meeting as submitted (tenant, acl …), or None for an unknown job."""

    def events(self, job_id: str) -> AsyncIterator[MeetingEvent]:
        """Every stage's events from the job's start, ending with one final event."""

    async def minutes(self, job_id: str) -> MeetingMinutes | None:
        """The filed minutes, or None while the job runs (or if it failed)."""

    async def audio(self, job_id: str) -> Path | None:
        """A WAV file of the meeting for playback, or None if the recording was not kept."""


def recording_name(filename: str) -> str:
    """The name a recording is stored under: its own, unless the pipeline uses that name."""
    return f"upload-{filename}" if filename in RESERVED else filename


class MeetingClient:
    """MeetingService over a running meeting_transcriber topology's bus and object store."""

    def __init__(self, bus: Bus, blobs) -> None:
        self.bus, self.blobs = bus, blobs
        self.workdir = Path(tempfile.mkdtemp(prefix="pw-meetings-"))
        self._infos: collections.OrderedDict[str, MeetingInfo] = collections.OrderedDict()
        self._minutes: collections.OrderedDict[str, MeetingMinutes] = collections.OrderedDict()
        self._audio: collections.OrderedDict[str, Path] = collections.OrderedDict()
        self._fetching = asyncio.Lock()
        self._minutes_decoder = msgspec.json.Decoder(MeetingMinutes)

    async def close(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    async def submit(self, upload: Upload, info: MeetingInfo) -> MeetingTicket:
        job_id = new_job_id()
        await self._put_json(f"{job_id}/{INFO_NAME}", msgspec.json.encode(info))
        await submit(self.bus, self.blobs, upload.path, info, job_id=job_id)
        _remember(self._infos, job_id, info, CACHED_INFOS)
        return MeetingTicket(job_id=job_id, filename=upload.filename)

    async def info(self, job_id: str) -> MeetingInfo | None:
        _check_id(job_id)
        if job_id not in self._infos:
            raw = await self._get(f"{job_id}/{INFO_NAME}")
            if raw is not None:
                _remember(self._infos, job_id, msgspec.json.decode(raw, type=MeetingInfo),
                          CACHED_INFOS)
            elif (minutes := await self.minutes(job_id)) is not None:   # submitted elsewhere
                _remember(self._infos, job_id, minutes.info, CACHED_INFOS)
        return self._infos.get(job_id)

    async def minutes(self, job_id: str) -> MeetingMinutes | None:
        _check_id(job_id)
        if job_id in self._minutes:
            self._minutes.move_to_end(job_id)
            return self._minutes[job_id]
        raw = await self._get(minutes_name(job_id))
        if raw is None:
            return None
        minutes = self._minutes_decoder.decode(raw)
        _remember(self._minutes, job_id, minutes, CACHED_MINUTES)
        return minutes

    async def audio(self, job_id: str) -> Path | None:
        minutes = await self.minutes(job_id)
        if minutes is None or minutes.audio is None:
            return None
        # One fetch at a time: the player asks for several ranges at once, and each would
        # otherwise download the same recording.
        async with self._fetching:
            path = self._audio.get(job_id)
            if path is not None and path.exists():
                self._audio.move_to_end(job_id)
                return path
            path = await self._fetch_wav(job_id, minutes.audio)
            for old in _remember(self._audio, job_id, path, CACHED_AUDIO):
                old.unlink(missing_ok=True)
            return path

    async def _fetch_wav(self, job_id: str, ref: ObjectRef) -> Path:
        pcm, wav = self.workdir / f"{job_id}.pcm", self.workdir / f"{job_id}.wav"
        try:
            await self.blobs.get_file(ref, pcm)
            await asyncio.to_thread(write_wav, pcm, wav)
        finally:
            pcm.unlink(missing_ok=True)
        return wav

    async def events(self, job_id: str) -> AsyncIterator[MeetingEvent]:
        if await self.info(job_id) is None:
            raise LookupError(f"no meeting job {job_id!r}")
        s = self.bus.subjects
        # `{root}.*.{job}` is the job's progress, minutes, indexed and errors in that stream.
        sub = await self.bus.js.subscribe(f"{s.root}.*.{job_id}", stream=s.events_stream,
                                          ordered_consumer=True,
                                          deliver_policy=api.DeliverPolicy.ALL)
        tracker = JobTracker(job_id)
        try:
            # At once, before any stage reports: a queued job may wait long for decode, and
            # the gateway sends the stream's headers with the first event.
            yield MeetingEvent(job_id=job_id, stage="queued")
            while True:
                msg = await sub.next_msg(timeout=None)
                for event in tracker.read(msg.subject.split(".")[-2], msg.data):
                    yield event
                    if event.final:
                        return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _get(self, name: str) -> bytes | None:
        path = self.workdir / f"{uuid.uuid4().hex}.get"
        try:
            await self.blobs.get_file(ObjectRef(bucket=self.blobs.bucket, name=name), path)
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        finally:
            path.unlink(missing_ok=True)

    async def _put_json(self, name: str, data: bytes) -> None:
        path = self.workdir / f"{uuid.uuid4().hex}.put"
        try:
            await asyncio.to_thread(path.write_bytes, data)
            await self.blobs.put_file(name, path, "application/json")
        finally:
            path.unlink(missing_ok=True)


class JobTracker:
    """Turns one job's bus messages, in stream order, into MeetingEvents.

    Done needs the minutes filed (archive's `done`) and, when the minutes name a document
    (summarize decided to index), its Indexed; a meeting with nothing to index ends at the
    archive. A final Failure or a cancel ends it as failed."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.document_id: str | None = None      # unknown until the minutes are seen
        self.archived = self.indexed = False
        self._shown: dict[str, float] = {}       # operator → last fraction passed on

    def read(self, edge: str, data: bytes) -> list[MeetingEvent]:
        try:
            if edge == "_progress":
                events = self._progress(msgspec.msgpack.decode(data, type=Progress))
            elif edge == "errors":
                events = self._failure(msgspec.msgpack.decode(data, type=Failure))
            else:
                events = self._result(edge, data)
        except msgspec.DecodeError:
            return []                            # not ours to judge: the operator reports it
        if not any(e.final for e in events) and self._finished():
            events.append(MeetingEvent(job_id=self.job_id, stage="done", done=1, total=1))
        return events

    def _progress(self, p: Progress) -> list[MeetingEvent]:
        if p.stage is Stage.CANCELLED:
            return [self._failed(p.operator, f"cancelled in {p.operator}")]
        if p.stage is Stage.FAILED:
            return []                            # the Failure on `errors` says why
        if p.stage is Stage.PROGRESS and not self._worth_showing(p):
            return []
        if p.operator == "archive" and p.stage is Stage.DONE:
            self.archived = True
        return [MeetingEvent(job_id=self.job_id, stage=p.operator, state=p.stage.value,
                             done=p.done, total=p.total, note=p.note)]

    def _worth_showing(self, p: Progress) -> bool:
        fraction = p.done / p.total if p.total > 0 else 0.0
        last = self._shown.get(p.operator)
        if last is not None and abs(fraction - last) < PROGRESS_STEP:
            return False
        self._shown[p.operator] = fraction
        return True

    def _failure(self, f: Failure) -> list[MeetingEvent]:
        return [self._failed(f.operator, f.reason)] if f.final else []

    def _result(self, edge: str, data: bytes) -> list[MeetingEvent]:
        if edge == "minutes":
            self.document_id = msgspec.msgpack.decode(data, type=MeetingMinutes).document_id
        elif edge == "indexed":
            self.indexed = True
        return []

    def _finished(self) -> bool:
        if not self.archived or self.document_id is None:
            return False
        return self.indexed or not self.document_id

    def _failed(self, operator: str, reason: str) -> MeetingEvent:
        return MeetingEvent(job_id=self.job_id, stage="failed", note=reason, operator=operator)


def write_wav(pcm: Path, wav: Path) -> None:
    """16 kHz mono s16le PCM as a WAV file: the 44-byte header, then the samples."""
    size = pcm.stat().st_size
    if size > 0xFFFFFFFF - 36:
        raise ValueError(f"{pcm.name}: {size} bytes of audio do not fit in a WAV file")
    part = wav.with_suffix(".part")
    with pcm.open("rb") as src, part.open("wb") as out:
        out.write(wav_header(size))
        shutil.copyfileobj(src, out, 1 << 20)
    part.replace(wav)          # whole or absent: a concurrent reader never sees half a file


def wav_header(data_bytes: int, rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    bits = BYTES_PER_SAMPLE * 8
    block = channels * BYTES_PER_SAMPLE
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


def _check_id(job_id: str) -> None:
    # A job id becomes a subject token and an object name: no wildcards, dots or slashes.
    if not valid_token(job_id):
        raise LookupError(f"no meeting job {job_id!r}")


def _remember(cache: collections.OrderedDict, key: str, value, size: int) -> list:
    """Put `value` in an LRU cache of `size`; returns what fell out."""
    cache[key] = value
    cache.move_to_end(key)
    evicted = []
    while len(cache) > size:
        evicted.append(cache.popitem(last=False)[1])
    return evicted
