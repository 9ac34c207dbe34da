"""What the generate operator needs from an LLM engine, and the bounded queue in front of it.

An engine streams `Delta`s for one `Prompt`. Stopping iteration (aclose, or cancellation of
the consuming task) must stop generation within one token and free the engine's slot:
barge-in in the voice agent depends on it.

    embedded   llama-cpp-python in this process (operators/generate/llama.py)
    openai     any OpenAI-compatible server: vLLM, TGI, Triton, llama.cpp (operators/generate/openai.py)
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Protocol

import msgspec

from operators.base import Busy
from schemas import ChatMessage, Usage


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    messages: list[ChatMessage]
    json_schema: dict[str, Any] | None = None   # constrain the output to this schema (grammar)
    max_tokens: int = 512
    temperature: float = 0.2
    stop: list[str] = []
    session_id: str = ""                        # engines may keep this session's prefix cached


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    """Some text of the answer; the last one carries finish_reason and usage."""

    text: str = ""
    finish_reason: str = ""                     # "stop" | "length" on the last delta
    usage: Usage | None = None


class LlmEngine(Protocol):
    model: str
    context_tokens: int

    def stream(self, prompt: Prompt) -> AsyncIterator[Delta]: ...
    def count_tokens(self, messages: list[ChatMessage]) -> int: ...
    async def close(self) -> None: ...


class EngineQueue:
    """At most `slots` generations at once and `waiting` more in line; past that, Busy at once
    (a clear failure, never a request left hanging)."""

    def __init__(self, slots: int = 1, waiting: int = 4):
        self.slots = asyncio.Semaphore(slots)
        self.waiting, self.queued = waiting, 0

    @contextlib.asynccontextmanager
    async def slot(self, timeout: float | None = None):
        if self.slots.locked() and self.queued >= self.waiting:
            raise Busy(f"engine busy: {self.queued} requests already waiting")
        self.queued += 1
        try:  # asyncio.timeout, not wait_for: wait_for may swallow a cancel that races the acquire
            async with asyncio.timeout(timeout):
                await self.slots.acquire()
        except TimeoutError:
            raise Busy(f"engine busy: no slot within {timeout:.1f} s (deadline)") from None
        finally:
            self.queued -= 1
        try:
            yield
        finally:
            self.slots.release()
