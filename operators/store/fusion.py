"""Reciprocal-rank fusion of the vector and keyword lists.

Cosine similarities and BM25 scores live on different scales, so hybrid search fuses ranks,
not scores: a chunk scores the sum over the lists it appears in of 1 / (rrf_k + rank), rank
1-based (Cormack et al., 2009; rrf_k = 60 is their constant). A chunk found by one list only
still takes part, so an exact keyword match the embedding missed can reach the top k. Ties
are broken by the best single rank and then by rowid, so results are deterministic.
"""
from __future__ import annotations

import msgspec

Ranked = list[tuple[int, float]]        # (chunk rowid, raw score), best first


class Fused(msgspec.Struct, kw_only=True):
    rowid: int
    score: float = 0.0
    vector_rank: int = 0
    keyword_rank: int = 0
    vector_score: float = 0.0
    keyword_score: float = 0.0


def fuse(vector: Ranked, keyword: Ranked, rrf_k: int, k: int) -> list[Fused]:
    """The k best of both lists by RRF score, with each list's rank and raw score kept."""
    merged: dict[int, Fused] = {}
    for rank, (rowid, raw) in enumerate(vector, 1):
        entry = merged.setdefault(rowid, Fused(rowid=rowid))
        entry.vector_rank, entry.vector_score = rank, raw
        entry.score += 1.0 / (rrf_k + rank)
    for rank, (rowid, raw) in enumerate(keyword, 1):
        entry = merged.setdefault(rowid, Fused(rowid=rowid))
        entry.keyword_rank, entry.keyword_score = rank, raw
        entry.score += 1.0 / (rrf_k + rank)
    return sorted(merged.values(), key=_order)[:max(k, 0)]


def single(ranked: Ranked, which: str, k: int) -> list[Fused]:
    """One list alone (mode vector or keyword): the raw score is the score."""
    out = []
    for rank, (rowid, raw) in enumerate(ranked[:max(k, 0)], 1):
        hit = Fused(rowid=rowid, score=raw)
        if which == "vector":
            hit.vector_rank, hit.vector_score = rank, raw
        else:
            hit.keyword_rank, hit.keyword_score = rank, raw
        out.append(hit)
    return out


def _order(f: Fused) -> tuple[float, int, int]:
    best = min(r for r in (f.vector_rank, f.keyword_rank) if r)
    return (-f.score, best, f.rowid)
