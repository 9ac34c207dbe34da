"""The openai engine: any OpenAI-compatible chat completions server (vLLM, TGI, Triton's
OpenAI front end, llama.cpp's server, llama-cpp-python's server, a hosted API).

One streamed POST {base_url}/chat/completions per prompt, read as server-sent events.
Closing the stream early (aclose, or cancelling the consuming task) closes the HTTP response
at once; the server sees the disconnect and stops generating, which frees its slot.

Structured output: the OpenAI form `{"type": "json_schema", ...}` first; if the server refuses
it (400/422, or llama-cpp-python's 500 naming response_format), the llama.cpp form
`{"type": "json_object", "schema": ...}`. The form that worked is kept (`response_format`).

Usage: token counts from the server's usage chunk (`stream_options.include_usage`), else
estimated (`count_tokens`; one token per content chunk); ttft and tokens/s measured here.

    OpenAiError              the server, or the link to it, failed
    ├── ServerUnreachable    nothing answered at base_url (refused, unknown host, timeout)
    └── ServerError          the server answered with an error: .status, .message, .url
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, AsyncIterator

import httpx
import msgspec

from operators.base import Busy, Reject
from operators.generate.engine import Delta, Prompt
from schemas import ChatMessage, Usage

JSON_SCHEMA, JSON_OBJECT = "json_schema", "json_object"


class OpenAiError(Exception):
    """The OpenAI-compatible server, or the link to it, failed."""


class ServerUnreachable(OpenAiError):
    def __init__(self, base_url: str, cause: str):
        super().__init__(f"cannot reach the OpenAI-compatible server at {base_url}: {cause}")
        self.base_url, self.cause = base_url, cause


class ServerError(OpenAiError):
    def __init__(self, status: int, message: str, url: str):
        super().__init__(f"{url} answered HTTP {status}: {message}")
        self.status, self.message, self.url = status, message, url


class _Content(msgspec.Struct, frozen=True):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Content = _Content()
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None   # cached_tokens, where reported


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: Any = None           # some servers report a failure mid-stream as an event


class _Models(msgspec.Struct):
    data: list[dict[str, Any]] = []     # {"id": ...} each


_chunks = msgspec.json.Decoder(_Chunk)
_models = msgspec.json.Decoder(_Models)
_json = msgspec.json.Encoder()


class _Tally:
    """What one stream has produced so far, to build its Usage."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = self.last = 0.0
        self.chunks, self.finish = 0, "stop"
        self.usage: _Usage | None = None

    def text(self) -> None:
        self.last = time.perf_counter()
        self.first = self.first or self.last
        self.chunks += 1

    def result(self, estimated_prompt: int) -> Usage:
        server = self.usage
        completion = server.completion_tokens if server else self.chunks
        details = (server.prompt_tokens_details if server else None) or {}
        span = self.last - self.first
        return Usage(prompt_tokens=server.prompt_tokens if server else estimated_prompt,
                     cached_tokens=details.get("cached_tokens") or 0, completion_tokens=completion,
                     ttft_s=self.first - self.start if self.first else 0.0,
                     tokens_per_s=(completion - 1) / span if completion > 1 and span > 0 else 0.0)


