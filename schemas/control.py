"""Control and progress events."""
from __future__ import annotations

import enum

from schemas.base import Message


class Stage(str, enum.Enum):
    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Progress(Message, frozen=True):
    job_id: str
    operator: str
    stage: Stage
    done: float = 0.0
    total: float = 0.0
    note: str = ""
    attempt: int = 1
    time: float = 0.0


class Cancel(Message, frozen=True):
    """Stop work for a session (barge-in) or a job."""

    session_id: str = ""
    job_id: str = ""
    reason: str = ""
    operators: list[str] = []   # only these operators stop (empty: all); barge-in spares `listen`
    # Only work on messages of an earlier turn stops (0: any). Barge-in names the user's new
    # turn: its UserTurn may reach the agent before this Cancel does, and must be answered.
    before_turn: int = 0


class Ping(Message, frozen=True):
    """A tiny message for the bus benchmarks and health checks."""

    seq: int
    sent_ns: int = 0
    payload: bytes = b""
