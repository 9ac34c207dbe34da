"""Rerank and filter: keep the passages that are about the question, best first.

The fused list from retrieval is cut to `keep` passages, and passages that neither search
found convincing are dropped: a passage must reach `min_similarity` (cosine with the
query), or be a keyword match that is at least half that similar. When nothing is left,
the answer step abstains without calling the model, and the closest passages are kept to
show the user where the search looked.
"""
from __future__ import annotations

import time
from typing import Annotated, AsyncIterator

import msgspec

from operators.base import Context, Operator
from schemas.documents import Candidates, Passage


class RerankConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keep: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    min_similarity: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.3
    show_closest: Annotated[int, msgspec.Meta(ge=0)] = 3


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

    async def process(self, found: Candidates, ctx: Context) -> AsyncIterator[Candidates]:
        started = time.perf_counter()
        cfg = self.config
        kept = [p for p in found.passages if relevant(p, cfg.min_similarity)][:cfg.keep]
        closest = [] if kept else found.passages[:cfg.show_closest]
        timings = {**found.timings, "rerank_ms": (time.perf_counter() - started) * 1000}
        yield Candidates(query=found.query, passages=kept, closest=closest, timings=timings)
