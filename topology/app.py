"""A deployment: a checked topology, a NATS server (found or embedded), streams, and runners.

    async with Deployment.open(topo) as dep:     # connects to NATS_URL or starts nats-server
        await dep.start_operators()              # all of them, or only the names given
        await dep.wait_for_signal()              # SIGINT/SIGTERM: drain, then stop
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

import platformdirs

from topology import deadletters
from topology.bus import Bus
from topology.graph import Bound, check
from topology.runner import OperatorRunner
from topology.server import EmbeddedNats, answers
from topology.spec import Mode, TopologySpec
from topology.subjects import Subjects

log = logging.getLogger("patchwire")


def data_dir() -> Path:
    return Path(os.environ.get("PATCHWIRE_DATA_DIR") or platformdirs.user_data_dir("patchwire"))


class Deployment:
    def __init__(self, topo: TopologySpec, bound: list[Bound], bus: Bus,
                 server: EmbeddedNats | None, scratch: Path):
        self.topo = topo
        self.bound = bound
        self.bus = bus
        self.server = server
        self.scratch = scratch
        self.runners: list[OperatorRunner] = []
        self.watchers: list = []
        self.blobs = None

    @classmethod
    async def open(cls, topo: TopologySpec, url: str | None = None, namespace: str = "pw",
                   store_dir: Path | None = None) -> "Deployment":
        """Check the graph, then use the server at `url` if it answers, else start one."""
        bound = check(topo)
        server = None
        if not await answers(url):
            store = store_dir or data_dir() / "nats"
            server = await asyncio.to_thread(EmbeddedNats(store).start)
            url = server.url
        bus = None
        try:
            bus = await Bus.connect(url, Subjects(topo.name, namespace), name=f"patchwire-{topo.name}")
            await bus.ensure_streams(topo)
            blobs = await bus.blob_store(ttl_s=topo.durability.max_age_s)
        except BaseException:
            if bus is not None:
                await bus.close()
            if server:
                server.stop()
            raise
        dep = cls(topo, bound, bus, server, Path(tempfile.mkdtemp(prefix="pw-scratch-")))
        dep.blobs = blobs
        return dep

    @property
    def url(self) -> str:
        return self.server.url if self.server else self.bus.nc.connected_url.geturl()

    async def start_operators(self, names: list[str] | None = None) -> None:
        chosen = [b for b in self.bound if names is None or b.spec.name in names]
        for b in chosen:
            runner = OperatorRunner(b, self.topo, self.bus, self.blobs, self.scratch)
            await runner.start()
            self.runners.append(runner)
            log.info("operator %s (%s) serving %s", b.spec.name, b.spec.kind, b.spec.input)
            if b.input_mode is Mode.DURABLE:
                await self.watch_dead_letters(b.spec.name)

    async def watch_dead_letters(self, operator: str) -> None:
        """Dead-letter jobs that exhaust max_deliver without the runner seeing an exception."""
        stream = self.bus.stream_for(self.topo, self.topo.operator(operator).input)
        self.watchers.append(await deadletters.watch(self.bus, stream, operator, self.topo.errors))

    async def wait_for_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: draining in-flight work")

    async def close(self) -> None:
        try:
            await asyncio.gather(*(r.stop() for r in self.runners), return_exceptions=True)
            for sub in self.watchers:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await self.bus.close()
        finally:
            if self.server:
                self.server.stop()
            shutil.rmtree(self.scratch, ignore_errors=True)

    async def __aenter__(self) -> "Deployment":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
