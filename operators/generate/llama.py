"""The embedded engine: llama.cpp in this process, through llama-cpp-python.

All model access runs on one dedicated worker thread (llama.cpp is not thread-safe), so the
event loop never waits on inference. Tokens reach the loop through call_soon_threadsafe; a
threading.Event checked after every token stops generation within one token when the
consumer stops iterating (aclose or cancellation).

Prefix cache: `Llama.generate()` reuses the longest common prefix of the KV it holds, so the
next turn of a conversation evaluates only its new tokens. When another prompt (session) would
discard that prefix, its KV is saved first and restored when a later prompt shares more of it.
"""
from __future__ import annotations

import asyncio
import codecs
import collections
import ctypes
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

from operators.base import Reject
from operators.generate.engine import Delta, Prompt
from operators.models import ModelError, model_file
from schemas import ChatMessage, Usage

GGUF_ENV = "PATCHWIRE_LLM_GGUF"
GGUF_MAGIC = b"GGUF"
INSTALL_HINT = "bash infra/setup.sh (it builds llama-cpp-python==0.3.36 once and caches the wheel)"
LOOSE_CHAR, STRICT_CHAR = r'char ::= [^"\\]', r'char ::= [^"\\\x7F\x00-\x1F]'
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def gguf_from_env() -> str:
    """The entry-point override: PATCHWIRE_LLM_GGUF names any GGUF file."""
    return os.environ.get(GGUF_ENV, "")


def check_gguf(path: Path, source: str) -> Path:
    """A GGUF file that exists and starts with the GGUF magic, else a ModelError naming `source`."""
    if not path.is_file():
        raise ModelError(f"GGUF file {path} ({source}) does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path} ({source}) is not a GGUF file: it starts with {magic!r}, "
                         f"not {GGUF_MAGIC!r}")
    return path


class PrefixStore:
    """Saved KV states of sequence 0, keyed by their tokens, least recently used dropped first."""

    def __init__(self, capacity_bytes: int = 512 << 20):
        self.capacity = capacity_bytes
        self.states: collections.OrderedDict[tuple[int, ...], bytes] = collections.OrderedDict()

    def best(self, tokens: list[int]) -> tuple[tuple[int, ...], int]:
        """The saved key sharing the longest prefix with `tokens`, and that prefix's length."""
        return max(((key, _common_prefix(key, tokens)) for key in self.states),
                   key=lambda found: found[1], default=((), 0))

    def put(self, key: tuple[int, ...], state: bytes) -> None:
        for old in [k for k in self.states if key[:len(k)] == k]:
            del self.states[old]    # a saved prefix of this one is worth nothing more
        self.states[key] = state
        while sum(map(len, self.states.values())) > self.capacity:
            self.states.popitem(last=False)

    def take(self, key: tuple[int, ...]) -> bytes:
        return self.states.pop(key)     # live again: saved anew when something displaces it


