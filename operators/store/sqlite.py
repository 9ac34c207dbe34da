"""The embedded document store: SQLite for documents, ACLs and BM25; exact vectors in numpy.

    SqliteStore(path, config=SqliteConfig())      implements operators.store.engine.VectorStore

One file holds everything (operators/store/tables.py has the schema): documents, their
chunks with float32 vectors, an FTS5 index, ACL rows, and a change log. Searches run the
keyword list as one SQL statement (operators/store/fts.py) and the vector list as one
matrix-vector product over a per-tenant in-memory matrix (operators/store/vectors.py); both
apply the same permission condition (operators/store/filters.py) before their top k, and
hybrid fuses the two by reciprocal rank (operators/store/fusion.py).

Threads: all SQLite and numpy work runs on one worker thread that owns the connection, so
the event loop never waits on a query, and calls of one store are serialised (a search
sees every write this store made before it). Several processes may open the same file:
WAL lets readers run while one writer commits, and each search starts by reading the change
log's newest sequence number (one B-tree probe, inside the search's read transaction), so a
retrieve process sees the index process's commits at its next search, no restart needed.
"""
from __future__ import annotations

import asyncio
import functools
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Callable

import msgspec
import numpy as np

from operators.store import tables
from operators.store.engine import Hit, SearchQuery, StoreError, as_matrix
from operators.store.fts import keyword_search
from operators.store.fusion import Fused, fuse, single
from operators.store.vectors import VectorIndex
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey


class SqliteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str = ""                                   # the store file; SqliteStore(path) wins
    busy_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000  # wait for another writer


class SqliteStore:
    """Async facade: every call is handed to the worker thread, where _Store does the work."""

    name = "embedded"

    def __init__(self, path: Path | str | None = None, *, config: SqliteConfig | None = None):
        self.config = config or SqliteConfig()
        chosen = path if path is not None else self.config.path
        if not chosen:
            raise StoreError("the embedded store needs a file: SqliteStore(path) or config.path")
        self.path = Path(chosen)
        self._store: _Store | None = None
        self._closed = False
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"store-{self.path.name}")

    async def open(self, model: str, dim: int) -> None:
        if self._store is not None:
            return await self._call(lambda s: s.check(model, dim))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._store = await self._on_worker(_Store.open, str(self.path), model, dim,
                                            self.config.busy_timeout_ms)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._store is not None:
            await asyncio.get_running_loop().run_in_executor(self._worker, self._store.close)
        self._worker.shutdown(wait=False)

    async def document(self, key: DocumentKey) -> DocumentInfo | None:
        return await self._call(lambda s: tables.document(s.conn, key))

    async def put_chunks(self, doc: DocumentInfo, chunks: list[ChunkRecord],
                         vectors: np.ndarray) -> None:
        await self._call(lambda s: s.put(doc, chunks, vectors))

    async def commit(self, doc: DocumentInfo) -> str | None:
        return await self._call(lambda s: tables.commit(s.conn, doc))

    async def update_document(self, doc: DocumentInfo) -> None:
        await self._call(lambda s: tables.update(s.conn, doc))

    async def delete(self, key: DocumentKey) -> str:
        return await self._call(lambda s: tables.delete(s.conn, key))

    async def search(self, query: SearchQuery) -> list[Hit]:
        return await self._call(lambda s: s.search(query))

    async def count(self, tenant: str | None = None) -> dict[str, int]:
        return await self._call(lambda s: tables.count(s.conn, tenant))

    async def _call(self, fn: Callable[[_Store], Any]) -> Any:
        if self._store is None:
            raise StoreError(f"store {self.path} is not open: call open(model, dim) first")
        return await self._on_worker(fn, self._store)

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, functools.partial(fn, *args))


class _Store:
    """The synchronous store; lives on the worker thread with its connection."""

    def __init__(self, conn: sqlite3.Connection, path: str, model: str, dim: int):
        self.conn, self.path, self.model, self.dim = conn, path, model, dim
        self.vectors = VectorIndex(dim)

    @classmethod
    def open(cls, path: str, model: str, dim: int, busy_timeout_ms: int) -> _Store:
        try:
            conn = tables.connect(path, busy_timeout_ms)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        try:
            tables.check_meta(conn, path, model, dim)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, model, dim)

    def check(self, model: str, dim: int) -> None:
        tables.check_meta(self.conn, self.path, model, dim)

    def close(self) -> None:
        self.conn.close()

    def put(self, doc: DocumentInfo, chunks: list[ChunkRecord], vectors: np.ndarray) -> None:
        rows = as_matrix(vectors, self.dim)
        if len(rows) != len(chunks):
            raise StoreError(f"{doc.key.doc_id}: {len(chunks)} chunks but {len(rows)} vectors")
        tables.stage(self.conn, doc, chunks, unit_rows(rows))

    def search(self, query: SearchQuery) -> list[Hit]:
        n = max(query.candidates, query.k) if query.mode == "hybrid" else query.k
        with tables.snapshot(self.conn):
            self.vectors.refresh(self.conn)
            by_vector = self._vector_list(query, n) if query.mode != "keyword" else []
            by_keyword = keyword_search(self.conn, query, n) if query.mode != "vector" else []
            if query.mode == "hybrid":
                ranked = fuse(by_vector, by_keyword, query.rrf_k, query.k)
            else:
                ranked = single(by_vector or by_keyword, query.mode, query.k)
            chunks = tables.stored_chunks(self.conn, [r.rowid for r in ranked])
        return [_hit(r, chunks[r.rowid]) for r in ranked]

    def _vector_list(self, query: SearchQuery, n: int) -> list[tuple[int, float]]:
        if query.vector is None:
            if query.mode == "vector":
                raise StoreError("a vector search needs query.vector (the query embedding)")
            return []                       # hybrid without an embedding: keyword list only
        vector = np.asarray(query.vector, np.float32)
        if vector.shape != (self.dim,):
            raise StoreError(f"query vector has {vector.size} values, the store holds dim {self.dim}")
        return self.vectors.search(self.conn, unit_rows(vector[None])[0], query.principal,
                                   query.collections, query.filters, n)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so a dot product is the cosine."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows, np.float32), where=norms > 0)


def _hit(r: Fused, chunk: Any) -> Hit:
    return Hit(chunk=chunk, score=r.score, vector_rank=r.vector_rank, keyword_rank=r.keyword_rank,
               vector_score=r.vector_score, keyword_score=r.keyword_score)
