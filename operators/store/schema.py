"""The embedded store's SQLite file: its tables, connection settings and transactions.

Tables:
    meta        model, dim, schema version: a store built for one embedding is useless to another
    documents   one row per (tenant, collection, doc_id); `version` is the live version, NULL
                while a first version is only staged; `replaced` is what the live version
                replaced, kept so a repeated commit gives the same answer
    acl         (doc, entry): one row per ACL entry, so permission checks are index probes
    doc_meta    (doc, key, value): metadata equality filters in SQL
    tenants     a number per tenant and its running chunk count: a chunk's id is
                (tenant number << 40) + count, so each tenant's chunks take one id range;
                the keyword search hands FTS5 that range (`rowid BETWEEN`), and FTS5 seeks
                within its posting lists, never visiting another tenant's rows. Ids only
                grow, so a reader's in-memory rows stay sorted by id within a tenant.
    chunks      every staged or live chunk with its float32 vector (little-endian blob);
                a chunk is served only while chunks.version = documents.version
    live_chunks (id, doc) of the served chunks only: the keyword search joins each FTS match
                to this narrow table (a few MB, stays in cache) rather than to `chunks`,
                whose rows carry text and a 1.5 kB vector and would be read from disk
    chunks_fts  FTS5 over chunk text, title, section path, external content (`chunks`), kept
                in step by triggers, so every change to `chunks` updates it in the same
                transaction
    changes     (seq, doc): one row per commit, update or delete, read by every store on the
                file to refresh its in-memory vectors incrementally (operators/store/vectors.py)

The connection is in autocommit mode and transactions are explicit: writes open BEGIN
IMMEDIATE, so two writer processes queue on the lock (busy_timeout) instead of failing
halfway through a transaction; a search runs in one read transaction (`snapshot`), so its
refresh, both lists and the fetched chunks all see the same committed state. WAL lets
readers run while a writer commits; synchronous=NORMAL (safe with WAL) means a power cut
may lose the last commits but never corrupts the file.
"""
from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator

from operators.store.engine import StoreError

SCHEMA_VERSION = 2   # 2: tenants and live_chunks tables
# porter stems English ("running" finds "run"); remove_diacritics 2: "cafe" finds "café"
TOKENIZER = "porter unicode61 remove_diacritics 2"
TENANT_SHIFT = 40              # chunk id = tenant number << 40 | the tenant's running count

DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL, collection TEXT NOT NULL, doc_id TEXT NOT NULL,
    version TEXT, replaced TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '', filename TEXT NOT NULL DEFAULT '',
    acl TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{{}}',
    chunks INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL DEFAULT 0,
    UNIQUE (tenant, collection, doc_id));
CREATE TABLE IF NOT EXISTS acl (
    doc INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (doc, entry)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doc_meta (
    doc INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (doc, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenants (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    next_chunk INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    doc INTEGER NOT NULL, version TEXT NOT NULL, idx INTEGER NOT NULL,
    text TEXT NOT NULL, char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
    title TEXT NOT NULL, section_path TEXT NOT NULL, vector BLOB NOT NULL,
    UNIQUE (doc, version, idx));
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, title, section_path, content='chunks', content_rowid='id',
    tokenize='{TOKENIZER}');
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
CREATE TABLE IF NOT EXISTS live_chunks (id INTEGER PRIMARY KEY, doc INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS live_chunks_doc ON live_chunks (doc);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc INTEGER NOT NULL);
"""


def connect(path: str, busy_timeout_ms: int, cache_mb: int) -> sqlite3.Connection:
    """One connection in autocommit mode (transactions are explicit), WAL, tables created."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_mb)}")     # negative: KiB
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise StoreError(f"{path}: SQLite refused WAL mode (a network file system?)")
    conn.execute("PRAGMA synchronous = NORMAL")
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


def check_meta(conn: sqlite3.Connection, path: str, model: str, dim: int) -> int:
    """Record model and dim in a new store; refuse a store built for another embedding.
    Returns the dimension of the store's vectors. Model "" is a caller that embeds nothing
    (the chunk step, the gateway): it takes the store as it is (dim 0 while still empty)."""
    with write(conn):
        found = dict(conn.execute("SELECT key, value FROM meta"))
        if not found and model:
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)), ("model", model), ("dim", str(dim))])
            return dim
    if found and found.get("schema_version") != str(SCHEMA_VERSION):
        raise StoreError(f"{path} has store schema {found.get('schema_version')}, this code "
                         f"reads {SCHEMA_VERSION}: re-index into a new file")
    if not model:
        return int(found.get("dim", 0))
    if (found.get("model"), found.get("dim")) != (model, str(dim)):
        raise StoreError(
            f"{path} holds vectors of model {found.get('model')!r} (dim {found.get('dim')}), "
            f"not {model!r} (dim {dim}): configure the embedder that built it, or point the "
            f"store at a new file (or delete this one) and re-index every document")
    return dim


def stored_dim(conn: sqlite3.Connection) -> int:
    """The dimension recorded in meta; 0 while no model has opened the store."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
    return int(row[0]) if row else 0
