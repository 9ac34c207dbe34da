"""How messages reach a runner: a JetStream pull consumer (durable) or a core queue subscription.

Both hand the runner a `Delivery`; only the durable one can ack, nak, term and keep alive.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from typing import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout

log = logging.getLogger("patchwire.delivery")


class Delivery:
    """One received message. Core NATS: acks are no-ops and there is only one attempt."""

    durable = False

    def __init__(self, msg: Msg):
        self.msg = msg
        self.data = msg.data
        self.subject = msg.subject
        self.headers: dict[str, str] = dict(msg.headers or {})

    @property
    def attempt(self) -> int:
        return 1

    @property
    def stream_seq(self) -> int:
        return 0

    async def ack(self) -> None: ...
    async def nak(self, delay: float) -> None: ...
    async def term(self) -> None: ...
    async def in_progress(self) -> None: ...


class DurableDelivery(Delivery):
    durable = True

    def __init__(self, msg: Msg):
        super().__init__(msg)
        self.meta = msg.metadata

    @property
    def attempt(self) -> int:
        return self.meta.num_delivered

    @property
    def stream_seq(self) -> int:
        return self.meta.sequence.stream

    async def ack(self) -> None:
        await self.msg.ack()

    async def nak(self, delay: float) -> None:
        await self.msg.nak(delay=delay)

    async def term(self) -> None:
        await self.msg.term()

    async def in_progress(self) -> None:
        await self.msg.in_progress()


Handler = Callable[[Delivery], Awaitable[None]]


class Inflight:
    """Bounded in-flight work: a semaphore plus references to every task (none is lost)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task] = set()

    def free(self) -> int:
        return self.limit - len(self.tasks)

    async def spawn(self, handler: Handler, delivery: Delivery) -> None:
        await self.slots.acquire()
        task = asyncio.create_task(handler(delivery))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("handler crashed: %r", task.exception())

    async def wait(self, grace: float) -> None:
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in pending:  # not acked: a durable message is redelivered elsewhere
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)


async def pull_loop(psub, handler: Handler, inflight: Inflight, stopping: asyncio.Event) -> None:
    """Fetch as many messages as there are free slots; replicas share the durable consumer.
    Errors from the server (a restart, a reconnect) are logged and retried, never fatal."""
    try:
        while not stopping.is_set():
            await inflight.slots.acquire()  # wait for a free slot before fetching
            inflight.slots.release()
            if stopping.is_set():
                break
            try:
                msgs = await psub.fetch(batch=max(1, inflight.free()), timeout=1.0)
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            except Exception as e:
                log.warning("fetch failed, retrying in 1 s: %r", e)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await inflight.spawn(handler, DurableDelivery(msg))
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()


class RealtimeQueue:
    """Core subscription feeding a bounded queue; when full, the oldest frame is dropped and counted."""

    def __init__(self, size: int):
        self.queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    async def on_msg(self, msg: Msg) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # stale audio is worth less than fresh audio
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("%s: dropped %d stale messages (queue full)", msg.subject, self.dropped)
        self.queue.put_nowait(msg)

    async def work(self, handler: Handler) -> None:
        while True:
            msg = await self.queue.get()
            try:
                await handler(Delivery(msg))
            except Exception as e:  # one bad frame must not end this worker
                log.error("%s: handler failed: %r", msg.subject, e)
            except BaseException as e:
                log.error("%s: worker ends (%r) while handling a message", msg.subject, e)
                raise

    async def wait_empty(self, grace: float) -> None:
        end = time.monotonic() + grace
        while not self.queue.empty() and time.monotonic() < end:
            await asyncio.sleep(0.05)


class OrderedRealtimeQueue:
    """Realtime messages sharded by session over one queue and worker each: a session's frames
    are handled in arrival order, never two at once, while other sessions go on in the other
    shards. Each shard drops its oldest message when full, as RealtimeQueue does.

    A message with the header Pw-Priority: immediate skips its session's line (it goes to a
    lane of its own): bookkeeping that must not wait behind a long piece of work, such as
    the gateway telling the agent what the user heard of a reply it is cancelling."""

    def __init__(self, size: int, shards: int):
        self.shards = [RealtimeQueue(size) for _ in range(max(1, shards))]
        self.immediate = RealtimeQueue(size)

    @property
    def dropped(self) -> int:
        return sum(q.dropped for q in self.shards) + self.immediate.dropped

    def shard(self, msg: Msg) -> RealtimeQueue:
        key = (msg.headers or {}).get("Pw-Session") or msg.subject.rpartition(".")[2]
        return self.shards[zlib.crc32(key.encode()) % len(self.shards)]

    async def on_msg(self, msg: Msg) -> None:
        if (msg.headers or {}).get("Pw-Priority") == "immediate":
            return await self.immediate.on_msg(msg)
        await self.shard(msg).on_msg(msg)

    async def work_shard(self, index: int, handler: Handler) -> None:
        await self.shards[index].work(handler)

    async def wait_empty(self, grace: float) -> None:
        end = time.monotonic() + grace
        for q in [*self.shards, self.immediate]:
            await q.wait_empty(max(0.0, end - time.monotonic()))

