"""Helpers for LLM tests: chats, prompts, and collecting an engine's stream."""
from __future__ import annotations

from operators.generate.engine import Delta, Prompt
from operators.generate.operator import GenerateConfig
from schemas import ChatMessage, GenerateRequest, ToolSpec

SMOL = "smollm2-135m"    # 98 MB, ~90 tok/s on 2 cores: the default for tests
QWEN = "qwen2.5-coder-1.5b"

WEATHER = ToolSpec(name="get_weather", description="current weather for a city",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]})


def config(model: str = SMOL, **kw) -> GenerateConfig:
    return GenerateConfig(model=model, **{"context_tokens": 2048, "threads": 2, **kw})


def chat(*turns: str, system: str = "") -> list[ChatMessage]:
    """Alternating user/assistant turns, starting with the user; a system prompt if given."""
    head = [ChatMessage(role="system", content=system)] if system else []
    return head + [ChatMessage(role=("user", "assistant")[i % 2], content=t)
                   for i, t in enumerate(turns)]


def prompt(*turns: str, system: str = "", **kw) -> Prompt:
    return Prompt(messages=chat(*turns, system=system), **{"temperature": 0.0, **kw})


def request(*turns: str, system: str = "", **kw) -> GenerateRequest:
    return GenerateRequest(request_id="r1", messages=chat(*turns, system=system), **kw)


async def collect(engine, p: Prompt) -> list[Delta]:
    return [d async for d in engine.stream(p)]


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)