class LlamaEngine:
    """LlmEngine over one llama.cpp model; `stream()` runs one generation at a time."""

    save_min_tokens = 32   # save the live KV before a switch would discard at least this many

    def __init__(self, config: Any, gguf_env: str | None = None):
        """`gguf_env`: the value of PATCHWIRE_LLM_GGUF, read from the environment if not given."""
        env = gguf_from_env() if gguf_env is None else gguf_env
        self.config, self.gguf = config, env or config.gguf
        self.gguf_source = GGUF_ENV if env else "config.gguf"
        self.model = Path(self.gguf).stem if self.gguf else config.model
        self.context_tokens = config.context_tokens
        self.llm: Any = None
        self.prefixes = PrefixStore()
        self.last_tokens_after_stop = 0     # tokens computed after the consumer stopped
        self.last_stop_s = 0.0              # from the stop to the worker being free
        self.last_usage: Usage | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"llama-{self.model}")
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._api: Any = None       # the llama_cpp module and the chat template, once loaded
        self._render: Any = None

    def model_file(self) -> Path:
        """The GGUF to load: PATCHWIRE_LLM_GGUF > config.gguf > the registry's model."""
        if self.gguf:
            return check_gguf(Path(self.gguf), self.gguf_source)
        return check_gguf(model_file(self.model), f"model {self.model!r}")

    async def load(self) -> None:
        if self.llm is None:
            loop = asyncio.get_running_loop()
            path = await asyncio.to_thread(self.model_file)
            self.llm = await loop.run_in_executor(self._worker, self._open, path)

    def _open(self, path: Path) -> Any:
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as e:
            raise ModelError(f"llama-cpp-python is missing ({e}); run {INSTALL_HINT}") from None
        self._api = llama_cpp
        llm = llama_cpp.Llama(str(path), n_ctx=self.context_tokens, n_threads=self.config.threads,
                              n_batch=512, verbose=False, logits_all=False)
        eos, bos = (llm._model.token_get_text(t) if t != -1 else ""
                    for t in (llm.token_eos(), llm.token_bos()))
        template = llm.metadata.get("tokenizer.chat_template", CHATML)
        self._render = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        return llm

    def render(self, messages: list[ChatMessage]) -> str:
        """The chat in the model's own template, ending where the assistant's answer begins."""
        if self.llm is None:
            raise RuntimeError(f"engine {self.model!r} is not loaded: await load() first")
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self._render(messages=chat).prompt

    def tokenize(self, messages: list[ChatMessage]) -> list[int]:
        # Tokenizing reads only the vocabulary, so it is safe beside a running generation.
        return self.llm.tokenize(self.render(messages).encode(), add_bos=False, special=True)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.tokenize(messages))

    def grammar(self, schema: dict | None) -> Any:
        if schema is None:
            return None
        key = json.dumps(schema)    # not sorted: the grammar keeps the properties' order
        if key not in self._grammars:
            from llama_cpp.llama_grammar import json_schema_to_gbnf
            # 0.3.36's converter lets raw control characters into strings, which JSON forbids.
            gbnf = json_schema_to_gbnf(key).replace(LOOSE_CHAR, STRICT_CHAR)
            self._grammars[key] = self._api.LlamaGrammar.from_string(gbnf, verbose=False)
        return self._grammars[key]

    async def stream(self, prompt: Prompt) -> AsyncIterator[Delta]:
        if self.llm is None:
            await self.load()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        # Bounded by max_tokens: the worker sends at most one item per token, then the last.
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Delta | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = loop.run_in_executor(self._worker, self._generate, prompt, stop, emit, started)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason:
                    break
        finally:
            stopping = time.perf_counter()
            stop.set()
            await asyncio.shield(job)   # within one token: the slot is free when we return
            self.last_stop_s = time.perf_counter() - stopping

    def _generate(self, prompt: Prompt, stop: threading.Event, emit, started: float) -> None:
        try:
            with self._lock:
                self._run(prompt, stop, emit, started)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            emit(e)

    def _run(self, prompt: Prompt, stop: threading.Event, emit, started: float) -> None:
        llm, tokens = self.llm, self.tokenize(prompt.messages)
        room = llm.n_ctx() - len(tokens)
        if room <= 0:
            raise Reject(f"prompt is {len(tokens)} tokens; the context holds {llm.n_ctx()}")
        cached = self._reuse(tokens)
        text = _Text(llm, prompt.stop)
        gen = llm.generate(tokens, temp=prompt.temperature, top_k=40, top_p=0.95, min_p=0.05,
                           repeat_penalty=1.0, grammar=self.grammar(prompt.json_schema))
        try:
            n, first, finish = self._decode(gen, min(prompt.max_tokens, room), stop, text, emit)
        finally:
            gen.close()
        self.last_usage = _usage(len(tokens), cached, n, started, first, time.perf_counter())
        emit(Delta(text=text.flush(), finish_reason=finish, usage=self.last_usage))

    def _decode(self, gen, limit: int, stop: threading.Event, text: _Text, emit):
        """Sample up to `limit` tokens, checking `stop` after each; (count, first at, finish)."""
        n, first, self.last_tokens_after_stop = 0, 0.0, 0
        while n < limit and not stop.is_set():
            token = next(gen)   # evaluates the previous token, samples this one
            n, first = n + 1, first or time.perf_counter()
            self.last_tokens_after_stop += stop.is_set()
            if self._api.llama_vocab_is_eog(self.llm._model.vocab, token):
                return n, first, "stop"
            piece, stopped = text.feed(token)
            if piece:
                emit(Delta(text=piece))
            if stopped:
                return n, first, "stop"
        return n, first, "length"

    def _reuse(self, tokens: list[int]) -> int:
        """Make the best saved prefix live; return how many prompt tokens need no evaluation."""
        llm = self.llm
        live = llm.input_ids[:llm.n_tokens].tolist()
        have = _common_prefix(live, tokens)
        key, saved = self.prefixes.best(tokens)
        state = self.prefixes.take(key) if saved > have else b""
        if len(live) - have >= self.save_min_tokens:
            self._save(live)    # the live KV is about to be cut back to `have` tokens
        if state and self._restore(key, state):
            have = saved
        return min(have, len(tokens) - 1)   # generate() evaluates at least the last token

    def _save(self, live: list[int]) -> None:
        api, ctx = self._api, self.llm.ctx
        size = api.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = api.llama_state_seq_get_data(ctx, buf, size, 0)
        self.prefixes.put(tuple(live), bytes(buf)[:n])

    def _restore(self, key: tuple[int, ...], state: bytes) -> bool:
        llm = self.llm
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if not self._api.llama_state_seq_set_data(llm.ctx, buf, len(state), 0):
            llm.reset()     # nothing restored: the prompt is evaluated whole
            return False
        llm.input_ids[:len(key)] = key
        llm.n_tokens = len(key)
        llm._requires_eval = True
        return True

    async def close(self) -> None:
        if self.llm is not None:    # on the worker: after the generation running there, if any
            await asyncio.get_running_loop().run_in_executor(self._worker, self._free)
        self._worker.shutdown(wait=False)

    def _free(self) -> None:
        llm, self.llm = self.llm, None
        llm.close()


