"""What a runner writes: outputs, failures, dead letters and progress, for one operator.

Output ids are derived from the input's own identity, so a redelivered input writes the very
same Nats-Msg-Id and JetStream drops the repeat:

    <job>:<operator>:<digest of (input id, output index)>

where the input id is its Nats-Msg-Id, else its stream sequence. Two outputs of one job can
never share an id (unlike a bare <job>:<stage>, which fan-out or two writers would collide on).
"""
from __future__ import annotations

import hashlib
import logging
import time

from schemas import Failure, FailureCategory, Headers, Message, Progress, Stage, encoder
from topology import tracing
from topology.bus import Bus
from topology.delivery import Delivery
from topology.spec import Mode, TopologySpec
from topology.subjects import NO_KEY

log = logging.getLogger("patchwire.publish")
PROPAGATED = (Headers.JOB, Headers.SESSION, Headers.DEADLINE)
MAX_REASON = 2000


def input_id(d: Delivery) -> str:
    return d.headers.get(Headers.MSG_ID) or f"{d.subject}#{d.stream_seq}"


def output_id(job: str, operator: str, in_id: str, index: int) -> str:
    digest = hashlib.blake2b(f"{in_id}\x00{index}".encode(), digest_size=8).hexdigest()
    return f"{job or NO_KEY}:{operator}:{digest}"


def carried(headers: dict[str, str]) -> dict[str, str]:
    return {k: headers[k] for k in PROPAGATED if k in headers}


class Publisher:
    def __init__(self, bus: Bus, topo: TopologySpec, operator: str, output: str | None,
                 output_mode: Mode | None):
        self.bus, self.topo, self.operator = bus, topo, operator
        self.output, self.output_mode = output, output_mode
        self.subjects = bus.subjects
        self.encoder = encoder()

    async def output_msg(self, out: Message, d: Delivery, index: int) -> None:
        if self.output is None:
            return
        headers = carried(d.headers)
        key = d.headers.get(Headers.JOB) or d.headers.get(Headers.SESSION) or NO_KEY
        tracing.inject(headers)
        data = self.encoder.encode(out)
        subject = self.subjects.edge(self.output, key)
        if self.output_mode is not Mode.DURABLE:
            return await self.bus.nc.publish(subject, data, headers=headers)
        headers[Headers.MSG_ID] = output_id(d.headers.get(Headers.JOB, ""), self.operator,
                                            input_id(d), index)
        ack = await self.bus.js.publish(subject, data, headers=headers)
        if ack.duplicate and d.attempt == 1:
            log.warning("%s: output %s was a duplicate on a first delivery (id %s)",
                        self.operator, subject, headers[Headers.MSG_ID])

    async def failure(self, d: Delivery, category: FailureCategory, reason: str, *,
                      final: bool = True, dead: bool = False) -> bool:
        """Report a failure; True when everything that should be stored was stored."""
        job = d.headers.get(Headers.JOB, "")
        reason = reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "…"
        failure = Failure(category=category, operator=self.operator, reason=reason,
                          subject=d.subject, job_id=job, msg_id=d.headers.get(Headers.MSG_ID, ""),
                          stream_seq=d.stream_seq, attempt=d.attempt, final=final, time=time.time())
        headers = carried(d.headers)
        tracing.inject(headers)
        try:
            key = job or d.headers.get(Headers.SESSION, "")
            await self.bus.js.publish(self.subjects.edge(self.topo.errors, key),
                                      self.encoder.encode(failure), headers=headers)
            if dead and d.durable:
                await self.dead_letter(failure, d)
            if final:
                await self.progress(d, Stage.FAILED, note=reason)
        except Exception as e:  # reporting must not become a second failure; the caller naks
            log.error("%s: could not report %s failure: %r", self.operator, category.value, e)
            return False
        return True

    async def dead_letter(self, failure: Failure, d: Delivery) -> None:
        headers = {"Pw-Reason": failure.reason[:1000].replace("\n", " "),
                   "Pw-Category": failure.category.value, "Pw-Subject": d.subject,
                   Headers.MSG_ID: f"dead:{input_id(d)}", **carried(d.headers)}
        await self.bus.js.publish(self.subjects.dead_letter(self.operator), d.data, headers=headers)

    async def progress(self, d: Delivery, stage: Stage, done: float = 0.0, total: float = 0.0,
                       note: str = "") -> None:
        job = d.headers.get(Headers.JOB, "")
        if not job or not d.durable:
            return
        event = Progress(job_id=job, operator=self.operator, stage=stage, done=done, total=total,
                         note=note[:MAX_REASON], attempt=d.attempt, time=time.time())
        await self.bus.nc.publish(self.subjects.progress(job), self.encoder.encode(event))
