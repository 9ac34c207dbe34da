"""An operator killed with SIGKILL mid-job: the job is redelivered and produces exactly one output."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from schemas import Ping, Progress, Stage
from tests.bus_helpers import send, stream_messages, topology
from tests.conftest import ROOT
from topology.app import Deployment

TOPOLOGY = """
name: t
edges:
  pings: {type: Ping}
  pongs: {type: Ping}
  errors: {type: Failure}
inputs: [pings]
outputs: [pongs, errors]
operators:
  - {name: op, kind: "tests.helpers:SlowTail", input: pings, output: pongs}
durability: {ack_wait_s: 2, max_deliver: 4, backoff_s: [0.1]}
"""


async def _replica(topo_file: Path, url: str, namespace: str) -> subprocess.Popen:
    env = {**os.environ, "NATS_URL": url, "PATCHWIRE_NAMESPACE": namespace, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "topology.cli", "operator", "op", "--topology",
                             str(topo_file)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = await asyncio.to_thread(proc.stdout.readline)
    assert b"serving" in line, line
    return proc


@pytest.mark.slow
async def test_sigkill_mid_job_redelivers_and_writes_once(nats_server, namespace, tmp_path):
    topo_file = tmp_path / "t.yaml"
    topo_file.write_text(TOPOLOGY)
    dep = await Deployment.open(topology("echo"), nats_server.url, namespace)  # streams only
    progress: list[Progress] = []
    done = asyncio.Event()

    async def on_progress(msg):
        p = msgspec.msgpack.decode(msg.data, type=Progress)
        progress.append(p)
        if p.stage is Stage.DONE:
            done.set()
    await dep.bus.nc.subscribe(dep.bus.subjects.progress("jkill"), cb=on_progress)
    first = await _replica(topo_file, nats_server.url, namespace)
    second = None
    try:
        await send(dep, msgspec.msgpack.encode(Ping(seq=30)), job="jkill")  # 3 s of work after output
        pong_subject = dep.bus.subjects.edge("pongs", "jkill")
        for _ in range(100):  # the output is out; the input is not yet acked
            if await stream_messages(dep, pong_subject):
                break
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = await _replica(topo_file, nats_server.url, namespace)
        await asyncio.wait_for(done.wait(), 30)
        assert [p.attempt for p in progress if p.stage is Stage.DONE] == [2]
        pongs = await stream_messages(dep, pong_subject)
        assert len(pongs) == 1, f"{len(pongs)} outputs for one job"
        work = await dep.bus.js.stream_info(dep.bus.subjects.work_stream)
        assert work.state.messages == 0  # acked and gone from the work queue
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
        await dep.close()


@pytest.mark.slow
async def test_job_that_kills_every_replica_is_dead_lettered(nats_server, namespace, tmp_path):
    topo_file = tmp_path / "t.yaml"
    topo_file.write_text(TOPOLOGY.replace("tests.helpers:SlowTail", "tests.helpers:Suicide")
                         .replace("max_deliver: 4", "max_deliver: 2").replace("ack_wait_s: 2", "ack_wait_s: 1"))
    dep = await Deployment.open(topology("echo"), nats_server.url, namespace)
    await dep.watch_dead_letters("op")
    dead = dep.bus.subjects.dead_letter("op")
    try:
        await send(dep, msgspec.msgpack.encode(Ping(seq=1)), job="jdoomed")
        proc = None
        for _ in range(300):  # a supervisor restarting the replica each time it dies
            if await stream_messages(dep, dead):
                break
            if proc is None or proc.poll() is not None:
                proc = await _replica(topo_file, nats_server.url, namespace)
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        await asyncio.sleep(0.5)
        letters = await stream_messages(dep, dead)
        assert len(letters) == 1
        assert "delivered 2 times" in letters[0].headers["Pw-Reason"]
        work = await dep.bus.js.stream_info(dep.bus.subjects.work_stream)
        assert work.state.messages == 0
    finally:
        await dep.close()
