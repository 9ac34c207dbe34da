"""Index: embedded parts → the store; a version goes live when its last part is in.

The only writer of the store. Each part is staged (idempotent, so a redelivered part is
harmless); after each part the operator tries to commit, which succeeds once every chunk of
the version is staged, atomically replacing the previous version. Exactly one `Indexed`
comes out per job whatever the order the parts arrive in: the commit that made the version
live reports it, later (redelivered) commits find it live and stay silent.
"""
from __future__ import annotations

from typing import AsyncIterator

import msgspec

from operators.base import Context, Operator, Reject
from operators.store.engine import as_matrix
from schemas.documents import EmbeddedBatch, Indexed


class IndexConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    store: str = ""                      # the store file ("" = the data directory's)


class Index(Operator[EmbeddedBatch, Indexed]):
    kind = "index"
    input_type = EmbeddedBatch
    output_type = Indexed
    Config = IndexConfig

    async def start(self) -> None:
        self.opened = ""

    async def stop(self) -> None:
        await self.engine.close()

    async def process(self, msg: EmbeddedBatch, ctx: Context) -> AsyncIterator[Indexed]:
        batch, doc, store = msg.batch, msg.batch.doc, self.engine
        if batch.action == "delete":
            removed = await store.delete(doc.key)
            yield Indexed(key=doc.key, version="", action="delete", replaced=removed)
            return
        await self._open(msg)
        if batch.action == "unchanged":
            await store.update_document(doc)
            yield Indexed(key=doc.key, version=doc.version, action="unchanged", chunks=doc.chunks)
            return
        vectors = as_matrix(msg.vectors, msg.dim)
        if len(vectors) != len(batch.chunks):
            raise Reject(f"{len(batch.chunks)} chunks but {len(vectors)} vectors")
        live = await store.document(doc.key)
        if live is not None and live.version == doc.version:
            # Live already: a redelivered part, or a second job with the same bytes that
            # passed the chunk step before the first went live. One part answers for it.
            if batch.part == 0:
                yield Indexed(key=doc.key, version=doc.version, action="unchanged",
                              chunks=doc.chunks)
            return
        await store.put_chunks(doc, batch.chunks, vectors)
        replaced = await store.commit(doc)
        await ctx.progress(batch.part + 1, batch.parts, f"indexed part {batch.part + 1}/{batch.parts}")
        if replaced is not None:
            yield Indexed(key=doc.key, version=doc.version, action="put", chunks=doc.chunks,
                          replaced=replaced)

    async def _open(self, msg: EmbeddedBatch) -> None:
        if msg.model and self.opened != msg.model:
            await self.engine.open(msg.model, msg.dim)
            self.opened = msg.model
