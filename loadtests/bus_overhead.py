"""Bus overhead per hop and one-hop throughput, on loopback.

    python loadtests/bus_overhead.py [--messages 20000] [--rounds 3]

Starts an embedded nats-server, runs the echo operator in its own process (`patchwire
operator`), and compares, in the same run:
  - direct:    publisher -> subscriber                     (0 hops; the floor)
  - raw:       publisher -> hand-written nats-py echo -> subscriber   (1 hop, no runner)
  - runner:    publisher -> patchwire echo (realtime edge) -> subscriber; anonymous messages
               are traced at PATCHWIRE_TRACE_RATIO (1 %), and once more with every one traced
  - durable:   publisher -> patchwire echo (JetStream edge) -> subscriber
Latency is measured one message at a time (p50/p99 round trip); per-hop overhead is the
runner's round trip minus the direct one. Throughput keeps a window of messages in flight.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import CONTENT_TYPE, Headers, Ping  # noqa: E402
from topology.server import EmbeddedNats  # noqa: E402

ENC = msgspec.msgpack.Encoder()
DEC = msgspec.msgpack.Decoder(Ping)
NS = "bench"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Probe:
    """Sends Pings on `out`, receives them on `inp`, measures round trips and throughput."""

    def __init__(self, nc, out: str, inp: str, durable: bool = False):
        self.nc, self.out, self.inp, self.durable = nc, out, inp, durable
        self.js = nc.jetstream()
        self.received = 0
        self.arrived = asyncio.Event()

    async def start(self):
        async def cb(msg):
            self.received += 1
            self.arrived.set()
        self.sub = await self.nc.subscribe(self.inp, cb=cb)

    async def send(self, seq: int):
        headers = {Headers.CONTENT_TYPE: CONTENT_TYPE}
        data = ENC.encode(Ping(seq=seq, sent_ns=time.perf_counter_ns()))
        if self.durable:
            headers[Headers.JOB] = f"b{seq}"
            await self.js.publish(self.out.replace("._", f".b{seq}"), data, headers=headers)
        else:
            await self.nc.publish(self.out, data, headers=headers)

    async def latency(self, n: int) -> list[float]:
        rtts = []
        for i in range(n):
            self.arrived.clear()
            before = self.received
            t0 = time.perf_counter()
            await self.send(i)
            while self.received == before:
                await asyncio.wait_for(self.arrived.wait(), 5)
                self.arrived.clear()
            rtts.append((time.perf_counter() - t0) * 1000)
        return rtts

    async def throughput(self, n: int, window: int = 500) -> float:
        start_count = self.received
        t0 = time.perf_counter()
        for i in range(n):
            while i - (self.received - start_count) >= window:
                self.arrived.clear()
                await asyncio.wait_for(self.arrived.wait(), 10)
            await self.send(i)
        while self.received - start_count < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return n / (time.perf_counter() - t0)


RAW_ECHO = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def cb(m):
        await nc.publish(sys.argv[3], m.data, headers=m.headers)
    await nc.subscribe(sys.argv[2], queue="raw", cb=cb)
    await nc.flush()
    print("serving", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def spawn(args: list[str], env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = proc.stdout.readline()
    if b"serving" not in line:
        raise RuntimeError(f"{args[:4]} did not start: {line!r} {proc.stdout.read()[:2000]!r}")
    return proc


async def measure(nc, name: str, out: str, inp: str, args, durable=False) -> dict:
    probe = Probe(nc, out, inp, durable)
    await probe.start()
    await probe.latency(200)  # warm up
    rtts = await probe.latency(args.latency)
    rate = await probe.throughput(args.messages if not durable else args.messages // 5)
    await probe.sub.unsubscribe()
    return {"path": name, "p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99), "rate": rate}


async def one_round(url: str, args, env: dict) -> list[dict]:
    nc = await nats.connect(url)
    rows = [await measure(nc, "direct (0 hops)", f"{NS}.d.x._", f"{NS}.d.x._", args)]
    raw = spawn([sys.executable, "-c", RAW_ECHO, url, f"{NS}.r.in.>", f"{NS}.r.out._"], env)
    try:
        rows.append(await measure(nc, "raw nats-py echo", f"{NS}.r.in._", f"{NS}.r.out._", args))
    finally:
        raw.terminate()
    op = spawn([sys.executable, "-m", "topology.cli", "operator", "echo", "--topology",
                str(ROOT / "loadtests/echo.yaml")], env)
    dur = spawn([sys.executable, "-m", "topology.cli", "operator", "echo-durable", "--topology",
                 str(ROOT / "loadtests/echo.yaml")], env)
    try:
        rows.append(await measure(nc, "patchwire runner (realtime)", f"{NS}.echo.pings._",
                                  f"{NS}.echo.pongs.>", args))
        rows.append(await measure(nc, "patchwire runner (durable, every job traced)",
                                  f"{NS}.echo.jobs._", f"{NS}.echo.results.>", args, durable=True))
    finally:
        for p in (op, dur):
            p.terminate()
            p.wait()
    traced = spawn([sys.executable, "-m", "topology.cli", "operator", "echo", "--topology",
                    str(ROOT / "loadtests/echo.yaml")], {**env, "PATCHWIRE_TRACE_RATIO": "1"})
    try:
        rows.append(await measure(nc, "patchwire runner (realtime, every message traced)",
                                  f"{NS}.echo.pings._", f"{NS}.echo.pongs.>", args))
    finally:
        traced.terminate()
        traced.wait()
    await nc.drain()
    return rows


def summarize(rounds: list[list[dict]]) -> str:
    lines = ["| path | p50 round trip ms | p99 round trip ms | msg/s (median of rounds) |",
             "|---|---|---|---|"]
    by_path: dict[str, list[dict]] = {}
    for rows in rounds:
        for r in rows:
            by_path.setdefault(r["path"], []).append(r)
    for path, rs in by_path.items():
        lines.append(f"| {path} | {statistics.median(r['p50'] for r in rs):.3f} | "
                     f"{statistics.median(r['p99'] for r in rs):.3f} | "
                     f"{statistics.median(r['rate'] for r in rs):,.0f} |")
    direct = by_path["direct (0 hops)"]
    runner = by_path["patchwire runner (realtime)"]
    hop50 = statistics.median(r["p50"] for r in runner) - statistics.median(r["p50"] for r in direct)
    hop99 = statistics.median(r["p99"] for r in runner) - statistics.median(r["p99"] for r in direct)
    lines.append(f"\nPer-hop overhead (runner minus direct): p50 {hop50:.3f} ms, p99 {hop99:.3f} ms")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--latency", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(Path(tmp)).start()
        env = {**os.environ, "NATS_URL": server.url, "PATCHWIRE_NAMESPACE": NS,
               "PYTHONPATH": str(ROOT), "PATCHWIRE_TRACE_FILE": str(Path(tmp) / "spans.jsonl")}
        try:
            rounds = [await one_round(server.url, args, env) for _ in range(args.rounds)]
        finally:
            server.stop()
    print(summarize(rounds))


if __name__ == "__main__":
    asyncio.run(main())
