"""Generation: a prompt in (conversation, tools, output schema); tokens, sentences, a JSON
object or a tool call out. The session id travels in the headers, as everywhere."""
from __future__ import annotations

import enum
from typing import Any, Union

import msgspec

from schemas.base import Message


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: str                  # "system" | "user" | "assistant" | "tool"
    content: str
    name: str = ""             # the tool's name, for role "tool"


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] = {}   # JSON Schema of the arguments


class GenerateRequest(Message, frozen=True):
    request_id: str
    messages: list[ChatMessage]
    tools: list[ToolSpec] = []
    output_schema: dict[str, Any] | None = None  # JSON Schema the answer must decode into
    max_tokens: int = 512
    temperature: float = 0.2
    stop: list[str] = []


class FinishReason(str, enum.Enum):
    STOP = "stop"              # the model ended its answer
    LENGTH = "length"          # max_tokens reached
    TOOL = "tool_call"         # a tool call instead of an answer
    CANCELLED = "cancelled"    # a Cancel for the session arrived


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    cached_tokens: int = 0     # prompt tokens reused from the KV cache (not evaluated again)
    completion_tokens: int = 0
    ttft_s: float = 0.0        # time to first token
    tokens_per_s: float = 0.0  # completion tokens / generation time


class TokenDelta(Message, frozen=True):
    request_id: str
    index: int
    text: str


class SentenceDelta(Message, frozen=True):
    """A finished sentence of the answer, so speech can start before the answer ends."""

    request_id: str
    index: int
    text: str


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: dict[str, Any] = {}


class GenerateResult(Message, frozen=True):
    request_id: str
    text: str = ""
    json: Any = None                 # the decoded object when output_schema was given
    tool_call: ToolCall | None = None
    finish_reason: FinishReason = FinishReason.STOP
    usage: Usage = Usage()
    model: str = ""
    warnings: list[str] = []


GenerateEvent = Union[TokenDelta, SentenceDelta, GenerateResult]
