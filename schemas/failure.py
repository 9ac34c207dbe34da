"""Failures: what went wrong, where, and which message it was."""
from __future__ import annotations

import enum

from schemas.base import Message


class FailureCategory(str, enum.Enum):
    BAD_INPUT = "bad_input"          # the operator rejected the content (Reject)
    BAD_MESSAGE = "bad_message"      # undecodable bytes, wrong type, unknown tag
    OPERATOR_ERROR = "operator_error"  # an unexpected exception (retried when durable)
    DEADLINE = "deadline"            # the deadline header had passed
    BUSY = "busy"                    # shed by a bounded queue
    DEAD_LETTER = "dead_letter"      # redelivered max_deliver times, given up


class Failure(Message, frozen=True):
    category: FailureCategory
    operator: str
    reason: str
    subject: str = ""
    job_id: str = ""
    msg_id: str = ""
    stream_seq: int = 0       # the original message, when it came from a stream
    attempt: int = 1
    final: bool = True        # False while a durable retry is still to come
    time: float = 0.0
