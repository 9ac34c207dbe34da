"""Helpers for integration tests over a real nats-server."""
from __future__ import annotations

import asyncio

import msgspec

from schemas import CONTENT_TYPE, Headers
from topology import spec as topo_spec
from topology.app import Deployment


def topology(kind: str, mode: str = "durable",
             durability: str = "ack_wait_s: 2, max_deliver: 3, backoff_s: [0.1, 0.2]"
             ) -> topo_spec.TopologySpec:
    return topo_spec.parse(f"""
name: t
edges:
  pings: {{type: Ping, mode: {mode}}}
  pongs: {{type: Ping, mode: {mode}}}
  errors: {{type: Failure}}
inputs: [pings]
outputs: [pongs, errors]
operators:
  - {{name: op, kind: "{kind}", input: pings, output: pongs}}
durability: {{{durability}}}
""")


async def deploy(topo, server, namespace: str) -> Deployment:
    dep = await Deployment.open(topo, server.url, namespace)
    await dep.start_operators()
    return dep


async def send(dep: Deployment, data: bytes, job: str, durable: bool = True, **headers) -> None:
    h = {Headers.JOB: job, Headers.CONTENT_TYPE: CONTENT_TYPE, **headers}
    subject = dep.bus.subjects.edge("pings", job)
    if durable:
        await dep.bus.js.publish(subject, data, headers={Headers.MSG_ID: f"{job}:submit", **h})
    else:
        await dep.bus.nc.publish(subject, data, headers=h)


async def collect(dep: Deployment, edge: str, n: int, timeout: float = 10.0) -> list:
    """The first n messages on an edge (any key), decoded loosely."""
    got: list = []
    done = asyncio.Event()

    async def cb(msg):
        got.append((msg.subject, msgspec.msgpack.decode(msg.data), dict(msg.headers or {})))
        if len(got) >= n:
            done.set()
    sub = await dep.bus.nc.subscribe(dep.bus.subjects.edge_filter(edge), cb=cb)
    return sub, got, done


async def stream_messages(dep: Deployment, subject: str) -> list:
    """Every message kept in the events stream on a subject (no consumer left behind)."""
    js = dep.bus.js
    info = await js.stream_info(dep.bus.subjects.events_stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(dep.bus.subjects.events_stream, seq)
        except Exception:
            continue
        if raw.subject == subject:
            out.append(raw)
    return out
