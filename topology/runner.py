"""The runner binds one operator to the bus: decode, trace, process, publish, ack - and never dies.

For each message: header and typed decode checks (one reused Decoder), deadline check,
`process()` under a watchdog that keeps a durable message alive while the operator reports
progress, each output published as it is yielded (ids derived from the input, so a
redelivered job writes nothing twice: topology/publish.py), then ack. Anything that goes
wrong becomes a `Failure` on the topology's errors edge and the runner keeps serving:

    bad headers / undecodable / wrong type / unknown tag -> bad_message, dead-lettered
    Reject                                  -> bad_input, dead-lettered (retrying cannot help)
    deadline passed                         -> deadline, dead-lettered
    any other exception, or no progress     -> retried with backoff; dead-lettered at max_deliver
    asyncio.CancelledError (shutdown)       -> propagates; the message is not acked
A failure that could not be stored is not terminated: the message is redelivered instead.
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

from operators.base import Busy, Context, Reject
from schemas import Cancel, FailureCategory, Headers, Message, Stage, decoder
from topology import tracing
from topology.bus import Bus
from topology.delivery import Delivery, Inflight, OrderedRealtimeQueue, RealtimeQueue, pull_loop
from topology.graph import Bound
from topology.publish import Publisher
from topology.spec import Mode, TopologySpec
from topology.subjects import valid_token

log = logging.getLogger("patchwire.runner")
RECANCEL_S = 0.25  # a Cancel the work did not see is repeated this often


class OperatorRunner:
    def __init__(self, bound: Bound, topo: TopologySpec, bus: Bus, blobs, scratch: Path | None = None):
        self.bound, self.spec, self.topo, self.bus, self.blobs = bound, bound.spec, topo, bus, blobs
        self.scratch = scratch or Path(tempfile.gettempdir())
        engine = bound.engine_factory(bound.config) if bound.engine_factory else None
        self.op = bound.cls(self.spec.name, bound.config, engine)
        self.decoder = decoder(bound.cls.input_type)
        self.out = Publisher(bus, topo, self.spec.name, self.spec.output, bound.output_mode)
        self.tracer = trace.get_tracer("patchwire.runner")
        self.inflight = Inflight(self.spec.concurrency)
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.sub = None
        self.control = None
        self.realtime: RealtimeQueue | OrderedRealtimeQueue | None = None
        self.working: dict[str, set[asyncio.Task]] = {}   # session/job id -> its handlers
        self.cancelled: set[asyncio.Task] = set()          # cancelled by a Cancel, not shutdown
        self.turn_of: dict[asyncio.Task, int] = {}         # the turn a handler works on, if any

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.op.start()
        self.control = await self.bus.nc.subscribe(f"{self.bus.subjects.root}._cancel.>",
                                                   cb=self._on_cancel)
        await self.bus.nc.flush()  # a Cancel sent right after start must not miss us
        if self.bound.input_mode is Mode.DURABLE:
            psub = await self._consumer()
            self.tasks.append(asyncio.create_task(
                pull_loop(psub, self._handle, self.inflight, self.stopping), name=f"{self.spec.name}:pull"))
            return
        if self.spec.ordered:
            self.realtime = OrderedRealtimeQueue(self.spec.queue, self.spec.concurrency)
        else:
            self.realtime = RealtimeQueue(self.spec.queue)
        self.sub = await self.bus.nc.subscribe(self.bus.subjects.edge_filter(self.spec.input),
                                               queue=self.spec.name, cb=self.realtime.on_msg)
        await self.bus.nc.flush()  # the server knows the subscription before we say "serving"
        for i in range(self.spec.concurrency):
            work = (self.realtime.work_shard(i, self._handle) if self.spec.ordered
                    else self.realtime.work(self._handle))
            self.tasks.append(asyncio.create_task(work, name=f"{self.spec.name}:worker{i}"))
        if self.spec.ordered:
            self.tasks.append(asyncio.create_task(self.realtime.immediate.work(self._handle),
                                                  name=f"{self.spec.name}:immediate"))

    async def _consumer(self):
        """Create or update the durable consumer (its config follows the YAML), then bind to it."""
        d = self.topo.durability
        stream = self.bus.stream_for(self.topo, self.spec.input)
        await self.bus.js.add_consumer(stream, api.ConsumerConfig(
            durable_name=self.spec.name, filter_subject=self.bus.subjects.edge_filter(self.spec.input),
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=d.ack_wait_s, max_deliver=d.max_deliver,
            max_ack_pending=max(64, self.spec.concurrency * 16)))
        return await self.bus.js.pull_subscribe_bind(durable=self.spec.name, stream=stream)

    async def stop(self) -> None:
        """Drain: stop taking messages, let in-flight ones finish (up to the grace), then stop."""
        self.stopping.set()
        for sub in (self.control,):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()
        if self.realtime is not None:
            await self.realtime.wait_empty(self.spec.shutdown_grace_s)
        if self.bound.input_mode is Mode.DURABLE:  # the pull loop ends within one fetch
            await asyncio.wait(self.tasks, timeout=5)
        await self.inflight.wait(self.spec.shutdown_grace_s)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.op.stop()

    # -- one message -------------------------------------------------------------------------
    async def _handle(self, d: Delivery) -> None:
        job = d.headers.get(Headers.JOB, "")
        with tracing.operator_span(self.tracer, self.spec.name, d.subject, d.headers, job_id=job,
                                   attempt=d.attempt, topology=self.topo.name,
                                   session=d.headers.get(Headers.SESSION, "")):
            problem = _header_problem(d.headers)
            if problem:
                d.headers.pop(Headers.JOB, None)  # never put a bad token into a subject
                return await self._give_up(d, FailureCategory.BAD_MESSAGE, problem)
            try:
                msg = self.decoder.decode(d.data)
            except msgspec.DecodeError as e:
                expected = self.bound.cls.input_type.__name__
                return await self._give_up(d, FailureCategory.BAD_MESSAGE, f"cannot decode as {expected}: {e}")
            deadline = _float(d.headers.get(Headers.DEADLINE))
            if deadline and time.time() > deadline:
                late = time.time() - deadline
                return await self._give_up(d, FailureCategory.DEADLINE, f"deadline passed {late:.3f} s ago")
            task = asyncio.current_task()
            if self.op.cancellable(msg):
                self._cancellable(task, [k for k in (job, d.headers.get(Headers.SESSION, "")) if k],
                                  getattr(msg, "turn", None))
            try:
                await self._run(d, msg, job, deadline)
            except asyncio.CancelledError:
                if task not in self.cancelled or self.stopping.is_set():
                    raise
                while task.cancelling():  # a late Cancel: the work is over, the worker serves on
                    task.uncancel()
            finally:
                self._done_cancellable(task)

    def _cancellable(self, task: asyncio.Task, keys: list[str], turn: int | None = None) -> None:
        for key in keys:
            self.working.setdefault(key, set()).add(task)
        if isinstance(turn, int):
            self.turn_of[task] = turn

    def _done_cancellable(self, task: asyncio.Task) -> None:
        """From here on a Cancel cannot reach this message's work (it is finished)."""
        self.cancelled.discard(task)
        self.turn_of.pop(task, None)
        for key in [k for k, tasks in self.working.items() if task in tasks]:
            self.working[key].discard(task)
            if not self.working[key]:
                del self.working[key]

    async def _on_cancel(self, msg) -> None:
        """A Cancel for a session or job stops its work here at once (barge-in)."""
        try:
            cancel = msgspec.msgpack.decode(msg.data, type=Cancel)
        except msgspec.DecodeError:
            log.warning("%s: undecodable Cancel on %s", self.spec.name, msg.subject)
            return
        if cancel.operators and self.spec.name not in cancel.operators:
            return
        tasks = {t for key in (cancel.session_id, cancel.job_id) if key
                 for t in self.working.get(key, ())
                 if not cancel.before_turn or self.turn_of.get(t, -1) < cancel.before_turn}
        for task in tasks - self.cancelled:  # once each, however many ids match
            self.cancelled.add(task)
            task.cancel()
            asyncio.get_running_loop().call_later(RECANCEL_S, self._recancel, task)

    def _recancel(self, task: asyncio.Task) -> None:
        """Python 3.11's asyncio.wait_for (inside nats-py's request, so every JetStream publish)
        swallows a cancel that lands just as its future completes; the work then carries on as
        if never told. Until the task has seen its Cancel, say it again."""
        if task in self.cancelled and not task.done():
            task.cancel()
            asyncio.get_running_loop().call_later(RECANCEL_S, self._recancel, task)

    async def _run(self, d: Delivery, msg: Message, job: str, deadline: float) -> None:
        watchdog = Watchdog(d, self.topo.durability) if d.durable else None
        try:
            await self.out.progress(d, Stage.STARTED)
            index = 0
            async with contextlib.aclosing(self.op.process(msg, self._context(d, job, deadline, watchdog))) as outputs:
                async for out in outputs:
                    await self.out.output_msg(out, d, index)
                    index += 1
        except Reject as e:
            await self._give_up(d, FailureCategory.BAD_INPUT, e.reason)
        except Busy as e:
            await self._shed(d, e.reason)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task in self.cancelled and not self.stopping.is_set():  # asked for: over, not failed
                self._done_cancellable(task)
                while task.cancelling():  # a swallowed first cancel and its repeat
                    task.uncancel()
                await self.out.progress(d, Stage.CANCELLED)
                await d.ack()
            elif watchdog is not None and watchdog.fired:
                task.uncancel()
                await self._retry_or_give_up(d, f"no progress for {watchdog.stall_s:.0f} s")
            else:
                raise
        except Exception as e:  # the runner keeps serving whatever the operator does
            await self._retry_or_give_up(d, f"{type(e).__name__}: {e}")
        else:
            self._done_cancellable(asyncio.current_task())
            await self.out.progress(d, Stage.DONE)
            await d.ack()
        finally:
            if watchdog is not None:
                watchdog.stop()

    async def _give_up(self, d: Delivery, category: FailureCategory, reason: str) -> None:
        """A permanent failure: report, dead-letter, terminate (or redeliver if unreported)."""
        if await self.out.failure(d, category, reason, dead=True):
            await d.term()
        else:
            await d.nak(delay=self.topo.durability.backoff(1, empty=1.0))

    async def _shed(self, d: Delivery, reason: str) -> None:
        """Overload: realtime work is dropped with a busy Failure; durable work comes back later."""
        if not d.durable or d.attempt >= self.topo.durability.max_deliver:
            return await self._give_up(d, FailureCategory.BUSY, reason)
        await self.out.failure(d, FailureCategory.BUSY, reason, final=False)
        await d.nak(delay=self.topo.durability.backoff(len(self.topo.durability.backoff_s), empty=1.0))

    async def _retry_or_give_up(self, d: Delivery, reason: str) -> None:
        conf = self.topo.durability
        final = not d.durable or d.attempt >= conf.max_deliver
        log.warning("%s: attempt %d failed: %s", self.spec.name, d.attempt, reason)
        if final:
            return await self._give_up(d, FailureCategory.OPERATOR_ERROR, reason)
        await self.out.failure(d, FailureCategory.OPERATOR_ERROR, reason, final=False)
        await self.out.progress(d, Stage.RETRYING, note=reason)
        await d.nak(delay=conf.backoff(d.attempt))

    def _context(self, d: Delivery, job: str, deadline: float, watchdog: "Watchdog | None") -> Context:
        async def report(done: float, total: float, note: str) -> None:
            if watchdog is not None:
                watchdog.progressed()
            await self.out.progress(d, Stage.PROGRESS, done, total, note)

        return Context(operator=self.spec.name, job_id=job, deadline=deadline,
                       session_id=d.headers.get(Headers.SESSION, ""), attempt=d.attempt,
                       blobs=self.blobs, scratch=self.scratch, report=report)


class Watchdog:
    """Keeps a durable message alive (in_progress every ack_wait/3) while its operator shows
    progress; after stall_s without any, cancels the attempt so it is retried elsewhere."""

    def __init__(self, d: Delivery, durability):
        self.d, self.stall_s, self.fired = d, durability.stall_s, False
        self.period = max(0.5, durability.ack_wait_s / 3)
        self.last = time.monotonic()
        self.owner = asyncio.current_task()
        self.task = asyncio.create_task(self._loop())

    def progressed(self) -> None:
        self.last = time.monotonic()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            if self.stall_s and time.monotonic() - self.last > self.stall_s:
                self.fired = True
                self.owner.cancel()
                return
            with contextlib.suppress(Exception):
                await self.d.in_progress()

    def stop(self) -> None:
        self.task.cancel()


def _header_problem(headers: dict[str, str]) -> str:
    for name in (Headers.JOB, Headers.SESSION):
        value = headers.get(name)
        if value and not valid_token(value):
            return f"header {name} {value[:80]!r} is not a valid id (letters, digits, '_' and '-')"
    return ""


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0
