"""One LLM per process for the operators that need one: rewrite and answer of the document
QA flow share the model instead of loading it twice (a 1.5B model is 2 GB of RAM).

Engines are keyed by everything that makes them different (model, file, context size,
threads, server); each operator gets a handle whose close() releases its share, and the
last close closes the engine. The engine serialises generations itself (one worker thread).
"""
from __future__ import annotations

from typing import Annotated, Any, AsyncIterator

import msgspec

from operators.generate.engine import Delta, Prompt
from operators.generate.operator import GenerateConfig
from schemas import ChatMessage

_engines: dict[tuple, tuple[Any, int]] = {}


class LlmSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The LLM part of an operator's config; operators that share the model inherit it."""

    model: str = "qwen2.5-coder-0.5b"    # a name in operators/models.py (embedded engine)
    gguf: str = ""                        # or any GGUF file
    context_tokens: Annotated[int, msgspec.Meta(ge=512)] = 4096
    threads: Annotated[int, msgspec.Meta(ge=1)] = 2
    base_url: str = ""                    # openai engine: e.g. http://127.0.0.1:8000/v1
    served_model: str = ""


def generate_config(config: Any) -> GenerateConfig:
    """The LLM part of an operator's config (fields of the same names), as a GenerateConfig."""
    names = ("model", "gguf", "context_tokens", "threads", "base_url", "api_key_env",
             "served_model")
    return GenerateConfig(**{n: getattr(config, n) for n in names if hasattr(config, n)})


class SharedLlm:
    """A handle on a shared engine: the LlmEngine protocol, plus load()."""

    def __init__(self, key: tuple, engine: Any):
        self._key, self._engine, self._closed = key, engine, False
        self.model, self.context_tokens = engine.model, engine.context_tokens

    async def load(self) -> None:
        if hasattr(self._engine, "load"):
            await self._engine.load()

    def stream(self, prompt: Prompt) -> AsyncIterator[Delta]:
        return self._engine.stream(prompt)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self._engine.count_tokens(messages)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        engine, users = _engines[self._key]
        if users > 1:
            _engines[self._key] = (engine, users - 1)
            return
        del _engines[self._key]
        await engine.close()


def _shared(kind: str, config: Any) -> SharedLlm:
    gen = generate_config(config)
    key = (kind, gen.model, gen.gguf, gen.context_tokens, gen.threads, gen.base_url,
           gen.served_model)
    if key in _engines:
        engine, users = _engines[key]
    else:
        if kind == "openai":
            from operators.generate.openai import OpenAiEngine
            engine, users = OpenAiEngine(gen), 0
        else:
            from operators.generate.llama import LlamaEngine
            engine, users = LlamaEngine(gen), 0
    _engines[key] = (engine, users + 1)
    return SharedLlm(key, engine)


def shared_llama(config: Any) -> SharedLlm:
    return _shared("embedded", config)


def shared_openai(config: Any) -> SharedLlm:
    return _shared("openai", config)


async def complete(engine: Any, prompt: Prompt) -> tuple[str, Delta]:
    """The whole text of one generation and its last delta (finish reason, usage)."""
    parts, last = [], Delta()
    stream = engine.stream(prompt)
    try:
        async for delta in stream:
            parts.append(delta.text)
            last = delta
    finally:
        await stream.aclose()
    return "".join(parts), last
