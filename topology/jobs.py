"""Submitting a durable job and waiting for its result, progress shown as it comes."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Callable

import msgspec
from opentelemetry import trace

from schemas import (CONTENT_TYPE, Cancel, Failure, Headers, Message, Progress, Stage,
                     TranscribeJob, Transcript, decoder)
from topology import tracing
from topology.bus import Bus


class JobCancelled(RuntimeError):
    pass


class JobFailed(RuntimeError):
    def __init__(self, failure: Failure):
        super().__init__(f"{failure.operator}: {failure.reason}")
        self.failure = failure


def new_job_id() -> str:
    return "j" + uuid.uuid4().hex[:16]


async def publish_job(bus: Bus, edge: str, job_id: str, msg: Message, deadline: float = 0.0) -> None:
    headers = {Headers.JOB: job_id, Headers.MSG_ID: f"{job_id}:submit",
               Headers.CONTENT_TYPE: CONTENT_TYPE}
    if deadline:
        headers[Headers.DEADLINE] = f"{deadline:.3f}"
    tracing.inject(headers)
    await bus.js.publish(bus.subjects.edge(edge, job_id), msgspec.msgpack.encode(msg), headers=headers)


class JobWatch:
    """Subscribes to a job's result, final failure and progress before the job is published."""

    def __init__(self, bus: Bus, job_id: str, result_edge: str, result_type: type, errors_edge: str,
                 on_progress: Callable[[Progress], None] | None = None):
        self.bus, self.job_id = bus, job_id
        self.result_edge, self.errors_edge = result_edge, errors_edge
        self.result_decoder = decoder(result_type)
        self.on_progress = on_progress or (lambda p: None)
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.subs = []

    async def __aenter__(self) -> "JobWatch":
        s = self.bus.subjects
        self.subs = [
            await self.bus.nc.subscribe(s.edge(self.result_edge, self.job_id), cb=self._result),
            await self.bus.nc.subscribe(s.edge(self.errors_edge, self.job_id), cb=self._failure),
            await self.bus.nc.subscribe(s.progress(self.job_id), cb=self._progress),
        ]
        return self

    async def __aexit__(self, *exc) -> None:
        for sub in self.subs:
            await sub.unsubscribe()
        if self.done.done() and not self.done.cancelled():
            self.done.exception()   # a watch left unawaited (its job failed elsewhere): seen

    async def _result(self, msg) -> None:
        if self.done.done():
            return
        try:
            self.done.set_result(self.result_decoder.decode(msg.data))
        except msgspec.DecodeError as e:  # a newer or broken producer: say so, don't hang
            self.done.set_exception(RuntimeError(f"job {self.job_id}: undecodable result: {e}"))

    async def _failure(self, msg) -> None:
        try:
            failure = msgspec.msgpack.decode(msg.data, type=Failure)
        except msgspec.DecodeError:
            return
        if failure.final and not self.done.done():
            self.done.set_exception(JobFailed(failure))

    async def _progress(self, msg) -> None:
        try:
            progress = msgspec.msgpack.decode(msg.data, type=Progress)
        except msgspec.DecodeError:
            return
        self.on_progress(progress)
        if progress.stage is Stage.CANCELLED and not self.done.done():
            self.done.set_exception(JobCancelled(f"job {self.job_id} was cancelled in {progress.operator}"))

    async def wait(self, timeout: float | None = None, poll_s: float = 5.0):
        """The result or the final failure. Core subscriptions miss what is published while the
        client reconnects, so the events stream, which keeps results, is also read now and then."""
        poller = asyncio.create_task(self._poll(poll_s))
        try:
            return await asyncio.wait_for(asyncio.shield(self.done), timeout)
        finally:
            poller.cancel()

    async def _poll(self, every: float) -> None:
        subject = self.bus.subjects.edge(self.result_edge, self.job_id)
        while not self.done.done():
            await asyncio.sleep(every)
            try:
                stored = await self.bus.js.get_last_msg(self.bus.subjects.events_stream, subject)
            except Exception:  # not there yet (or the server is away): try again later
                continue
            await self._result(stored)


async def transcribe_file(bus: Bus, blobs, path: Path, *, input_edge: str = "jobs",
                          result_edge: str = "transcript", errors_edge: str = "errors",
                          language: str = "en", timeout: float | None = None,
                          on_progress: Callable[[Progress], None] | None = None) -> Transcript:
    """Store the file, publish a TranscribeJob, return the Transcript (or raise JobFailed)."""
    job_id = new_job_id()
    tracer = trace.get_tracer("patchwire.client")
    with tracer.start_as_current_span("transcribe", attributes={"pw.job": job_id,
                                                                "pw.file": path.name}):
        ref = await blobs.put_file(f"{job_id}/{path.name}", path)
        job = TranscribeJob(job_id=job_id, audio=ref, filename=path.name, language=language)
        async with JobWatch(bus, job_id, result_edge, Transcript, errors_edge, on_progress) as watch:
            await publish_job(bus, input_edge, job_id, job)
            started = time.monotonic()
            result = await watch.wait(timeout)
        trace.get_current_span().set_attribute("pw.seconds", time.monotonic() - started)
        return result


async def cancel(bus: Bus, session_id: str = "", job_id: str = "", reason: str = "",
                 operators: list[str] | None = None, before_turn: int = 0) -> None:
    """Stop a session's or a job's work now (barge-in, a user's cancel): in every operator,
    or only in those named; with `before_turn`, only work on earlier turns."""
    key = session_id or job_id
    await bus.nc.publish(bus.subjects.cancel(key), msgspec.msgpack.encode(
        Cancel(session_id=session_id, job_id=job_id, reason=reason, operators=operators or [],
               before_turn=before_turn)))
    await bus.nc.flush()
