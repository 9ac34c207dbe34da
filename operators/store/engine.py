"""What a document store must do: keep chunk vectors and text, search them both ways,
filter by who may read them inside the search, and replace a document's chunks atomically.

    embedded   SQLite (FTS5 for BM25, documents, ACLs) + exact vector search in numpy
               (operators/store/sqlite.py)
    weaviate   production: hybrid search with multi-tenancy (added with the GPU-server issue)

Versions: chunks are written for one document version (its content hash) with put_chunks,
possibly in several calls, and become searchable only when commit() makes that version the
live one; in the same transaction the previous version's chunks stop being served. A
search never returns a chunk of a version that is not live, nor of a deleted document.

Permissions: `search` takes the asker's Principal and must apply `Principal.may_read`
inside the query (a pre-filter), so a foreign chunk can never take a place in the top k.
"""
from __future__ import annotations

from typing import Literal, Protocol

import msgspec
import numpy as np

from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey, Principal

Mode = Literal["hybrid", "vector", "keyword"]


class StoreError(RuntimeError):
    """The store cannot serve: closed, wrong embedding model or dimension, corrupt."""


class StoredChunk(msgspec.Struct, frozen=True, kw_only=True):
    key: DocumentKey
    version: str
    index: int
    text: str
    start: int
    end: int
    title: str = ""
    section_path: list[str] = []

    @property
    def chunk_id(self) -> str:
        return f"{self.key.doc_id}#{self.index}"


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    chunk: StoredChunk
    score: float                      # fused (RRF) score for hybrid; the raw score otherwise
    vector_rank: int = 0              # 1-based rank in the vector list; 0 = not in it
    keyword_rank: int = 0
    vector_score: float = 0.0         # cosine
    keyword_score: float = 0.0        # BM25, larger is better


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    text: str = ""
    vector: list[float] | None = None  # the query embedding, L2-normalised
    mode: Mode = "hybrid"
    k: int = 20
    candidates: int = 100              # per list before fusion
    collections: list[str] = []        # empty: all
    filters: dict[str, str] = {}       # document metadata equality
    rrf_k: int = 60


class VectorStore(Protocol):
    name: str

    async def open(self, model: str, dim: int) -> None:
        """Create or open; raise StoreError if the store holds vectors of another model."""

    async def close(self) -> None: ...

    async def document(self, key: DocumentKey) -> DocumentInfo | None:
        """The live version of a document, or None."""

    async def put_chunks(self, doc: DocumentInfo, chunks: list[ChunkRecord],
                         vectors: np.ndarray) -> None:
        """Stage chunks of doc.version (idempotent by (key, version, index)); not yet served."""

    async def commit(self, doc: DocumentInfo) -> str | None:
        """Make doc.version live once all doc.chunks are staged; return the replaced version
        ("" if none, None if chunks are still missing). Idempotent."""

    async def update_document(self, doc: DocumentInfo) -> None:
        """Change ACL or metadata of the live version without touching its chunks."""

    async def delete(self, key: DocumentKey) -> str:
        """Remove a document and all its chunks; return the version removed ("" if none)."""

    async def search(self, query: SearchQuery) -> list[Hit]: ...

    async def count(self, tenant: str | None = None) -> dict[str, int]:
        """{"documents": n, "chunks": n} served (live) now."""


def as_matrix(vectors: bytes | np.ndarray, dim: int) -> np.ndarray:
    """Rows of float32 from the wire's bytes (or an array), checked against dim."""
    arr = np.frombuffer(vectors, dtype="<f4") if isinstance(vectors, bytes) else np.asarray(vectors, "<f4")
    if dim <= 0 or arr.size % dim:
        raise StoreError(f"{arr.size} floats do not make rows of dim {dim}")
    return arr.reshape(-1, dim)
