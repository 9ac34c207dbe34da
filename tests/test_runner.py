"""The runner over a real nats-server: outputs, failures, retries, dead letters, deadlines."""
from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from schemas import Failure, FailureCategory, Headers, Ping, Transcript
from tests.bus_helpers import collect, deploy, send, stream_messages, topology
from topology.publish import output_id

ENC = msgspec.msgpack.Encoder()


async def test_echo_realtime_round_trip(nats_server, namespace):
    dep = await deploy(topology("echo", mode="realtime"), nats_server, namespace)
    try:
        sub, got, done = await collect(dep, "pongs", 3)
        for i in range(3):
            await send(dep, ENC.encode(Ping(seq=i)), job="", durable=False, **{Headers.SESSION: "s1"})
        await asyncio.wait_for(done.wait(), 10)
        assert sorted(m[1]["seq"] for m in got) == [0, 1, 2]
        assert all(s.endswith(".s1") for s, _, _ in got)  # the session keys the output subject
        assert all("traceparent" in h for _, _, h in got)
    finally:
        await dep.close()


async def test_garbage_wrong_type_and_unknown_tag_become_failures(nats_server, namespace):
    dep = await deploy(topology("echo"), nats_server, namespace)
    try:
        sub, errors, errs_done = await collect(dep, "errors", 3)
        _, pongs, pongs_done = await collect(dep, "pongs", 1)
        await send(dep, b"\xc1\xff garbage", job="j1")
        await send(dep, ENC.encode(Transcript(job_id="x")), job="j2")
        await send(dep, ENC.encode({"kind": "NoSuchMessage", "seq": 1}), job="j3")
        await send(dep, ENC.encode(Ping(seq=7)), job="j4")  # the operator keeps serving
        await asyncio.wait_for(errs_done.wait(), 10)
        await asyncio.wait_for(pongs_done.wait(), 10)
        failures = sorted((msgspec.convert(b, Failure) for _, b, _ in errors), key=lambda f: f.job_id)
        assert [f.job_id for f in failures] == ["j1", "j2", "j3"]
        assert {f.category for f in failures} == {FailureCategory.BAD_MESSAGE}
        assert all(f.operator == "op" and "cannot decode as Ping" in f.reason for f in failures)
        assert "Transcript" in failures[1].reason and "NoSuchMessage" in failures[2].reason
        assert failures[0].stream_seq > 0  # points back at the original message
        assert pongs[0][1]["seq"] == 7
    finally:
        await dep.close()


async def test_always_crashing_job_is_dead_lettered_with_reason(nats_server, namespace):
    dep = await deploy(topology("tests.helpers:Crasher"), nats_server, namespace)
    try:
        sub, errors, done = await collect(dep, "errors", 3)
        await send(dep, ENC.encode(Ping(seq=42)), job="jcrash")
        await asyncio.wait_for(done.wait(), 15)
        failures = [msgspec.convert(b, Failure) for _, b, _ in errors]
        assert [f.attempt for f in failures] == [1, 2, 3]
        assert [f.final for f in failures] == [False, False, True]
        assert "boom on seq 42" in failures[-1].reason
        await asyncio.sleep(0.3)
        dead = await stream_messages(dep, dep.bus.subjects.dead_letter("op"))
        assert len(dead) == 1
        assert "boom on seq 42" in dead[0].headers["Pw-Reason"]
        assert msgspec.msgpack.decode(dead[0].data, type=Ping).seq == 42  # the original is kept
    finally:
        await dep.close()


async def test_reject_is_not_retried(nats_server, namespace):
    dep = await deploy(topology("tests.helpers:Rejecter"), nats_server, namespace)
    try:
        sub, errors, done = await collect(dep, "errors", 1)
        await send(dep, ENC.encode(Ping(seq=-1)), job="jbad")
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.5)  # a retry would show up as a second failure
        assert len(errors) == 1
        f = msgspec.convert(errors[0][1], Failure)
        assert f.category is FailureCategory.BAD_INPUT and f.reason == "negative seq -1"
    finally:
        await dep.close()


