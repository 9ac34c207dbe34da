"""Realtime operators over a real nats-server: per-session ordering (`ordered: true`) and
Cancels aimed at some operators only (barge-in stops the agent, not the listener)."""
from __future__ import annotations

import asyncio

import msgspec

from schemas import Headers, Ping, UserTurn
from tests.bus_helpers import collect, deploy, send
from topology import spec as topo_spec
from topology.jobs import cancel

ENC = msgspec.msgpack.Encoder()


def realtime(kind: str, ordered: bool, concurrency: int = 4) -> topo_spec.TopologySpec:
    return topo_spec.parse(f"""
name: t
edges:
  pings: {{type: Ping, mode: realtime}}
  pongs: {{type: Ping, mode: realtime}}
  errors: {{type: Failure}}
inputs: [pings]
outputs: [pongs, errors]
operators:
  - {{name: op, kind: "{kind}", input: pings, output: pongs, concurrency: {concurrency},
      ordered: {str(ordered).lower()}}}
""")


async def _run_sessions(dep, sessions: list[str], per_session: int) -> dict[str, list[int]]:
    _, got, done = await collect(dep, "pongs", len(sessions) * per_session)
    for i in range(per_session):
        for s in sessions:
            await send(dep, ENC.encode(Ping(seq=i)), job="", durable=False, **{Headers.SESSION: s})
    await asyncio.wait_for(done.wait(), 30)
    order: dict[str, list[int]] = {s: [] for s in sessions}
    for subject, body, _ in got:
        order[subject.rpartition(".")[2]].append(body["seq"])
    return order


async def test_ordered_keeps_each_sessions_messages_in_order(nats_server, namespace):
    dep = await deploy(realtime("tests.helpers:Jittery", ordered=True), nats_server, namespace)
    try:
        order = await _run_sessions(dep, ["s1", "s2", "s3"], 20)
        assert all(seqs == list(range(20)) for seqs in order.values()), order
    finally:
        await dep.close()


async def test_unordered_workers_let_later_messages_overtake(nats_server, namespace):
    """The control: the same jitter without ordering reorders (so the test above can fail)."""
    dep = await deploy(realtime("tests.helpers:Jittery", ordered=False), nats_server, namespace)
    try:
        order = await _run_sessions(dep, ["s1"], 20)
        assert order["s1"] != list(range(20)) and sorted(order["s1"]) == list(range(20))
    finally:
        await dep.close()


async def test_a_cancel_for_other_operators_leaves_this_ones_work_alone(nats_server, namespace):
    dep = await deploy(realtime("tests.helpers:Sleeper", ordered=True), nats_server, namespace)
    try:
        _, got, done = await collect(dep, "pongs", 1)
        await send(dep, ENC.encode(Ping(seq=5)), job="", durable=False, **{Headers.SESSION: "s9"})
        await asyncio.sleep(0.2)
        await cancel(dep.bus, session_id="s9", operators=["agent"])     # not "op"
        await asyncio.wait_for(done.wait(), 10)                          # it finished anyway
        _, got2, done2 = await collect(dep, "pongs", 1)
        await send(dep, ENC.encode(Ping(seq=30)), job="", durable=False, **{Headers.SESSION: "s9"})
        await asyncio.sleep(0.2)
        await cancel(dep.bus, session_id="s9", operators=["op"])
        await asyncio.sleep(3.5)
        assert got2 == []                                                # this one was stopped
    finally:
        await dep.close()


async def test_an_immediate_message_skips_its_sessions_line(nats_server, namespace):
    dep = await deploy(realtime("tests.helpers:Sleeper", ordered=True), nats_server, namespace)
    try:
        _, got, done = await collect(dep, "pongs", 2)
        await send(dep, ENC.encode(Ping(seq=20)), job="", durable=False, **{Headers.SESSION: "s1"})
        await send(dep, ENC.encode(Ping(seq=1)), job="", durable=False,
                   **{Headers.SESSION: "s1", Headers.PRIORITY: "immediate"})
        await asyncio.wait_for(done.wait(), 10)
        assert [body["seq"] for _, body, _ in got] == [1, 20]   # it did not wait 2 s in line
    finally:
        await dep.close()


async def test_a_barge_in_cancel_spares_the_turn_that_interrupted(nats_server, namespace):
    """The new turn's UserTurn can reach the agent before the Cancel for the old reply."""
    topo = topo_spec.parse("""
name: t
edges:
  pings: {type: UserTurn, mode: realtime}
  pongs: {type: UserTurn, mode: realtime}
  errors: {type: Failure}
inputs: [pings]
outputs: [pongs, errors]
operators:
  - {name: op, kind: "tests.helpers:TurnSleeper", input: pings, output: pongs, concurrency: 4}
""")
    dep = await deploy(topo, nats_server, namespace)
    try:
        _, got, done = await collect(dep, "pongs", 1)
        for turn in (1, 2):
            await send(dep, ENC.encode(UserTurn(session_id="s9", turn=turn, text="x" * 10)),
                       job="", durable=False, **{Headers.SESSION: "s9"})
        await asyncio.sleep(0.3)
        await cancel(dep.bus, session_id="s9", operators=["op"], before_turn=2)
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(1.0)
        assert [body["turn"] for _, body, _ in got] == [2]      # turn 1 stopped, turn 2 answered
    finally:
        await dep.close()
