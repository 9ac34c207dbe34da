"""The voice agent's persistence: calendar events, notes and per-user memories in SQLite.

One file for all users (the tables are keyed by user). Every write is one transaction, so a
tool call interrupted by barge-in has either happened completely or not at all.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, user TEXT NOT NULL, day TEXT NOT NULL,
    time TEXT NOT NULL DEFAULT '', title TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_day ON events (user, day);
CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, user TEXT NOT NULL, text TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS memories (id INTEGER PRIMARY KEY, user TEXT NOT NULL,
    summary TEXT NOT NULL, created REAL NOT NULL);
"""


class Notebook:
    """Thread-safe (tools run in worker threads); one connection, serialised by a lock."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(cur.lastrowid)

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def add_event(self, user: str, day: str, title: str, at: str = "") -> int:
        return self._write("INSERT INTO events (user, day, time, title, created) VALUES (?,?,?,?,?)",
                           (user, day, at, title, time.time()))

    def events(self, user: str, day: str) -> list[tuple[str, str]]:
        """(time, title) of the user's events on `day` (YYYY-MM-DD), by time."""
        return [(t, title) for t, title in self._read(
            "SELECT time, title FROM events WHERE user=? AND day=? ORDER BY time, id", (user, day))]

    def add_note(self, user: str, text: str) -> int:
        return self._write("INSERT INTO notes (user, text, created) VALUES (?,?,?)",
                           (user, text, time.time()))

    def notes(self, user: str, limit: int = 5) -> list[str]:
        return [t for (t,) in self._read(
            "SELECT text FROM notes WHERE user=? ORDER BY id DESC LIMIT ?", (user, limit))]

    def count_notes(self, user: str) -> int:
        return self._read("SELECT COUNT(*) FROM notes WHERE user=?", (user,))[0][0]

    def remember(self, user: str, summary: str) -> int:
        return self._write("INSERT INTO memories (user, summary, created) VALUES (?,?,?)",
                           (user, summary, time.time()))

    def memories(self, user: str, limit: int = 3) -> list[str]:
        """The user's latest session summaries, oldest first."""
        rows = self._read("SELECT summary FROM memories WHERE user=? ORDER BY id DESC LIMIT ?",
                          (user, limit))
        return [s for (s,) in reversed(rows)]