class OpenAiEngine:
    """An LlmEngine over HTTP. Config: a GenerateConfig (base_url, api_key_env, served_model,
    context_tokens). The API key is read from the environment once, here."""

    def __init__(self, config: Any, timeout_s: float = 120.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        if not config.base_url:
            raise ValueError("the openai engine needs base_url, e.g. http://127.0.0.1:8000/v1")
        self.base_url = config.base_url.rstrip("/")
        self.model: str = config.served_model
        self.context_tokens: int = config.context_tokens
        self.response_format: str = ""     # JSON_SCHEMA or JSON_OBJECT once a server took one
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.AsyncClient(headers=headers, transport=transport,
                                        timeout=httpx.Timeout(timeout_s, connect=10.0))

    async def load(self) -> None:
        """Without a configured served_model, take the first model the server lists."""
        if self.model:
            return
        async with self._request("GET", "/models") as response:
            models = _models.decode(await response.aread()).data
        if not models:
            raise ServerError(200, "no models listed; set served_model", self.base_url + "/models")
        self.model = models[0]["id"]

    async def close(self) -> None:
        await self.client.aclose()

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """An estimate, not the server's tokenizer: 4 characters a token (about right for
        English with BPE vocabularies), plus 4 tokens a message for the chat template."""
        return sum(math.ceil(len(m.content) / 4) + 4 for m in messages)

    async def stream(self, prompt: Prompt) -> AsyncIterator[Delta]:
        await self.load()
        tally = _Tally()
        async with self._chat(prompt) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue                    # comments, event names, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                text = self._take(data, tally, str(response.url))
                if text:
                    tally.text()
                    yield Delta(text=text)
        usage = tally.result(self.count_tokens(prompt.messages))
        yield Delta(finish_reason=tally.finish, usage=usage)

    @staticmethod
    def _take(data: str, tally: _Tally, url: str) -> str:
        try:
            chunk = _chunks.decode(data)
        except msgspec.DecodeError as e:
            raise OpenAiError(f"{url} sent an event that is not a chunk ({e}): {data[:200]}")
        if chunk.error is not None:
            raise ServerError(200, _message(chunk.error), url)
        tally.usage = chunk.usage or tally.usage
        text = ""                       # only the first choice: we never ask for n > 1
        for choice in chunk.choices[:1]:
            text = choice.delta.content or ""
            if choice.finish_reason:
                tally.finish = "length" if choice.finish_reason == "length" else "stop"
        return text

    @contextlib.asynccontextmanager
    async def _chat(self, prompt: Prompt) -> AsyncIterator[httpx.Response]:
        """The streamed response; retried once with the llama.cpp response_format if the
        server turns the OpenAI one down."""
        forms = ([""] if prompt.json_schema is None else [self.response_format]
                 if self.response_format else [JSON_SCHEMA, JSON_OBJECT])
        for i, form in enumerate(forms):
            opened = False
            try:
                async with self._request("POST", "/chat/completions",
                                         self._body(prompt, form)) as response:
                    opened, self.response_format = True, form or self.response_format
                    yield response
                    return
            except ServerError as e:
                if opened or i == len(forms) - 1 or not _refused_format(e):
                    raise _for_runner(e) from e

    def _body(self, prompt: Prompt, form: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "messages": [_wire(m) for m in prompt.messages], "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": prompt.max_tokens, "temperature": prompt.temperature}
        if prompt.stop:
            body["stop"] = prompt.stop
        if form == JSON_SCHEMA:
            body["response_format"] = {"type": JSON_SCHEMA, "json_schema": {
                "name": "output", "schema": prompt.json_schema, "strict": True}}
        elif form == JSON_OBJECT:
            body["response_format"] = {"type": JSON_OBJECT, "schema": prompt.json_schema}
        return body

    @contextlib.asynccontextmanager
    async def _request(self, method: str, path: str,
                       body: Any = None) -> AsyncIterator[httpx.Response]:
        """An open response with a success status; transport failures and error statuses
        become OpenAiErrors. Leaving the block closes the response (and the connection, if
        it was not read to the end)."""
        url = self.base_url + path
        content = _json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            async with self.client.stream(method, url, content=content,
                                          headers=headers) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    raise ServerError(response.status_code, _message(text), url)
                yield response
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise ServerUnreachable(self.base_url, str(e) or type(e).__name__) from e
        except httpx.TransportError as e:
            raise OpenAiError(f"{method} {url} failed: {type(e).__name__}: {e}") from e


def _for_runner(e: ServerError) -> Exception:
    """Overload is shed (Busy), a request the server refuses is bad input (Reject); anything
    else stays a ServerError, which the runner retries."""
    if e.status in (429, 503):
        return Busy(f"LLM server busy: {e}")
    if e.status in (400, 413, 422):
        return Reject(f"LLM server refused the request: {e}")
    return e


def _refused_format(e: ServerError) -> bool:
    """llama-cpp-python's server answers an unknown response_format with HTTP 500."""
    return e.status in (400, 422) or "response_format" in e.message


def _wire(m: ChatMessage) -> dict[str, str]:
    return {"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})}


def _message(error: Any) -> str:
    """The server's own words from an error body: OpenAI's {"error": {"message"}},
    FastAPI's {"detail"}, TGI's {"error": "..."}, or the text itself."""
    if isinstance(error, str):
        try:
            error = msgspec.json.decode(error)
        except msgspec.DecodeError:
            return error.strip()[:1000] or "(empty body)"
    if isinstance(error, dict):
        error = error.get("error", error.get("detail", error.get("message", error)))
        if isinstance(error, dict) and "message" in error:
            error = error["message"]
    return (error if isinstance(error, str) else msgspec.json.encode(error).decode())[:1000]
