"""Fitting a conversation into the context, and the JSON Schema of a tool choice."""
from __future__ import annotations

from typing import Callable

from operators.base import Reject
from schemas import ChatMessage, ToolSpec

NO_TOOL = "none"


def fit(messages: list[ChatMessage], budget: int,
        count: Callable[[list[ChatMessage]], int]) -> tuple[list[ChatMessage], int]:
    """Keep the system messages and the newest turns that fit in `budget` tokens.

    Returns the messages kept and how many were dropped; a conversation whose system
    prompt and last message alone do not fit is rejected with both sizes named."""
    system = [m for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    if not turns or not any(m.content.strip() for m in turns):
        raise Reject("empty prompt: no user message with any text")
    kept = [turns[-1]]
    if count(system + kept) > budget:
        raise Reject(f"prompt is {count(system + kept)} tokens with only the system prompt and "
                     f"the last message; the context leaves {budget} for the prompt")
    for message in reversed(turns[:-1]):
        if count(system + [message] + kept) > budget:
            break
        kept.insert(0, message)
    return system + kept, len(turns) - len(kept)


def tool_choice_schema(tools: list[ToolSpec], allow_none: bool = True) -> dict:
    """One JSON object naming a tool and its arguments, or (with allow_none) the explicit
    "none"."""
    options = [{"type": "object", "properties": {
        "tool": {"const": t.name}, "arguments": t.parameters or {"type": "object"}},
        "required": ["tool", "arguments"]} for t in tools]
    if allow_none:
        options.append({"type": "object", "properties": {"tool": {"const": NO_TOOL}},
                        "required": ["tool"]})
    return {"anyOf": options}


def tool_instructions(tools: list[ToolSpec]) -> ChatMessage:
    lines = [f"- {t.name}: {t.description}" for t in tools]
    return ChatMessage(role="system", content=(
        "You may call one of these tools when the user's request needs it:\n" + "\n".join(lines)
        + f'\nAnswer with JSON: {{"tool": NAME, "arguments": {{...}}}}, or {{"tool": "{NO_TOOL}"}} '
        "when no tool is needed (for example small talk or what you can answer yourself)."))
