"""Operators that misbehave on purpose, for the runner's failure tests."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from operators.base import Context, Operator, Reject
from schemas import Ping, UserTurn


class Crasher(Operator[Ping, Ping]):
    """Always raises: must end dead-lettered after max_deliver attempts."""

    kind = "crasher"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        raise RuntimeError(f"boom on seq {msg.seq}")
        yield msg


class Rejecter(Operator[Ping, Ping]):
    kind = "rejecter"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        if msg.seq < 0:
            raise Reject(f"negative seq {msg.seq}")
        yield msg


class Flaky(Operator[Ping, Ping]):
    """Fails on the first attempt, succeeds on the next."""

    kind = "flaky"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        if ctx.attempt == 1:
            raise ConnectionError("transient")
        yield msg


class SlowTail(Operator[Ping, Ping]):
    """Yields its output at once, then works on for `seq` tenths of a second before it acks:
    a kill in that window leaves a published output and an unacked input."""

    kind = "slowtail"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        yield Ping(seq=msg.seq, payload=b"done")
        await asyncio.sleep(msg.seq / 10)


class Suicide(Operator[Ping, Ping]):
    """Kills its own process on every message: the runner never sees an exception."""

    kind = "suicide"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        import os
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
        yield msg


class Splitter(Operator[Ping, Ping]):
    """Fans one message out into `seq` messages."""

    kind = "splitter"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        for i in range(msg.seq):
            yield Ping(seq=i)


class Hang(Operator[Ping, Ping]):
    """Never finishes and never reports progress."""

    kind = "hang"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        await asyncio.Event().wait()
        yield msg


class Waiter(Operator[Ping, Ping]):
    """Yields once, then waits forever; records which keys were stopped."""

    kind = "waiter"
    input_type = Ping
    output_type = Ping
    stopped: list[str] = []

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        try:  # the cancel may land while the runner is still publishing the first output
            yield msg
            await asyncio.Event().wait()
        finally:
            Waiter.stopped.append(ctx.session_id or ctx.job_id)


class Swallower(Operator[Ping, Ping]):
    """Yields, then swallows the first cancel the way Python 3.11's asyncio.wait_for does when
    its future completes at the same moment, and waits again."""

    kind = "swallower"
    input_type = Ping
    output_type = Ping
    stopped: list[str] = []

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        if msg.seq != 1:  # only the first message waits
            yield msg
            return
        try:
            yield msg
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass
            await asyncio.Event().wait()
        finally:
            Swallower.stopped.append(ctx.session_id or ctx.job_id)


class TurnSleeper(Operator[UserTurn, UserTurn]):
    """Works for `len(text)` tenths of a second on a user turn, then echoes it."""

    kind = "turn_sleeper"
    input_type = UserTurn
    output_type = UserTurn

    async def process(self, msg: UserTurn, ctx: Context) -> AsyncIterator[UserTurn]:
        await asyncio.sleep(len(msg.text) / 10)
        yield msg


class Jittery(Operator[Ping, Ping]):
    """Sleeps a pseudo-random time per message, then echoes it: without ordering, a session's
    later messages overtake earlier ones."""

    kind = "jittery"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        await asyncio.sleep(((msg.seq * 7919) % 10) / 200)
        yield Ping(seq=msg.seq, payload=ctx.session_id.encode())


class Sleeper(Operator[Ping, Ping]):
    """Works for `seq` tenths of a second, then yields: something for a Cancel to stop."""

    kind = "sleeper"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        await asyncio.sleep(msg.seq / 10)
        yield msg
