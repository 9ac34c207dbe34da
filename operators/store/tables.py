"""Writes and reads of the embedded store: staging, commits, updates, deletes, lookups.

Every function runs on the store's worker thread with its one connection; each write is one
transaction (schema.write), and every write that changes what is served appends the
document's row id to `changes`, which other stores on the file read to catch up
(operators/store/vectors.py). The tables are described in operators/store/schema.py.
"""
from __future__ import annotations

import sqlite3
import time

import msgspec
import numpy as np

from operators.store.engine import StoredChunk, StoreError
from operators.store.filters import document_filter
from operators.store.schema import TENANT_SHIFT, write
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey, Principal

KEEP_CHANGES = 50_000          # change rows kept; a reader further behind reloads in full

_UPSERT = """
INSERT INTO chunks (id, doc, version, idx, text, char_start, char_end, title, section_path, vector)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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


def stage(conn: sqlite3.Connection, doc: DocumentInfo, chunks: list[ChunkRecord],
          vectors: np.ndarray) -> None:
    """Upsert chunks of doc.version; unchanged rows are left alone (redelivery is free)."""
    with write(conn):
        doc_row, live = _ensure_document(conn, doc.key)
        ids = _chunk_ids(conn, doc, doc_row, chunks)
        before = conn.total_changes
        conn.executemany(_UPSERT, [
            (ids[c.index], doc_row, doc.version, c.index, c.text, c.start, c.end, doc.title,
             _JSON.encode(c.section_path).decode(), vec.tobytes())
            for c, vec in zip(chunks, vectors)])
        if live == doc.version and conn.total_changes != before:
            _log_change(conn, doc_row)         # served rows were rewritten: readers reload them


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
        conn.execute("DELETE FROM live_chunks WHERE doc = ?", (doc_row,))
        conn.execute("INSERT INTO live_chunks SELECT id, doc FROM chunks WHERE doc = ?",
                     (doc_row,))
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
        for table, column in (("chunks", "doc"), ("live_chunks", "doc"), ("acl", "doc"),
                              ("doc_meta", "doc"), ("documents", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (row[0],))
        _log_change(conn, row[0])
        return row[1] or ""


def document(conn: sqlite3.Connection, key: DocumentKey) -> DocumentInfo | None:
    row = conn.execute("SELECT version, title, filename, acl, metadata, chunks FROM documents "
                       "WHERE tenant = ? AND collection = ? AND doc_id = ? "
                       "AND version IS NOT NULL", _key(key)).fetchone()
    if row is None:
        return None
    return DocumentInfo(key=key, version=row[0], title=row[1], filename=row[2],
                        acl=_LIST.decode(row[3]), metadata=_DICT.decode(row[4]), chunks=row[5])


def documents(conn: sqlite3.Connection, principal: Principal,
              collection: str) -> list[DocumentInfo]:
    where, params = document_filter(principal, [collection] if collection else [], {})
    rows = conn.execute("SELECT d.tenant, d.collection, d.doc_id, d.version, d.title, d.filename, "
                        f"d.acl, d.metadata, d.chunks FROM documents AS d WHERE {where} "
                        "ORDER BY d.collection, d.doc_id", params)
    return [DocumentInfo(key=DocumentKey(tenant=r[0], collection=r[1], doc_id=r[2]),
                         version=r[3], title=r[4], filename=r[5], acl=_LIST.decode(r[6]),
                         metadata=_DICT.decode(r[7]), chunks=r[8]) for r in rows]


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


def tenant_rows(conn: sqlite3.Connection, tenant: str) -> tuple[int, int] | None:
    """The chunk ids a tenant's chunks take (first, last), or None for an unknown tenant."""
    row = conn.execute("SELECT id FROM tenants WHERE name = ?", (tenant,)).fetchone()
    if row is None:
        return None
    return row[0] << TENANT_SHIFT, ((row[0] + 1) << TENANT_SHIFT) - 1


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


def _chunk_ids(conn: sqlite3.Connection, doc: DocumentInfo, doc_row: int,
               chunks: list[ChunkRecord]) -> dict[int, int]:
    """chunk index → id: the staged row's id, or a new one from the tenant's range."""
    ids = dict(conn.execute("SELECT idx, id FROM chunks WHERE doc = ? AND version = ?",
                            (doc_row, doc.version)))
    fresh = sorted({c.index for c in chunks} - ids.keys())
    if fresh:
        conn.execute("INSERT INTO tenants (name) VALUES (?) ON CONFLICT DO NOTHING",
                     (doc.key.tenant,))
        tenant, end = conn.execute(
            "UPDATE tenants SET next_chunk = next_chunk + ? WHERE name = ? "
            "RETURNING id, next_chunk", (len(fresh), doc.key.tenant)).fetchone()
        if end >= 1 << TENANT_SHIFT:
            raise StoreError(f"tenant {doc.key.tenant!r} has used up its "
                             f"2^{TENANT_SHIFT} chunk ids")
        base = (tenant << TENANT_SHIFT) + end - len(fresh)
        ids.update({index: base + i for i, index in enumerate(fresh)})
    return ids


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