class _Text:
    """Token bytes to text: whole UTF-8 characters, held back while a stop string may begin."""

    def __init__(self, llm: Any, stops: list[str]):
        self.llm, self.stops = llm, [s for s in stops if s]
        self.decoder, self.pending = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""

    def feed(self, token: int) -> tuple[str, bool]:
        self.pending += self.decoder.decode(self.llm.detokenize([token]))
        for stop in self.stops:
            if stop in self.pending:
                out, self.pending = self.pending[:self.pending.index(stop)], ""
                return out, True
        keep = max((_partial(self.pending, s) for s in self.stops), default=0)
        out = self.pending[:len(self.pending) - keep]
        self.pending = self.pending[len(out):]
        return out, False

    def flush(self) -> str:
        return self.pending + self.decoder.decode(b"", final=True)


def _partial(text: str, stop: str) -> int:
    """How many characters at the end of `text` begin `stop`."""
    return next((n for n in range(min(len(text), len(stop) - 1), 0, -1)
                 if stop.startswith(text[-n:])), 0)


def _common_prefix(a, b) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _usage(prompt: int, cached: int, completion: int, started: float, first: float,
           ended: float) -> Usage:
    """tokens_per_s is the decode rate: tokens after the first over the time after the first."""
    decode_s = ended - first if first else 0.0
    rate = (completion - 1) / decode_s if completion > 1 and decode_s > 0 else 0.0
    return Usage(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion,
                 ttft_s=round(first - started, 4) if first else 0.0, tokens_per_s=round(rate, 2))
