"""The ingest operators without a bus: chunk parts, unchanged documents, and the index's
exactly-one `Indexed` whatever order (and however often) the parts arrive."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from operators.base import Context, Reject
from operators.documents.chunk import content_hash
from operators.ingest.chunk import Chunk, ChunkConfig
from operators.ingest.index import Index
from operators.store.engine import SearchQuery
from operators.store.sqlite import SqliteStore
from operators.testing import MemoryBlobStore, drive
from schemas.documents import (
    ChunkBatch,
    DocumentKey,
    EmbeddedBatch,
    Indexed,
    IngestJob,
    Principal,
)

KEY = DocumentKey(doc_id="guide.md")
GUIDE = "# Guide\n\n" + "\n\n".join(f"## Part {i}\n" + f"Sentence {i} about topic{i}. " * 30
                                     for i in range(6))


async def job_for(tmp_path: Path, data: bytes, blobs: MemoryBlobStore, **kw) -> IngestJob:
    path = tmp_path / "guide.md"
    path.write_bytes(data)
    ref = await blobs.put_file("j1/guide.md", path)
    return IngestJob(key=KEY, source=ref, filename="guide.md", content_hash=ref.sha256, **kw)


def ctx(blobs, tmp_path) -> Context:
    return Context(operator="chunk", job_id="j1", blobs=blobs, scratch=tmp_path)


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "store.sqlite")
    await s.open("test-model", 4)
    yield s
    await s.close()


def embedded(batch: ChunkBatch) -> EmbeddedBatch:
    rows = np.zeros((len(batch.chunks), 4), "<f4")
    rows[:, batch.part % 4] = 1.0
    return EmbeddedBatch(batch=batch, model="test-model", dim=4, vectors=rows.tobytes())


async def test_chunk_splits_into_parts_with_the_version_and_title(tmp_path, store):
    blobs = MemoryBlobStore()
    op = Chunk("chunk", ChunkConfig(max_tokens=64, overlap_tokens=8, part_size=3), store)
    batches = await drive(op, await job_for(tmp_path, GUIDE.encode(), blobs), ctx(blobs, tmp_path))
    assert len(batches) > 1 and {b.parts for b in batches} == {len(batches)}
    assert [b.part for b in batches] == list(range(len(batches)))
    assert all(b.doc.version == content_hash(GUIDE.encode()) and b.doc.title == "Guide"
               for b in batches)
    assert sum(len(b.chunks) for b in batches) == batches[0].doc.chunks


async def test_parts_out_of_order_and_redelivered_give_one_indexed(tmp_path, store):
    blobs = MemoryBlobStore()
    chunk = Chunk("chunk", ChunkConfig(max_tokens=64, overlap_tokens=8, part_size=3), store)
    batches = await drive(chunk, await job_for(tmp_path, GUIDE.encode(), blobs), ctx(blobs, tmp_path))
    index = Index("index", engine=store)
    await index.start()
    outs = []
    for batch in reversed(batches):               # last part first
        outs += await drive(index, embedded(batch))
    outs += await drive(index, embedded(batches[0]))   # a redelivery after it went live
    assert [o.action for o in outs if isinstance(o, Indexed)] == ["put", "unchanged"]
    assert (await store.count())["chunks"] == batches[0].doc.chunks
    # the same bytes again: the chunk step says "unchanged" without parsing
    again = await drive(chunk, await job_for(tmp_path, GUIDE.encode(), blobs, acl=["ops"]),
                        ctx(blobs, tmp_path))
    assert [b.action for b in again] == ["unchanged"]
    [done] = await drive(index, embedded(again[0]))
    assert done.action == "unchanged"
    hits = await store.search(SearchQuery(principal=Principal(groups=["ops"]), text="topic3",
                                          mode="keyword"))
    assert hits                                       # the new ACL applies to the live chunks
    assert not await store.search(SearchQuery(principal=Principal(groups=["eng"]), text="topic3",
                                              mode="keyword"))


async def test_a_changed_hash_or_missing_source_is_rejected(tmp_path, store):
    blobs = MemoryBlobStore()
    job = await job_for(tmp_path, GUIDE.encode(), blobs)
    bad = IngestJob(key=KEY, source=job.source, filename="guide.md", content_hash="0" * 64)
    with pytest.raises(Reject, match="content hash"):
        await drive(Chunk("chunk", engine=store), bad, ctx(blobs, tmp_path))
    with pytest.raises(Reject, match="without a document"):
        await drive(Chunk("chunk", engine=store), IngestJob(key=KEY), ctx(blobs, tmp_path))


async def test_vectors_that_do_not_match_the_chunks_are_rejected(tmp_path, store):
    blobs = MemoryBlobStore()
    [batch, *_] = await drive(Chunk("chunk", ChunkConfig(part_size=100), store),
                              await job_for(tmp_path, GUIDE.encode(), blobs), ctx(blobs, tmp_path))
    index = Index("index", engine=store)
    await index.start()
    short = EmbeddedBatch(batch=batch, model="test-model", dim=4, vectors=b"\0" * 16)
    with pytest.raises(Reject, match="vectors"):
        await drive(index, short)
