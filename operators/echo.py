"""Small operators for plumbing: an echo (benchmarks, health) and a failure log (an errors sink)."""
from __future__ import annotations

import logging
from typing import AsyncIterator

from operators.base import Context, Operator
from schemas import Failure, Ping

log = logging.getLogger("patchwire.failures")


class Echo(Operator[Ping, Ping]):
    """Passes a Ping through unchanged: the cost of one hop, nothing else."""

    kind = "echo"
    input_type = Ping
    output_type = Ping

    async def process(self, msg: Ping, ctx: Context) -> AsyncIterator[Ping]:
        yield msg


class FailureLog(Operator[Failure, Failure]):
    """Consumes the errors edge and logs each failure in one line."""

    kind = "failures"
    input_type = Failure
    output_type = Failure

    async def process(self, msg: Failure, ctx: Context) -> AsyncIterator[Failure]:
        log.warning("%s in %s (job %s, attempt %d%s): %s", msg.category.value, msg.operator,
                    msg.job_id or "-", msg.attempt, "" if msg.final else ", will retry", msg.reason)
        return
        yield
