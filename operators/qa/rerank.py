"""Rerank and filter: reorder the fused list by what the searches measured, then keep the
passages that are about the question, best first.

Reordering (operators/qa/rerankers.py, chosen on SciFact, evals/RESULTS.md):
    scores      passage cosine + BM25, each scaled to [0, 1] over the candidates (default;
                +0.010 nDCG@10 over plain fusion, no model call)
    sentences   the best cosine of any one sentence + BM25 (+0.021, but embeds every
                candidate's sentences: ~2 s a query on 2 cores unless cached)
    none        keep the fusion order
Filtering: a passage must reach `min_similarity` (cosine with the query), or be a keyword
match at least half that similar. When nothing is left, the answer step abstains without
calling the model, and the closest passages are kept to show where the search looked.
"""
from __future__ import annotations

import time
from typing import Annotated, AsyncIterator, Literal

import msgspec

from operators.base import Context, Operator
from operators.embed.engine import Kind
from operators.qa.rerankers import SCORES, SENTENCES, SentenceCache, rerank
from schemas.documents import Candidates, Passage

WEIGHTS = {"scores": SCORES, "sentences": SENTENCES}


class RerankConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    method: Literal["scores", "sentences", "none"] = "scores"
    depth: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20   # candidates reordered
    keep: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    min_similarity: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.3
    show_closest: Annotated[int, msgspec.Meta(ge=0)] = 3
    model: str = "all-minilm-l6-v2"          # "sentences" only: the index's embedding model
    batch_size: int = 32
    threads: int = 1
    cache_chunks: Annotated[int, msgspec.Meta(ge=0)] = 5000


def relevant(p: Passage, min_similarity: float) -> bool:
    similarity = p.relevance if p.relevance is not None else 0.0
    if p.vector_rank == 0:               # keyword-only: no similarity known, trust BM25 rank
        return p.keyword_rank > 0
    return similarity >= min_similarity or (p.keyword_rank > 0 and
                                            similarity >= min_similarity / 2)


class Rerank(Operator[Candidates, Candidates]):
    kind = "rerank"
    input_type = Candidates
    output_type = Candidates
    Config = RerankConfig
    embedder = sentences = None          # "sentences" only, made by start()

    async def start(self) -> None:
        if self.config.method == "sentences":
            from operators.ingest.embed import make_embedder
            self.embedder = make_embedder(self.config)
            self.sentences = SentenceCache(self.embedder, self.config.cache_chunks)

    async def stop(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()

    async def process(self, found: Candidates, ctx: Context) -> AsyncIterator[Candidates]:
        started = time.perf_counter()
        cfg = self.config
        ordered = await self._reordered(found)
        kept = [p for p in ordered if relevant(p, cfg.min_similarity)][:cfg.keep]
        closest = [] if kept else ordered[:cfg.show_closest]
        timings = {**found.timings, "rerank_ms": (time.perf_counter() - started) * 1000}
        yield Candidates(query=found.query, passages=kept, closest=closest, timings=timings)

    async def _reordered(self, found: Candidates) -> list[Passage]:
        if self.config.method == "none" or not found.passages:
            return list(found.passages)
        head, tail = found.passages[:self.config.depth], found.passages[self.config.depth:]
        vector = None
        if self.embedder is not None:
            vector = (await self.embedder.embed([found.query.query], Kind.QUERY))[0]
        reordered = await rerank(head, [p.keyword_score for p in head],
                                 WEIGHTS[self.config.method], vector, self.sentences)
        return reordered + tail