async def test_transient_failure_is_retried_then_succeeds(nats_server, namespace):
    dep = await deploy(topology("tests.helpers:Flaky"), nats_server, namespace)
    try:
        _, pongs, done = await collect(dep, "pongs", 1)
        await send(dep, ENC.encode(Ping(seq=5)), job="jflaky")
        await asyncio.wait_for(done.wait(), 10)
        # job-keyed and derived from the input, so the retry wrote the same id as attempt 1 would
        assert pongs[0][2][Headers.MSG_ID] == output_id("jflaky", "op", "jflaky:submit", 0)
    finally:
        await dep.close()


async def test_past_deadline_is_a_failure_not_work(nats_server, namespace):
    dep = await deploy(topology("echo"), nats_server, namespace)
    try:
        sub, errors, done = await collect(dep, "errors", 1)
        await send(dep, ENC.encode(Ping(seq=1)), job="jlate", **{Headers.DEADLINE: f"{time.time() - 5:.3f}"})
        await asyncio.wait_for(done.wait(), 10)
        assert msgspec.convert(errors[0][1], Failure).category is FailureCategory.DEADLINE
    finally:
        await dep.close()


async def test_job_header_that_is_not_a_token_is_a_bad_message(nats_server, namespace):
    dep = await deploy(topology("echo"), nats_server, namespace)
    try:
        sub, errors, done = await collect(dep, "errors", 1)
        _, pongs, pongs_done = await collect(dep, "pongs", 1)
        subject = dep.bus.subjects.edge("pings", "x")
        await dep.bus.js.publish(subject, ENC.encode(Ping(seq=1)), headers={Headers.JOB: "a b.c"})
        await send(dep, ENC.encode(Ping(seq=2)), job="jfine")
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.wait_for(pongs_done.wait(), 10)
        f = msgspec.convert(errors[0][1], Failure)
        assert f.category is FailureCategory.BAD_MESSAGE and "Pw-Job" in f.reason
        assert pongs[0][1]["seq"] == 2
    finally:
        await dep.close()


async def test_fan_out_outputs_get_distinct_ids(nats_server, namespace):
    dep = await deploy(topology("tests.helpers:Splitter"), nats_server, namespace)
    try:
        _, pongs, done = await collect(dep, "pongs", 3)
        await send(dep, ENC.encode(Ping(seq=3)), job="jsplit")
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.2)
        stored = await stream_messages(dep, dep.bus.subjects.edge("pongs", "jsplit"))
        assert len({m.headers[Headers.MSG_ID] for m in stored}) == 3
    finally:
        await dep.close()


async def test_operator_without_progress_is_retried_by_the_watchdog(nats_server, namespace):
    topo = topology("tests.helpers:Hang", durability="ack_wait_s: 1, stall_s: 1, backoff_s: [0.1]")
    dep = await deploy(topo, nats_server, namespace)
    try:
        sub, errors, done = await collect(dep, "errors", 2)
        await send(dep, ENC.encode(Ping(seq=1)), job="jhang")
        await asyncio.wait_for(done.wait(), 20)
        f = msgspec.convert(errors[0][1], Failure)
        assert "no progress for 1 s" in f.reason and not f.final
    finally:
        await dep.close()


async def _start_then_cancel(dep, mode: str, key: str, stopped: list[str]) -> tuple[list, list]:
    """One Ping for `key` (a session or a job), a Cancel once its work has started, then wait
    until the operator's `stopped` list names the key; returns (errors, pongs) as collected."""
    from topology.jobs import cancel
    _, errors, _ = await collect(dep, "errors", 1)
    _, pongs, started = await collect(dep, "pongs", 1)
    headers = {Headers.SESSION: key} if mode == "realtime" else {}
    await send(dep, ENC.encode(Ping(seq=1)), job="" if mode == "realtime" else key,
               durable=mode == "durable", **headers)
    await asyncio.wait_for(started.wait(), 10)
    if mode == "realtime":
        await cancel(dep.bus, session_id=key)
    else:
        await cancel(dep.bus, job_id=key)
    for _ in range(200):
        if key in stopped:
            break
        await asyncio.sleep(0.05)
    return errors, pongs


