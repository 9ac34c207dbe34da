"""The SQLite side of the embedded store: schema, staged writes, commits, reads.

Tables:
    meta        model, dim, schema version: a store built for one embedding is useless to another
    documents   one row per (tenant, collection, doc_id); `version` is the live version, NULL
                while a first version is only staged; `replaced` is what the live version
                replaced, kept so a repeated commit gives the same answer
    acl         (doc, entry): one row per ACL entry, so permission checks are index probes
    doc_meta    (doc, key, value): metadata equality filters in SQL
    chunks      every staged or live chunk with its float32 vector (little-endian blob);
                a chunk is served only while chunks.version = documents.version
    chunks_fts  FTS5 over chunk text, title, section path, external content (`chunks`), kept
                in step by triggers, so every change to `chunks` updates it in the same
                transaction
    changes     (seq, doc): one row per commit, update or delete, read by every store on the
                file to refresh its in-memory vectors incrementally (operators/store/vectors.py)

Every function here runs on the store's worker thread with its one connection, in
autocommit mode; writes open BEGIN IMMEDIATE so two writer processes queue on the lock
(busy_timeout) instead of failing halfway through a transaction.
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Iterator

import msgspec
import numpy as np

from operators.store.engine import StoredChunk, StoreError
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey

SCHEMA_VERSION = 1
KEEP_CHANGES = 50_000          # change rows kept; a reader further behind reloads in full

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL, collection TEXT NOT NULL, doc_id TEXT NOT NULL,
    version TEXT, replaced TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '', filename TEXT NOT NULL DEFAULT '',
    acl TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{}',
    chunks INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL DEFAULT 0,
    UNIQUE (tenant, collection, doc_id));
CREATE TABLE IF NOT EXISTS acl (
    doc INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (doc, entry)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doc_meta (
    doc INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (doc, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc INTEGER NOT NULL, version TEXT NOT NULL, idx INTEGER NOT NULL,
    text TEXT NOT NULL, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
    title TEXT NOT NULL, section_path TEXT NOT NULL, vector BLOB NOT NULL,
    UNIQUE (doc, version, idx));
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, title, section_path, content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, title, section_path)
    VALUES (new.id, new.text, new.title, new.section_path);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, title, section_path)
    VALUES ('delete', old.id, old.text, old.title, old.section_path);
END;
CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, title, section_path)
    VALUES ('delete', old.id, old.text, old.title, old.section_path);
    INSERT INTO chunks_fts(rowid, text, title, section_path)
    VALUES (new.id, new.text, new.title, new.section_path);
END;
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc INTEGER NOT NULL);
"""

_UPSERT = """
INSERT INTO chunks (doc, version, idx, text, char_start, char_end, title, section_path, vector)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (doc, version, idx) DO UPDATE SET
    text = excluded.text, char_start = excluded.char_start, char_end = excluded.char_end,
    title = excluded.title, section_path = excluded.section_path, vector = excluded.vector
WHERE (text, char_start, char_end, title, section_path, vector)
    IS NOT (excluded.text, excluded.char_start, excluded.char_end, excluded.title,
            excluded.section_path, excluded.vector)
"""
_JSON = msgspec.json.Encoder()
_LIST = msgspec.json.Decoder(list[str])
_DICT = msgspec.json.Decoder(dict[str, str])


def connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """One connection in autocommit mode (transactions are explicit), WAL, tables created."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL mode (a network file system?)")
    conn.execute("PRAGMA synchronous = NORMAL")   # WAL + NORMAL: durable up to the last checkpoint
    with write(conn):
        for statement in _statements(DDL):
            conn.execute(statement)
    return conn


def _statements(script: str) -> Iterator[str]:
    """DDL statements one by one (executescript would commit our BEGIN)."""
    buffer = ""
    for line in script.strip().splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""


@contextlib.contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: the lock is taken at BEGIN, released by COMMIT or ROLLBACK."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: every statement inside sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def check_meta(conn: sqlite3.Connection, path: str, model: str, dim: int) -> None:
    """Record model and dim in a new store; refuse a store built for another embedding."""
    with write(conn):
        found = dict(conn.execute("SELECT key, value FROM meta"))
        if not found:
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)), ("model", model), ("dim", str(dim))])
            return
    if found.get("schema_version") != str(SCHEMA_VERSION):
        raise StoreError(f"{path} has store schema {found.get('schema_version')}, this code "
                         f"reads {SCHEMA_VERSION}: re-index into a new file")
    if (found.get("model"), found.get("dim")) != (model, str(dim)):
        raise StoreError(
            f"{path} holds vectors of model {found.get('model')!r} (dim {found.get('dim')}), "
            f"not {model!r} (dim {dim}): configure the embedder that built it, or point the "
            f"store at a new file (or delete this one) and re-index every document")


def stage(conn: sqlite3.Connection, doc: DocumentInfo, chunks: list[ChunkRecord],
          vectors: np.ndarray) -> None:
    """Upsert chunks of doc.version; unchanged rows are left alone (redelivery is free)."""
    with write(conn):
        doc_row, live = _ensure_document(conn, doc.key)
        conn.executemany(_UPSERT, [
            (doc_row, doc.version, c.index, c.text, c.start, c.end, doc.title,
             _JSON.encode(c.section_path).decode(), vec.tobytes())
            for c, vec in zip(chunks, vectors)])
        if live == doc.version:       # a served version was rewritten: readers must reload it
            _log_change(conn, doc_row)


def commit(conn: sqlite3.Connection, doc: DocumentInfo) -> str | None:
    """Make doc.version live (see VectorStore.commit); one transaction."""
    with write(conn):
        row = conn.execute("SELECT id, version, replaced FROM documents WHERE tenant = ? AND "
                           "collection = ? AND doc_id = ?", _key(doc.key)).fetchone()
        if row is not None and row[1] == doc.version:
            return row[2]                                  # already live: same answer
        if row is None and doc.chunks:
            return None
        doc_row = row[0] if row else _ensure_document(conn, doc.key)[0]
        if _staged(conn, doc_row, doc) < doc.chunks:
            return None
        replaced = (row[1] if row else None) or ""
        _set_live(conn, doc_row, doc, replaced)
        conn.execute("DELETE FROM chunks WHERE doc = ? AND (version != ? OR idx >= ?)",
                     (doc_row, doc.version, doc.chunks))
        _log_change(conn, doc_row)
        return replaced


def update(conn: sqlite3.Connection, doc: DocumentInfo) -> bool:
    """New ACL / metadata / title for the live version; False if the document is not live."""
    with write(conn):
        row = conn.execute("SELECT id, version FROM documents WHERE tenant = ? AND "
                           "collection = ? AND doc_id = ?", _key(doc.key)).fetchone()
        if row is None or row[1] is None:
            return False
        conn.execute("UPDATE documents SET title = ?, filename = ?, acl = ?, metadata = ?, "
                     "updated = ? WHERE id = ?", (doc.title, doc.filename, _enc(doc.acl),
                                                  _enc(doc.metadata), time.time(), row[0]))
        _set_access(conn, row[0], doc)
        _log_change(conn, row[0])
        return True


def delete(conn: sqlite3.Connection, key: DocumentKey) -> str:
    """Remove the document, its ACL, metadata and every chunk (staged too)."""
    with write(conn):
        row = conn.execute("SELECT id, version FROM documents WHERE tenant = ? AND "
                           "collection = ? AND doc_id = ?", _key(key)).fetchone()
        if row is None:
            return ""
        for table, column in (("chunks", "doc"), ("acl", "doc"), ("doc_meta", "doc"),
                              ("documents", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (row[0],))
        _log_change(conn, row[0])
        return row[1] or ""


def document(conn: sqlite3.Connection, key: DocumentKey) -> DocumentInfo | None:
    row = conn.execute("SELECT version, title, filename, acl, metadata, chunks FROM documents "
                       "WHERE tenant = ? AND collection = ? AND doc_id = ? AND version IS NOT NULL",
                       _key(key)).fetchone()
    if row is None:
        return None
    return DocumentInfo(key=key, version=row[0], title=row[1], filename=row[2],
                        acl=_LIST.decode(row[3]), metadata=_DICT.decode(row[4]), chunks=row[5])


def count(conn: sqlite3.Connection, tenant: str | None) -> dict[str, int]:
    where, params = ("AND tenant = ?", [tenant]) if tenant is not None else ("", [])
    docs, chunks = conn.execute("SELECT count(*), coalesce(sum(chunks), 0) FROM documents "
                                f"WHERE version IS NOT NULL {where}", params).fetchone()
    return {"documents": docs, "chunks": chunks}


def stored_chunks(conn: sqlite3.Connection, rowids: list[int]) -> dict[int, StoredChunk]:
    """The chunks behind search results, by rowid."""
    if not rowids:
        return {}
    rows = conn.execute(
        "SELECT c.id, d.tenant, d.collection, d.doc_id, c.version, c.idx, c.text, c.char_start, "
        "c.char_end, c.title, c.section_path FROM chunks AS c JOIN documents AS d ON d.id = c.doc "
        f"WHERE c.id IN ({', '.join('?' * len(rowids))})", rowids)
    return {r[0]: StoredChunk(key=DocumentKey(tenant=r[1], collection=r[2], doc_id=r[3]),
                              version=r[4], index=r[5], text=r[6], start=r[7], end=r[8],
                              title=r[9], section_path=_LIST.decode(r[10])) for r in rows}


# --- helpers (inside a write transaction) --------------------------------------------

def _key(key: DocumentKey) -> tuple[str, str, str]:
    return (key.tenant, key.collection, key.doc_id)


def _enc(value: object) -> str:
    return _JSON.encode(value).decode()


def _ensure_document(conn: sqlite3.Connection, key: DocumentKey) -> tuple[int, str | None]:
    """The document's row id and live version, inserting a not-yet-live row if needed."""
    conn.execute("INSERT INTO documents (tenant, collection, doc_id) VALUES (?, ?, ?) "
                 "ON CONFLICT DO NOTHING", _key(key))
    return conn.execute("SELECT id, version FROM documents WHERE tenant = ? AND "
                        "collection = ? AND doc_id = ?", _key(key)).fetchone()


