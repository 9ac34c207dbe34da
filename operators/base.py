"""The operator contract: one message in, an async generator of messages out.

An operator knows nothing of NATS. The runner (topology/runner.py) subscribes, decodes,
acks, traces and publishes; an in-memory harness (operators/testing.py) does the same in
unit tests. Exceptions tell the runner what to do:

    Exception            unexpected: retried when the input is durable, then dead-lettered
    ├── Reject           the input itself is bad: never retried, a Failure says why
    └── Busy             shed by a bounded queue: a "busy" Failure now, never a hang
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Generic, Protocol, TypeVar

import msgspec

from schemas import Message, ObjectRef

In = TypeVar("In", bound=Message)
Out = TypeVar("Out", bound=Message)


class Reject(Exception):
    """The message is bad input: retrying cannot help. The reason is shown to the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Busy(Exception):
    """Overloaded: the request is shed at once with this reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BlobStore(Protocol):
    """Large payloads: the JetStream Object Store in production, a dict in tests."""

    async def put_file(self, name: str, path: Path, content_type: str = "") -> ObjectRef: ...
    async def get_file(self, ref: ObjectRef, path: Path) -> Path: ...
    async def delete(self, ref: ObjectRef) -> None: ...


ProgressFn = Callable[[float, float, str], Awaitable[None]]


async def _no_progress(done: float, total: float, note: str) -> None:
    return None


class Context(msgspec.Struct, kw_only=True):
    """What an operator may know about the message it is processing."""

    operator: str
    job_id: str = ""
    session_id: str = ""
    deadline: float = 0.0       # absolute unix seconds; 0 means none
    attempt: int = 1
    blobs: Any = None           # a BlobStore
    scratch: Path = Path("/tmp")
    report: ProgressFn = _no_progress

    async def progress(self, done: float, total: float = 0.0, note: str = "") -> None:
        """Tell the world how far the job is (and keep a durable message alive)."""
        await self.report(done, total, note)

    def time_left(self, now: float | None = None) -> float | None:
        if not self.deadline:
            return None
        return self.deadline - (time.time() if now is None else now)


class NoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class Operator(Generic[In, Out]):
    """Subclass, set the class attributes, implement `process` as an async generator."""

    kind: ClassVar[str]
    input_type: ClassVar[type[Message]]
    output_type: ClassVar[type[Message]]
    Config: ClassVar[type[msgspec.Struct]] = NoConfig

    def __init__(self, name: str, config: msgspec.Struct | None = None, engine: Any = None):
        self.name = name
        self.config = config if config is not None else self.Config()
        self.engine = engine

    async def start(self) -> None:
        """Load models, open engines. Called once before the first message."""

    async def stop(self) -> None:
        """Release what start() took."""

    def process(self, msg: In, ctx: Context) -> AsyncIterator[Out]:
        raise NotImplementedError

    def cancellable(self, msg: In) -> bool:
        """Whether a Cancel for the message's session or job may stop its processing. Say
        False for bookkeeping that must not be lost (the voice agent's record of what the
        user heard arrives right after the Cancel it goes with)."""
        return True
