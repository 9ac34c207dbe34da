"""The bus: one NATS connection, its JetStream context, the topology's streams and bucket.

Raw nats-py, not FastStream, on every path: one hop through FastStream with msgspec measured
3.4-4.8k msg/s here against 20-30k for nats-py, and the realtime target is 10k msg/s per
operator process (loadtests/RESULTS.md). The runner keeps what FastStream would add (typed
decode, ack policy, queue groups) in topology/runner.py, in a few hundred lines.
"""
from __future__ import annotations

import base64
from pathlib import Path

import nats
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from schemas import ObjectRef
from topology.spec import Mode, TopologySpec
from topology.subjects import Subjects


def stream_edges(topo: TopologySpec) -> tuple[list[str], list[str]]:
    """Split durable edges: (work-queue edges, events edges).

    A durable edge read by exactly one operator and not a topology output is a work queue
    (each message consumed once, then gone). Everything else that should be kept - results,
    errors, edges read by several operators - lives in the events stream.
    """
    readers: dict[str, int] = {}
    for op in topo.operators:
        readers[op.input] = readers.get(op.input, 0) + 1
    work, events = [], []
    for name, edge in topo.edges.items():
        if edge.mode is not Mode.DURABLE and name != topo.errors:
            continue
        if readers.get(name) == 1 and name not in topo.outputs and name != topo.errors:
            work.append(name)
        else:
            events.append(name)
    return work, events


class Bus:
    def __init__(self, nc: nats.NATS, subjects: Subjects):
        self.nc = nc
        self.js = nc.jetstream()
        self.subjects = subjects

    @classmethod
    async def connect(cls, url: str, subjects: Subjects, name: str = "patchwire") -> "Bus":
        nc = await nats.connect(url, name=name, connect_timeout=5, max_reconnect_attempts=-1,
                                allow_reconnect=True)
        return cls(nc, subjects)

    async def ensure_streams(self, topo: TopologySpec) -> None:
        work, events = stream_edges(topo)
        d = topo.durability
        if work:
            await self._ensure(api.StreamConfig(
                name=self.subjects.work_stream,
                subjects=[self.subjects.edge_filter(e) for e in work],
                retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
                duplicate_window=d.duplicate_window_s))
        await self._ensure(api.StreamConfig(
            name=self.subjects.events_stream, subjects=self.subjects.events_subjects(events),
            retention=api.RetentionPolicy.LIMITS, storage=api.StorageType.FILE,
            max_age=d.max_age_s, duplicate_window=d.duplicate_window_s))

    async def _ensure(self, config: api.StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)

    def stream_for(self, topo: TopologySpec, edge: str) -> str:
        work, _ = stream_edges(topo)
        return self.subjects.work_stream if edge in work else self.subjects.events_stream

    async def blob_store(self, ttl_s: float = 0.0) -> "NatsBlobStore":
        try:
            store = await self.js.object_store(self.subjects.bucket)
        except (NotFoundError, BadRequestError):
            store = await self.js.create_object_store(
                self.subjects.bucket, config=api.ObjectStoreConfig(storage=api.StorageType.FILE, ttl=ttl_s or None))
        return NatsBlobStore(store, self.subjects.bucket)

    async def close(self) -> None:
        if self.nc.is_closed:
            return
        try:
            await self.nc.drain()
        except Exception:  # reconnecting or already gone: close without draining
            await self.nc.close()


def _hex_digest(digest: str | None) -> str:
    if not digest or "=" not in digest:
        return ""
    return base64.urlsafe_b64decode(digest.split("=", 1)[1]).hex()


class NatsBlobStore:
    """BlobStore on the JetStream Object Store, streamed in chunks to and from files."""

    def __init__(self, store, bucket: str):
        self.store = store
        self.bucket = bucket

    async def put_file(self, name: str, path: Path, content_type: str = "") -> ObjectRef:
        with open(path, "rb") as f:
            info = await self.store.put(name, f)
        return ObjectRef(bucket=self.bucket, name=name, size=info.size or 0,
                         sha256=_hex_digest(info.digest), content_type=content_type)

    async def get_file(self, ref: ObjectRef, path: Path) -> Path:
        try:
            with open(path, "wb") as f:
                await self.store.get(ref.name, writeinto=f)
        except NotFoundError:
            raise FileNotFoundError(f"no object {ref.name!r} in bucket {ref.bucket!r}") from None
        return Path(path)

    async def delete(self, ref: ObjectRef) -> None:
        try:
            await self.store.delete(ref.name)
        except NotFoundError:
            pass
