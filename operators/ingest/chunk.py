"""Chunk: an IngestJob (a document in the object store) → its chunks, in parts.

Before parsing, the store is asked for the document's live version: when the content hash
is the same, nothing is parsed or embedded (an "unchanged" batch still carries the ACL and
metadata, which may have changed). A delete travels the same way so that the index
operator, the only writer, applies it in order with the document's other jobs.

Chunks go out in parts of `part_size` so that a long document never makes a message larger
than the bus allows (a part of 64 chunks of 200 tokens is ~60 kB of text, 100 kB once
embedded). The index operator makes a version live only when all parts are in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, AsyncIterator

import msgspec

from operators.base import Context, Operator, Reject
from operators.documents.chunk import chunk_document, content_hash
from operators.documents.parse import parse_document
from schemas.documents import ChunkBatch, ChunkRecord, DocumentInfo, IngestJob


class ChunkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    store: str = ""                      # the store file ("" = the data directory's)
    max_tokens: Annotated[int, msgspec.Meta(ge=16, le=2048)] = 200
    overlap_tokens: Annotated[int, msgspec.Meta(ge=0)] = 32
    part_size: Annotated[int, msgspec.Meta(ge=1, le=512)] = 64
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 50 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")


class Chunk(Operator[IngestJob, ChunkBatch]):
    kind = "chunk"
    input_type = IngestJob
    output_type = ChunkBatch
    Config = ChunkConfig

    async def start(self) -> None:
        if self.engine is not None:
            await self.engine.open("", 0)     # read-only use: any model

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    async def process(self, job: IngestJob, ctx: Context) -> AsyncIterator[ChunkBatch]:
        info = DocumentInfo(key=job.key, version=job.content_hash, filename=job.filename,
                            acl=job.acl, metadata=job.metadata)
        if job.delete:
            yield ChunkBatch(doc=info, action="delete")
            return
        if job.source is None:
            raise Reject("ingest job without a document (source is empty)")
        data = await self._read(job, ctx)
        version = content_hash(data)
        if job.content_hash and job.content_hash != version:
            raise Reject(f"document bytes do not match the content hash given "
                         f"({job.content_hash[:12]}… vs {version[:12]}…)")
        live = await self.engine.document(job.key) if self.engine is not None else None
        if live is not None and live.version == version:
            yield ChunkBatch(doc=msgspec.structs.replace(info, version=version, title=live.title,
                                                         chunks=live.chunks), action="unchanged")
            return
        async for batch in self._chunks(job, data, msgspec.structs.replace(info, version=version), ctx):
            yield batch

    async def _read(self, job: IngestJob, ctx: Context) -> bytes:
        if job.source.size > self.config.max_bytes:
            raise Reject(f"document is {job.source.size:,} bytes; the limit is "
                         f"{self.config.max_bytes:,}")
        path = Path(ctx.scratch) / f"{ctx.job_id or 'doc'}-{Path(job.filename).name or 'document'}"
        try:
            await ctx.blobs.get_file(job.source, path)
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    async def _chunks(self, job: IngestJob, data: bytes, info: DocumentInfo,
                      ctx: Context) -> AsyncIterator[ChunkBatch]:
        parsed = parse_document(data, job.filename or job.key.doc_id, job.content_type)
        cfg = self.config
        chunks = chunk_document(parsed, job.key.doc_id, cfg.max_tokens, cfg.overlap_tokens)
        records = [ChunkRecord(index=c.index, text=c.text, start=c.start, end=c.end,
                               section_path=c.section_path, token_count=c.token_count)
                   for c in chunks]
        info = msgspec.structs.replace(info, title=parsed.title, chunks=len(records))
        parts = (len(records) + cfg.part_size - 1) // cfg.part_size
        await ctx.progress(0, len(records), f"parsed {parsed.format}: {len(records)} chunks")
        for part in range(parts):
            chunk_slice = records[part * cfg.part_size:(part + 1) * cfg.part_size]
            yield ChunkBatch(doc=info, part=part, parts=parts, chunks=chunk_slice,
                             warnings=parsed.warnings if part == 0 else [])
