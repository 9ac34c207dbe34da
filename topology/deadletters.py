"""Dead letters for jobs that kill their operator: when a process dies on every attempt, the
runner never gets to say why, so JetStream's max-deliveries advisory does it instead.

One watcher per consumer runs in every process that serves it, in a queue group, so each
advisory is handled once; the dead letter's Nats-Msg-Id makes a repeat harmless.
"""
from __future__ import annotations

import json
import logging
import time

import msgspec

from schemas import Failure, FailureCategory, Headers
from topology.bus import Bus

log = logging.getLogger("patchwire.deadletters")
ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


async def watch(bus: Bus, stream: str, operator: str, errors_edge: str):
    """Subscribe to the advisory for one operator's durable consumer; returns the subscription."""

    async def on_advisory(msg) -> None:
        try:
            event = json.loads(msg.data)
            await _dead_letter(bus, stream, operator, errors_edge, int(event["stream_seq"]),
                               int(event.get("deliveries", 0)))
        except Exception as e:  # a watcher that dies would hide every later dead letter
            log.error("max-deliveries advisory for %s not handled: %r", operator, e)

    return await bus.nc.subscribe(ADVISORY.format(stream=stream, consumer=operator),
                                  queue=f"{operator}-deadletters", cb=on_advisory)


async def _dead_letter(bus: Bus, stream: str, operator: str, errors_edge: str, seq: int,
                       deliveries: int) -> None:
    original = await bus.js.get_msg(stream, seq)
    headers = dict(original.headers or {})
    job = headers.get(Headers.JOB, "")
    reason = (f"delivered {deliveries} times and never acknowledged: the operator process "
              f"died or hung on this message each time")
    await bus.js.publish(bus.subjects.dead_letter(operator), original.data, headers={
        "Pw-Reason": reason, "Pw-Category": FailureCategory.DEAD_LETTER.value,
        "Pw-Subject": original.subject, Headers.MSG_ID: f"dead:{original.subject}:{seq}",
        **({Headers.JOB: job} if job else {})})
    failure = Failure(category=FailureCategory.DEAD_LETTER, operator=operator, reason=reason,
                      subject=original.subject, job_id=job, stream_seq=seq, attempt=deliveries,
                      final=True, time=time.time())
    await bus.nc.publish(bus.subjects.edge(errors_edge, job), msgspec.msgpack.encode(failure))
    await bus.js.delete_msg(stream, seq)  # nothing will ever ack it: don't keep it forever
    log.warning("dead-lettered %s seq %d for %s: %s", original.subject, seq, operator, reason)