@pytest.mark.parametrize("mode", ["realtime", "durable"])
async def test_a_cancel_the_work_swallowed_is_said_again(nats_server, namespace, mode):
    from tests.helpers import Swallower
    dep = await deploy(topology("tests.helpers:Swallower", mode=mode), nats_server, namespace)
    try:
        key = f"s{mode}"
        errors, pongs = await _start_then_cancel(dep, mode, key, Swallower.stopped)
        assert Swallower.stopped.count(key) == 1, Swallower.stopped
        if mode == "realtime":  # the worker serves on, not cancelled again
            await send(dep, ENC.encode(Ping(seq=2)), job="", durable=False, **{Headers.SESSION: "other"})
            for _ in range(100):
                if len(pongs) == 2:
                    break
                await asyncio.sleep(0.05)
            assert [p[1]["seq"] for p in pongs] == [1, 2]
        await asyncio.sleep(0.6)  # no late repeat reaches later work
        assert errors == []
    finally:
        await dep.close()


@pytest.mark.parametrize("mode", ["realtime", "durable"])
async def test_cancel_stops_a_sessions_work_without_a_failure(nats_server, namespace, mode):
    from tests.helpers import Waiter
    dep = await deploy(topology("tests.helpers:Waiter", mode=mode), nats_server, namespace)
    try:
        key = f"k{mode}"
        errors, _ = await _start_then_cancel(dep, mode, key, Waiter.stopped)
        assert key in Waiter.stopped, Waiter.stopped
        if mode == "durable":  # acked: a cancelled job is not redelivered
            for _ in range(100):
                work = await dep.bus.js.stream_info(dep.bus.subjects.work_stream)
                if work.state.messages == 0:
                    break
                await asyncio.sleep(0.05)
            assert work.state.messages == 0
        await asyncio.sleep(0.3)
        assert errors == []
    finally:
        await dep.close()


async def test_a_result_missed_by_the_subscription_is_read_from_the_stream(nats_server, namespace):
    from topology.jobs import JobWatch
    dep = await deploy(topology("echo"), nats_server, namespace)
    try:
        await send(dep, ENC.encode(Ping(seq=9)), job="jlate-watch")
        await asyncio.sleep(0.5)  # the result is out before anyone watches
        async with JobWatch(dep.bus, "jlate-watch", "pongs", Ping, "errors") as watch:
            result = await watch.wait(timeout=10, poll_s=0.2)
        assert result.seq == 9
    finally:
        await dep.close()


async def test_repeated_cancels_leave_the_realtime_worker_serving(nats_server, namespace):
    from topology.jobs import cancel
    dep = await deploy(topology("tests.helpers:Waiter", mode="realtime"), nats_server, namespace)
    try:
        _, pongs, _ = await collect(dep, "pongs", 99)
        await send(dep, ENC.encode(Ping(seq=1)), job="", durable=False, **{Headers.SESSION: "s-a"})
        for _ in range(100):
            if pongs:
                break
            await asyncio.sleep(0.05)
        for _ in range(3):  # barge-in said three times over
            await cancel(dep.bus, session_id="s-a")
        await asyncio.sleep(0.3)
        await send(dep, ENC.encode(Ping(seq=2)), job="", durable=False, **{Headers.SESSION: "s-b"})
        for _ in range(100):
            if len(pongs) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [p[1]["seq"] for p in pongs] == [1, 2]  # the single worker still serves
        worker = dep.runners[0].tasks[0]
        assert not worker.done() and worker.cancelling() == 0
    finally:
        await dep.close()