def _staged(conn: sqlite3.Connection, doc_row: int, doc: DocumentInfo) -> int:
    return conn.execute("SELECT count(*) FROM chunks WHERE doc = ? AND version = ? AND idx "
                        "BETWEEN 0 AND ?", (doc_row, doc.version, doc.chunks - 1)).fetchone()[0]


def _set_live(conn: sqlite3.Connection, doc_row: int, doc: DocumentInfo, replaced: str) -> None:
    conn.execute("UPDATE documents SET version = ?, replaced = ?, title = ?, filename = ?, "
                 "acl = ?, metadata = ?, chunks = ?, updated = ? WHERE id = ?",
                 (doc.version, replaced, doc.title, doc.filename, _enc(doc.acl),
                  _enc(doc.metadata), doc.chunks, time.time(), doc_row))
    _set_access(conn, doc_row, doc)


def _set_access(conn: sqlite3.Connection, doc_row: int, doc: DocumentInfo) -> None:
    conn.execute("DELETE FROM acl WHERE doc = ?", (doc_row,))
    conn.execute("DELETE FROM doc_meta WHERE doc = ?", (doc_row,))
    conn.executemany("INSERT OR IGNORE INTO acl VALUES (?, ?)", [(doc_row, e) for e in doc.acl])
    conn.executemany("INSERT INTO doc_meta VALUES (?, ?, ?)",
                     [(doc_row, k, v) for k, v in doc.metadata.items()])


def _log_change(conn: sqlite3.Connection, doc_row: int) -> None:
    seq = conn.execute("INSERT INTO changes (doc) VALUES (?)", (doc_row,)).lastrowid
    if seq is not None and seq % 1000 == 0:            # prune now and then, not every commit
        conn.execute("DELETE FROM changes WHERE seq <= ?", (seq - KEEP_CHANGES,))
