"""The store engine for the operators that read or write documents (chunk, index, retrieve).

Every operator of a deployment must open the same store: by default the file in the data
directory ($PATCHWIRE_DATA_DIR, else the platform's user data dir), or `store:` in the
operator's config (a path), or PATCHWIRE_STORE for all of them at once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs


def default_store_path() -> Path:
    base = os.environ.get("PATCHWIRE_DATA_DIR") or platformdirs.user_data_dir("patchwire")
    return Path(base) / "documents" / "store.sqlite"


def store_path(config: Any) -> Path:
    chosen = os.environ.get("PATCHWIRE_STORE") or getattr(config, "store", "")
    return Path(chosen).expanduser() if chosen else default_store_path()


def embedded_store(config: Any):
    """SQLite (BM25 via FTS5) + exact vector search: operators/store/sqlite.py."""
    from operators.store.sqlite import SqliteStore
    path = store_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path)
