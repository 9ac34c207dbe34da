"""The document QA product as a client of a running doc_qa topology: ask, ingest, delete.

Used by `patchwire ask/ingest`, by the HTTP gateway (it implements
topology/gateway/service.py's QaService) and by the NATS request/reply responder.

Asking is request/reply over realtime edges: the request id is the session key, so the
answer comes back on `answers.<request id>` and a failure (an empty question, an engine
busy) on `errors.<request id>`; the caller subscribes before publishing. Ingest is a
durable job per document, watched like any other job: progress, then `indexed` or a final
failure.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

import msgspec
from opentelemetry import trace

from schemas import CONTENT_TYPE, Failure, Headers, Progress, Stage, decoder, encoder
from schemas.documents import (EVERYONE, Answer, AskEvent, AskRequest, DocumentInfo,
                               DocumentKey, Indexed, IngestJob, Principal)
from topology import tracing
from topology.bus import Bus
from topology.gateway.service import IngestTicket, JobEvent, Upload
from topology.jobs import new_job_id, publish_job

STAGE_OF_OPERATOR = {"chunk": "parsing", "embed": "embedding", "index": "indexing"}
ASK_TIMEOUT_S = 300.0


class QaClient:
    def __init__(self, bus: Bus, blobs, store=None, *, ask_timeout_s: float = ASK_TIMEOUT_S):
        self.bus, self.blobs, self.store = bus, blobs, store
        self.ask_timeout_s = ask_timeout_s
        self.events = decoder(AskEvent)
        self.wire = encoder()

    # --- asking -----------------------------------------------------------------------

    async def ask(self, request: AskRequest) -> AsyncIterator[AskEvent]:
        """Deltas of the draft, then exactly one Answer (outcome "rejected" on a failure)."""
        queue: asyncio.Queue = asyncio.Queue()
        s, rid = self.bus.subjects, request.request_id
        subs = [await self.bus.nc.subscribe(s.edge("answers", rid), cb=queue.put),
                await self.bus.nc.subscribe(s.edge("errors", rid), cb=queue.put)]
        # The client's span is the root of the ask's trace (`patchwire trace REQUEST_ID`).
        # Not "current": an async generator's context does not survive its yields.
        span = trace.get_tracer("patchwire.client").start_span(
            "ask", attributes={tracing.SESSION: rid, "pw.user": request.principal.user})
        try:
            headers = {Headers.SESSION: rid, Headers.CONTENT_TYPE: CONTENT_TYPE,
                       Headers.DEADLINE: f"{time.time() + self.ask_timeout_s:.3f}"}
            tracing.inject(headers, trace.set_span_in_context(span))
            await self.bus.nc.publish(s.edge("questions", rid), self.wire.encode(request),
                                      headers=headers)
            async for event in self._events(queue, rid):
                if isinstance(event, Answer):
                    span.set_attribute("pw.outcome", event.outcome)
                yield event
        finally:
            span.end()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _events(self, queue: asyncio.Queue, rid: str) -> AsyncIterator[AskEvent]:
        deadline = time.monotonic() + self.ask_timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                yield rejected(rid, f"no answer within {self.ask_timeout_s:.0f} s")
                return
            if msg.subject.endswith(f".errors.{rid}"):
                failure = msgspec.msgpack.decode(msg.data, type=Failure)
                yield rejected(rid, failure.reason, failure.operator)
                return
            event = self.events.decode(msg.data)
            yield event
            if isinstance(event, Answer):
                return

    async def answer(self, request: AskRequest) -> Answer:
        async for event in self.ask(request):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the answer stream ended without an answer")

    # --- ingesting --------------------------------------------------------------------

    async def ingest(self, upload: Upload, key: DocumentKey, acl: list[str],
                     metadata: dict[str, str] | None = None) -> IngestTicket:
        job_id = new_job_id()
        ref = await self.blobs.put_file(f"{job_id}/{Path(upload.filename).name or 'document'}",
                                        upload.path, upload.content_type)
        job = IngestJob(key=key, source=ref, filename=upload.filename,
                        content_type=upload.content_type, content_hash=ref.sha256,
                        acl=acl or [EVERYONE], metadata=metadata or {})
        await publish_job(self.bus, "ingest", job_id, job)
        return IngestTicket(job_id=job_id, key=key, filename=upload.filename)

    async def delete(self, key: DocumentKey) -> IngestTicket:
        job_id = new_job_id()
        await publish_job(self.bus, "ingest", job_id, IngestJob(key=key, delete=True))
        return IngestTicket(job_id=job_id, key=key)

    async def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """Progress of one ingest job, ending with its final event (also when it ended before
        this was called: the events stream keeps results and failures)."""
        queue: asyncio.Queue = asyncio.Queue()
        s = self.bus.subjects
        subjects = [s.edge("indexed", job_id), s.edge("errors", job_id), s.progress(job_id)]
        subs = [await self.bus.nc.subscribe(subject, cb=queue.put) for subject in subjects]
        try:
            for subject in subjects[:2]:        # finished already?
                with contextlib.suppress(Exception):
                    await queue.put(await self.bus.js.get_last_msg(s.events_stream, subject))
            while True:
                event = job_event(job_id, await queue.get())
                if event is not None:
                    yield event
                    if event.final:
                        return
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def documents(self, principal: Principal, collection: str = "") -> list[DocumentInfo]:
        if self.store is None or not hasattr(self.store, "documents"):
            raise NotImplementedError("listing documents needs the store in this process")
        return await self.store.documents(principal, collection)


async def serve_requests(client: QaClient, limit: int = 32):
    """NATS request/reply: an AskRequest (MessagePack, or JSON with Content-Type
    application/json) on `{ns}.{topology}._ask` gets the final Answer back in the same
    encoding. Callers on the bus are trusted to set the principal, like every operator."""
    slots = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task] = set()

    async def reply(msg) -> None:
        as_json = (msg.headers or {}).get(Headers.CONTENT_TYPE, "") == "application/json"
        try:
            req = (msgspec.json.decode(msg.data, type=AskRequest) if as_json
                   else msgspec.msgpack.decode(msg.data, type=AskRequest))
            async with slots:
                answer = await client.answer(req)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            answer = rejected("", f"not an AskRequest: {e}")
        data = msgspec.json.encode(answer) if as_json else client.wire.encode(answer)
        if msg.reply:
            await msg.respond(data)

    async def spawn(msg) -> None:     # one task per request: a slow answer blocks no other
        task = asyncio.create_task(reply(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return await client.bus.nc.subscribe(f"{client.bus.subjects.root}._ask", queue="ask", cb=spawn)


def rejected(request_id: str, reason: str, operator: str = "") -> Answer:
    where = f" ({operator})" if operator else ""
    return Answer(request_id=request_id, text=reason, outcome="rejected",
                  warnings=[f"failed{where}: {reason}"])


def job_event(job_id: str, msg) -> JobEvent | None:
    """A bus message about an ingest job as a JobEvent, or None if it says nothing new."""
    subject = msg.subject
    try:
        if ".indexed." in subject:
            done = msgspec.msgpack.decode(msg.data, type=Indexed)
            stage = {"put": "done", "unchanged": "unchanged", "delete": "deleted"}[done.action]
            note = f"{done.chunks} chunks" if done.action != "delete" else ""
            return JobEvent(job_id=job_id, stage=stage, note=note, done=1, total=1)
        if ".errors." in subject:
            failure = msgspec.msgpack.decode(msg.data, type=Failure)
            return JobEvent(job_id=job_id, stage="failed" if failure.final else "retrying",
                            note=failure.reason)
        progress = msgspec.msgpack.decode(msg.data, type=Progress)
    except (msgspec.DecodeError, KeyError):
        return None
    if progress.stage in (Stage.FAILED, Stage.DONE, Stage.CANCELLED):
        return None                            # the failure or the result says it better
    stage = STAGE_OF_OPERATOR.get(progress.operator, "queued")
    return JobEvent(job_id=job_id, stage=stage, note=progress.note, done=progress.done,
                    total=progress.total)


def new_request_id() -> str:
    return uuid.uuid4().hex
