"""The runner binds one operator to the bus: decode, trace, process, publish, ack - and never dies.

For each message: typed decode (one reused Decoder), deadline check, `process()` with a
keep-alive for long durable work, publish each output as it is yielded (job-keyed
Nats-Msg-Id, so a redelivered job writes nothing twice), then ack. Anything that goes wrong
becomes a `Failure` on the topology's errors edge and the runner keeps serving:

    undecodable / wrong type / unknown tag  -> bad_message, terminated (retrying cannot help)
    Reject                                  -> bad_input, terminated and dead-lettered
    deadline passed                         -> deadline, terminated
    any other exception (durable)           -> retried with backoff; dead-lettered at max_deliver
    asyncio.CancelledError                  -> propagates; the message is not acked
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path

import msgspec
from nats.js import api
from opentelemetry import trace

from operators.base import Context, Reject
from schemas import (Failure, FailureCategory, Headers, Message, Progress, Stage, decoder,
                     encoder)
from topology import tracing
from topology.bus import Bus
from topology.delivery import Delivery, Inflight, RealtimeQueue, pull_loop
from topology.graph import Bound
from topology.spec import Mode, TopologySpec
from topology.subjects import NO_KEY

log = logging.getLogger("patchwire.runner")
PROPAGATED = (Headers.JOB, Headers.SESSION, Headers.DEADLINE, Headers.PART)


class OperatorRunner:
    def __init__(self, bound: Bound, topo: TopologySpec, bus: Bus, blobs, scratch: Path | None = None):
        self.bound = bound
        self.spec = bound.spec
        self.topo = topo
        self.bus = bus
        self.blobs = blobs
        self.subjects = bus.subjects
        self.scratch = scratch or Path(tempfile.gettempdir())
        engine = bound.engine_factory(bound.config) if bound.engine_factory else None
        self.op = bound.cls(self.spec.name, bound.config, engine)
        self.decoder = decoder(bound.cls.input_type)
        self.encoder = encoder()
        self.tracer = trace.get_tracer("patchwire.runner")
        self.inflight = Inflight(self.spec.concurrency)
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.sub = None
        self.realtime: RealtimeQueue | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.op.start()
        edge = self.spec.input
        if self.bound.input_mode is Mode.DURABLE:
            self.tasks.append(asyncio.create_task(self._pull(edge), name=f"{self.spec.name}:pull"))
        else:
            self.realtime = RealtimeQueue(self.spec.queue)
            self.sub = await self.bus.nc.subscribe(
                self.subjects.edge_filter(edge), queue=self.spec.name, cb=self.realtime.on_msg)
            for i in range(self.spec.concurrency):
                self.tasks.append(asyncio.create_task(self.realtime.work(self._handle),
                                                      name=f"{self.spec.name}:worker{i}"))

    async def _pull(self, edge: str) -> None:
        d = self.topo.durability
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=d.ack_wait_s, max_deliver=d.max_deliver,
            max_ack_pending=max(64, self.spec.concurrency * 16))
        await pull_loop(self.bus.js, self.bus.stream_for(self.topo, edge),
                        self.subjects.edge_filter(edge), self.spec.name, config,
                        self._handle, self.inflight, self.stopping)

    async def stop(self) -> None:
        """Drain: stop taking messages, let in-flight ones finish (up to the grace), then stop."""
        self.stopping.set()
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()
        if self.realtime is not None:
            await _wait_empty(self.realtime.queue, self.spec.shutdown_grace_s)
        await self.inflight.wait(self.spec.shutdown_grace_s)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.op.stop()

    # -- one message -------------------------------------------------------------------------
    async def _handle(self, d: Delivery) -> None:
        job = d.headers.get(Headers.JOB, "")
        with tracing.operator_span(self.tracer, self.spec.name, d.subject, d.headers,
                                   job_id=job, attempt=d.attempt, topology=self.topo.name,
                                   session=d.headers.get(Headers.SESSION, "")):
            try:
                msg = self.decoder.decode(d.data)
            except msgspec.DecodeError as e:
                expected = self.bound.cls.input_type.__name__
                await self._fail(d, FailureCategory.BAD_MESSAGE, f"cannot decode as {expected}: {e}")
                return await d.term()
            deadline = _float(d.headers.get(Headers.DEADLINE))
            if deadline and time.time() > deadline:
                await self._fail(d, FailureCategory.DEADLINE, f"deadline passed {time.time() - deadline:.3f} s ago")
                return await d.term()
            await self._run(d, msg, job, deadline)

    async def _run(self, d: Delivery, msg: Message, job: str, deadline: float) -> None:
        ctx = self._context(d, job, deadline)
        keepalive = asyncio.create_task(self._keepalive(d)) if d.durable else None
        await self._progress(d, job, Stage.STARTED)
        try:
            index = 0
            async for out in self.op.process(msg, ctx):
                await self._emit(out, d.headers, index)
                index += 1
        except Reject as e:
            await self._fail(d, FailureCategory.BAD_INPUT, e.reason, dead=True)
            await d.term()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the runner keeps serving whatever the operator does
            await self._retry_or_give_up(d, f"{type(e).__name__}: {e}")
        else:
            await self._progress(d, job, Stage.DONE)
            await d.ack()
        finally:
            if keepalive is not None:
                keepalive.cancel()

    async def _retry_or_give_up(self, d: Delivery, reason: str) -> None:
        d_conf = self.topo.durability
        final = not d.durable or d.attempt >= d_conf.max_deliver
        log.warning("%s: attempt %d failed: %s", self.spec.name, d.attempt, reason)
        await self._fail(d, FailureCategory.OPERATOR_ERROR, reason, final=final, dead=final and d.durable)
        if final:
            return await d.term()
        backoff = d_conf.backoff_s[min(d.attempt, len(d_conf.backoff_s)) - 1] if d_conf.backoff_s else 0
        await self._progress(d, d.headers.get(Headers.JOB, ""), Stage.RETRYING, note=reason)
        await d.nak(delay=backoff)

    def _context(self, d: Delivery, job: str, deadline: float) -> Context:
        async def report(done: float, total: float, note: str) -> None:
            await self._progress(d, job, Stage.PROGRESS, done, total, note)
            await d.in_progress()

        return Context(operator=self.spec.name, job_id=job, deadline=deadline,
                       session_id=d.headers.get(Headers.SESSION, ""), attempt=d.attempt,
                       blobs=self.blobs, scratch=self.scratch, report=report)

    async def _keepalive(self, d: Delivery) -> None:
        """Long work: tell JetStream we are alive well before ack_wait runs out."""
        period = max(0.5, self.topo.durability.ack_wait_s / 3)
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await d.in_progress()

    # -- output ------------------------------------------------------------------------------
    async def _emit(self, out: Message, in_headers: dict[str, str], index: int) -> None:
        if self.spec.output is None:
            return
        headers = {k: in_headers[k] for k in PROPAGATED if k in in_headers}
        part = in_headers.get(Headers.PART, "")
        if index:
            part = f"{part}.{index}" if part else str(index)
            headers[Headers.PART] = part
        key = in_headers.get(Headers.JOB) or in_headers.get(Headers.SESSION) or NO_KEY
        tracing.inject(headers)
        data = self.encoder.encode(out)
        subject = self.subjects.edge(self.spec.output, key)
        if self.bound.output_mode is Mode.DURABLE:
            job = in_headers.get(Headers.JOB, NO_KEY)
            headers[Headers.MSG_ID] = f"{job}:{self.spec.name}" + (f":{part}" if part else "")
            await self.bus.js.publish(subject, data, headers=headers)
        else:
            await self.bus.nc.publish(subject, data, headers=headers)

    async def _fail(self, d: Delivery, category: FailureCategory, reason: str,
                    final: bool = True, dead: bool = False) -> None:
        job = d.headers.get(Headers.JOB, "")
        failure = Failure(category=category, operator=self.spec.name, reason=reason,
                          subject=d.subject, job_id=job, msg_id=d.headers.get(Headers.MSG_ID, ""),
                          stream_seq=d.stream_seq, attempt=d.attempt, final=final, time=time.time())
        data = self.encoder.encode(failure)
        headers = {k: d.headers[k] for k in PROPAGATED if k in d.headers}
        tracing.inject(headers)
        with contextlib.suppress(Exception):  # reporting a failure must not become one
            await self.bus.nc.publish(self.subjects.edge(self.topo.errors, job), data, headers=headers)
            if dead:
                await self._dead_letter(failure, d)
            if final and job:
                await self._progress(d, job, Stage.FAILED, note=reason)

    async def _dead_letter(self, failure: Failure, d: Delivery) -> None:
        headers = {"Pw-Reason": failure.reason[:1000].replace("\n", " "),
                   "Pw-Category": failure.category.value, "Pw-Subject": d.subject,
                   Headers.MSG_ID: f"dead:{d.subject}:{d.stream_seq or d.headers.get(Headers.MSG_ID, '')}"}
        headers.update({k: d.headers[k] for k in PROPAGATED if k in d.headers})
        await self.bus.js.publish(self.subjects.dead_letter(self.spec.name), d.data, headers=headers)

    async def _progress(self, d: Delivery, job: str, stage: Stage, done: float = 0.0,
                        total: float = 0.0, note: str = "") -> None:
        if not job or not d.durable:
            return
        event = Progress(job_id=job, operator=self.spec.name, stage=stage, done=done,
                         total=total, note=note, attempt=d.attempt, time=time.time())
        await self.bus.nc.publish(self.subjects.progress(job), self.encoder.encode(event))


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


async def _wait_empty(queue: asyncio.Queue, grace: float) -> None:
    end = time.monotonic() + grace
    while not queue.empty() and time.monotonic() < end:
        await asyncio.sleep(0.05)
