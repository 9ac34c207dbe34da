"""A BERT encoder in numpy float32, and the pieces it needs: a safetensors reader (numpy
only, no safetensors package), an erf-exact GELU, and a guard that holds OpenBLAS to one
thread while a batch runs (its own pool thrashes on a busy 2-core machine).

Used by operators/embed/minilm.py; checked against sentence-transformers by
tests/test_embed_minilm.py (tests/data/minilm_reference.json).
"""
from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from operators.embed.engine import EmbedError

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
        out = f"{at}attention.output."
        return _Layer(np.concatenate(qkv[:3]), np.concatenate(qkv[3:]),
                      t[f"{out}dense.weight"], t[f"{out}dense.bias"], _norm(t, f"{out}LayerNorm"),
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
            # softmax's division, done on the (n, head dim) result, not the (n, n) weights
            weighted = scores @ v
            weighted /= scores.sum(axis=-1, keepdims=True)
            context[row, :n] = weighted.transpose(1, 0, 2).reshape(n, hidden)
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
_GELU_ROWS = 32   # rows of 1536 floats per step: a step's three temporaries stay in cache


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


class _SingleThreadedBlas:
    """`with SINGLE_THREADED_BLAS:` runs with one OpenBLAS thread, so each matrix product runs
    in its caller's thread. The count is one setting per process, so entries are counted:
    the first saves the count found, the last puts it back (two engines may overlap)."""

    def __init__(self) -> None:
        self._functions = _openblas_functions()
        self._lock = threading.Lock()
        self._inside = 0
        self._before = 0

    def __enter__(self) -> None:
        if self._functions:
            set_threads, get_threads = self._functions
            with self._lock:
                if self._inside == 0:
                    self._before = get_threads()
                    set_threads(1)
                self._inside += 1

    def __exit__(self, *exc_info) -> None:
        if self._functions:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    self._functions[0](self._before)


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


SINGLE_THREADED_BLAS = _SingleThreadedBlas()
