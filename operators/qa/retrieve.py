"""Retrieve: a standalone query → candidate passages from the store, hybrid by default.

The query is embedded here (the model must be the one the index was built with; the store
refuses another) and the store runs vector and BM25 search with the asker's permissions
inside the query, fusing both lists by reciprocal rank.
"""
from __future__ import annotations

import time
from typing import Annotated, AsyncIterator

import msgspec

from operators.base import Context, Operator
from operators.embed.engine import Kind
from operators.ingest.embed import make_embedder
from operators.store.engine import Hit, SearchQuery
from schemas.documents import Candidates, Passage, Query


class RetrieveConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    store: str = ""
    model: str = "all-minilm-l6-v2"      # the embedding model of the index
    batch_size: int = 32
    threads: int = 1
    k: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20   # passages handed to rerank
    candidates: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 100  # per list before fusion
    rrf_k: Annotated[int, msgspec.Meta(ge=1)] = 60


def passage(hit: Hit) -> Passage:
    c = hit.chunk
    return Passage(chunk_id=c.chunk_id, key=c.key, index=c.index, text=c.text, start=c.start,
                   end=c.end, title=c.title, section_path=c.section_path, score=hit.score,
                   vector_rank=hit.vector_rank, keyword_rank=hit.keyword_rank,
                   keyword_score=hit.keyword_score,
                   relevance=hit.vector_score if hit.vector_rank else None)


class Retrieve(Operator[Query, Candidates]):
    kind = "retrieve"
    input_type = Query
    output_type = Candidates
    Config = RetrieveConfig

    async def start(self) -> None:
        self.embedder = make_embedder(self.config)
        await self.engine.open(self.embedder.name, self.embedder.dim)

    async def stop(self) -> None:
        await self.embedder.close()
        await self.engine.close()

    async def process(self, query: Query, ctx: Context) -> AsyncIterator[Candidates]:
        if query.clarify:
            yield Candidates(query=query, timings=query.timings)
            return
        ask, timings = query.ask, dict(query.timings)
        started = time.perf_counter()
        vector = None
        if ask.mode != "keyword":
            vector = (await self.embedder.embed([query.query], Kind.QUERY))[0].tolist()
        embedded = time.perf_counter()
        hits = await self.engine.search(SearchQuery(
            principal=ask.principal, text=query.query, vector=vector, mode=ask.mode,
            k=ask.top_k or self.config.k, candidates=self.config.candidates,
            collections=ask.collections, filters=ask.filters, rrf_k=self.config.rrf_k))
        timings["embed_query_ms"] = (embedded - started) * 1000
        timings["search_ms"] = (time.perf_counter() - embedded) * 1000
        yield Candidates(query=query, passages=[passage(h) for h in hits], timings=timings)
