"""The embedded document store: SQLite for documents, ACLs and BM25; exact vectors in numpy.

    SqliteStore(path, config=SqliteConfig())      implements operators.store.engine.VectorStore

One file holds everything (operators/store/schema.py describes the tables): documents, their
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

Beyond the protocol: `open("", 0)` is for a caller that embeds nothing (the chunk step, the
gateway): it takes the store's model and dim as they are. `documents(principal,
collection)` lists the live documents a principal may read. Every SQLite failure (locked
past busy_timeout, disk full, not a database) reaches the caller as StoreError.
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

from operators.store import schema, tables
from operators.store.engine import Hit, SearchQuery, StoreError, as_matrix
from operators.store.fts import KeywordSearch
from operators.store.fusion import Fused, Ranked, fuse, single
from operators.store.vectors import VectorIndex
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey, Principal


class SqliteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str = ""                                   # the store file; SqliteStore(path) wins
    busy_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000  # wait for another writer
    cache_mb: Annotated[int, msgspec.Meta(ge=1)] = 64   # SQLite page cache: the FTS index
    # threads one search may use: 2 runs hybrid's vector list beside its keyword SQL and
    # splits a vector-only product in two; 1 (the default: the store shares its process's
    # cores with other operators) keeps everything on the worker thread
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


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
        self._store = await self._on_worker(_Store.open, str(self.path), model, dim, self.config)

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

    async def documents(self, principal: Principal, collection: str = "") -> list[DocumentInfo]:
        """The live documents the principal may read (one collection, or all), by key.
        Not part of VectorStore yet: the gateway lists documents with it when it can."""
        return await self._call(lambda s: tables.documents(s.conn, principal, collection))

    async def _call(self, fn: Callable[[_Store], Any]) -> Any:
        if self._store is None:
            raise StoreError(f"store {self.path} is not open: call open(model, dim) first")
        return await self._on_worker(fn, self._store)

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._worker, functools.partial(fn, *args))
        except sqlite3.Error as exc:       # locked past busy_timeout, disk full, corrupt …
            raise StoreError(f"store {self.path}: {exc}") from exc


class _Store:
    """The synchronous store; lives on the worker thread with its connection."""

    def __init__(self, conn: sqlite3.Connection, path: str, model: str, dim: int, threads: int):
        self.conn, self.path, self.model, self.threads = conn, path, model, threads
        self.dim, self.vectors = dim, VectorIndex(dim, threads)
        self.keywords = KeywordSearch(conn)

    @classmethod
    def open(cls, path: str, model: str, dim: int, config: SqliteConfig) -> _Store:
        conn = schema.connect(path, config.busy_timeout_ms, config.cache_mb)
        try:
            dim = schema.check_meta(conn, path, model, dim)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, model, dim, config.threads)

    def check(self, model: str, dim: int) -> None:
        schema.check_meta(self.conn, self.path, model, dim)

    def _adopt_dim(self) -> None:
        """Opened with model "" before any vector was written: take the dim once there is one."""
        dim = schema.stored_dim(self.conn)
        if dim != self.dim:
            self.vectors.close()
            self.dim, self.vectors = dim, VectorIndex(dim, self.threads)

    def close(self) -> None:
        self.vectors.close()
        self.conn.close()

    def put(self, doc: DocumentInfo, chunks: list[ChunkRecord], vectors: np.ndarray) -> None:
        rows = as_matrix(vectors, self.dim)
        if len(rows) != len(chunks):
            raise StoreError(f"{doc.key.doc_id}: {len(chunks)} chunks but {len(rows)} vectors")
        if not np.isfinite(rows).all():      # a NaN would outrank every real score
            raise StoreError(f"{doc.key.doc_id}: vectors hold NaN or infinite values")
        tables.stage(self.conn, doc, chunks, unit_rows(rows))

    def search(self, query: SearchQuery) -> list[Hit]:
        n = max(query.candidates, query.k) if query.mode == "hybrid" else query.k
        tenant = query.principal.tenant
        with schema.snapshot(self.conn):
            if not self.dim:
                self._adopt_dim()             # in the snapshot: the dim of what it loads
            self.vectors.refresh(self.conn)
            vector_list = self._start_vector_list(query, n)
            try:
                by_keyword = (self.keywords.search(query, n, self.vectors.live(tenant))
                              if query.mode != "vector" else [])
            finally:
                by_vector = vector_list()      # never leave a helper reading while we refresh
            if query.mode == "hybrid":
                ranked = fuse(by_vector, by_keyword, query.rrf_k, query.k)
            else:
                ranked = single(by_vector or by_keyword, query.mode, query.k)
            chunks = tables.stored_chunks(self.conn, [r.rowid for r in ranked])
        return [_hit(r, chunks[r.rowid]) for r in ranked]

    def _start_vector_list(self, query: SearchQuery, n: int) -> Callable[[], Ranked]:
        """The vector list, begun beside the keyword list when the store has threads for it."""
        if query.mode == "keyword" or n <= 0:
            return list
        if query.vector is None:
            if query.mode == "vector":
                raise StoreError("a vector search needs query.vector (the query embedding)")
            return list                     # hybrid without an embedding: keyword list only
        if not self.dim:
            return list                     # opened with model "" and no vector written yet
        vector = np.asarray(query.vector, np.float32)
        if vector.shape != (self.dim,):
            raise StoreError(f"query vector has {vector.size} values, "
                             f"the store holds dim {self.dim}")
        if not np.isfinite(vector).all():
            raise StoreError("query vector holds NaN or infinite values")
        target = self.vectors.prepare(self.conn, query.principal, query.collections,
                                      query.filters)
        if target is None:
            return list
        return self.vectors.start(target, unit_rows(vector[None])[0], n,
                                  alongside=query.mode == "hybrid")


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so a dot product is the cosine."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows, np.float32), where=norms > 0)


def _hit(r: Fused, chunk: Any) -> Hit:
    return Hit(chunk=chunk, score=r.score, vector_rank=r.vector_rank, keyword_rank=r.keyword_rank,
               vector_score=r.vector_score, keyword_score=r.keyword_score)
