"""Retrieval quality on SciFact (BEIR test split, 300 claims) through our own store and embedder.

    python -m evals.scifact [--modes keyword,vector,hybrid,hybrid+rerank,hybrid+sentences]
                            [--limit N] [--threads 1] [--out evals/RESULTS.md]

The corpus is indexed once as our ingest would (evals/scifact_index.py) into a cached
SqliteStore; each claim is then embedded (MiniLM, Kind.QUERY) and searched in every mode
with the retrieve operator's settings (operators/qa/retrieve.py: candidates 100 per list,
rrf_k 60), as principal eval@scifact. `hybrid+rerank` and `hybrid+sentences` reorder the first
RERANK_DEPTH fused passages with operators/qa/rerankers.py (SCORES: min-max blend of
the passage cosine and BM25 retrieve already has; SENTENCES: best sentence cosine + BM25),
the rest following as they were. Rerank timings: the first call per claim (sentence vectors
embedded unless an earlier claim brought the same chunk) and the same call again (cached).

Chunk hits become a document ranking by each document's best chunk (evals/ir.py), and the
figures are nDCG@10 and recall@100 over documents, plus the median per-query latency
(query embedding + search, + rerank), one query at a time on this machine. Queries are also
split in two halves by a hash of their id: the rerankers were designed looking at the `tune`
half only (their weights are a plain 1:1), so `held-out` is the check on them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import msgspec
import numpy as np

from evals.ir import Qrels, bootstrap_interval, mean, ndcg_at, recall_at
from evals.scifact_index import PRINCIPAL, BuildStats, IndexCache, build, prepare, read_corpus
from operators.embed.engine import Embedder, Kind
from operators.qa.retrieve import RetrieveConfig, passage
from operators.qa.rerankers import SCORES, SENTENCES, SentenceCache, rerank
from operators.store.engine import Hit, SearchQuery
from schemas.documents import Passage

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "qa" / "scifact"
MODES = ("keyword", "vector", "hybrid", "hybrid+rerank", "hybrid+sentences")
RERANKED = {"hybrid+rerank": SCORES, "hybrid+sentences": SENTENCES}   # mode → weights
DEPTH = 200                 # chunks asked for: enough for 100 distinct documents
RERANK_DEPTH = 20           # the retrieve operator's k: what the rerank operator receives
DEFAULT_MODE = "hybrid+rerank"   # what the QA topology runs
TARGET_NDCG = 0.70               # the project's target for it

# (mode, query embedding, the first RERANK_DEPTH passages, their BM25) → reordered passages
Reranker = Callable[[str, list[float], list[Passage], list[float]], Awaitable[list[Passage]]]


class Claim(msgspec.Struct, frozen=True):
    query_id: str
    text: str

    @property
    def half(self) -> str:
        """A fixed split, independent of order: parity of the id's SHA-1."""
        return "tune" if hashlib.sha1(self.query_id.encode()).digest()[0] % 2 == 0 else "held-out"


class Scored(msgspec.Struct, kw_only=True):
    query_id: str
    half: str
    ndcg10: float
    recall100: float
    ms: float
    rerank_ms: float = 0.0
    warm_ms: float = 0.0


def read_claims(path: Path, qrels: Qrels) -> list[Claim]:
    """The claims that have judgements (the 300 of the test split), in file order."""
    with open(path) as lines:
        rows = [json.loads(line) for line in lines]
    return [Claim(r["_id"], r["text"]) for r in rows if r["_id"] in qrels]


class Found(msgspec.Struct, kw_only=True):
    passages: list[Passage]
    ms: float                       # embedding (if used) + search (+ rerank)
    rerank_ms: float = 0.0          # the reranker's first call: sentence vectors embedded
    warm_ms: float = 0.0            # the same call again: every sentence vector cached


async def search(store, claim: Claim, vector: list[float] | None, mode: str,
                 cfg: RetrieveConfig) -> list[Hit]:
    return await store.search(SearchQuery(
        principal=PRINCIPAL, text=claim.text, vector=vector, mode=mode, k=DEPTH,
        candidates=cfg.candidates, rrf_k=cfg.rrf_k))


async def run_claim(store, embedder: Embedder, claim: Claim, modes: list[str],
                    rerank: Reranker | None, cfg: RetrieveConfig) -> dict[str, Found]:
    """Every mode's passages and timings for one claim; the query embedding is shared."""
    started = time.perf_counter()
    vector = (await embedder.embed([claim.text], Kind.QUERY))[0].tolist()
    embed_ms = (time.perf_counter() - started) * 1000
    out: dict[str, Found] = {}
    for mode in modes:
        base = "hybrid" if mode in RERANKED else mode
        started = time.perf_counter()
        hits = await search(store, claim, vector if base != "keyword" else None, base, cfg)
        found = Found(passages=[passage(h) for h in hits],
                      ms=(time.perf_counter() - started) * 1000)
        if mode in RERANKED and rerank is not None:
            found = await _reranked(rerank, mode, vector, hits, found)
        found.ms += embed_ms if base != "keyword" else 0.0
        out[mode] = found
    return out


async def _reranked(rerank: Reranker, mode: str, vector: list[float], hits: list[Hit],
                    found: Found) -> Found:
    head = found.passages[:RERANK_DEPTH]
    bm25 = [h.keyword_score for h in hits[:RERANK_DEPTH]]
    timings = []
    for _ in range(2):                      # cold (embeds what is missing), then warm
        started = time.perf_counter()
        ordered = await rerank(mode, vector, head, bm25)
        timings.append((time.perf_counter() - started) * 1000)
    return Found(passages=ordered + found.passages[RERANK_DEPTH:], ms=found.ms + timings[0],
                 rerank_ms=timings[0], warm_ms=timings[1])


def make_reranker(embedder: Embedder) -> Reranker:
    """operators/qa/rerankers.py with each mode's weights; one sentence cache for the run."""
    source = SentenceCache(embedder)

    async def run(mode: str, vector: list[float], passages: list[Passage],
                  bm25: list[float]) -> list[Passage]:
        return await rerank(passages, bm25, RERANKED[mode], np.asarray(vector, np.float32), source)
    return run


def score(claim: Claim, found: Found, qrels: Qrels) -> Scored:
    docs = [p.key.doc_id for p in found.passages]
    relevant = qrels[claim.query_id]
    return Scored(query_id=claim.query_id, half=claim.half, ndcg10=ndcg_at(docs, relevant, 10),
                  recall100=recall_at(docs, relevant, 100), ms=found.ms,
                  rerank_ms=found.rerank_ms, warm_ms=found.warm_ms)


def summary(rows: list[Scored]) -> dict[str, float]:
    halves = {h: [r for r in rows if r.half == h] for h in ("tune", "held-out")}
    return {"queries": len(rows),
            "ndcg@10": mean(r.ndcg10 for r in rows),
            "recall@100": mean(r.recall100 for r in rows),
            "ndcg@10 tune": mean(r.ndcg10 for r in halves["tune"]),
            "ndcg@10 held-out": mean(r.ndcg10 for r in halves["held-out"]),
            "p50 ms": _median(r.ms for r in rows),
            "rerank p50 ms": _median(r.rerank_ms for r in rows),
            "rerank warm p50 ms": _median(r.warm_ms for r in rows)}


def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


async def evaluate(store, embedder: Embedder, claims: list[Claim], qrels: Qrels,
                   modes: list[str], rerank: Reranker | None,
                   cfg: RetrieveConfig = RetrieveConfig()) -> dict[str, list[Scored]]:
    """Per mode, one Scored row per claim (in claim order); `summary` makes the figures."""
    rows: dict[str, list[Scored]] = {m: [] for m in modes}
    for n, claim in enumerate(claims, 1):
        for mode, found in (await run_claim(store, embedder, claim, modes, rerank, cfg)).items():
            rows[mode].append(score(claim, found, qrels))
        if n % 50 == 0:
            print(f"{n}/{len(claims)} claims", file=sys.stderr, flush=True)
    return rows


async def open_index(embedder: Embedder, corpus_path: Path):
    """The cached store for this embedder and corpus, built (or finished) first if needed."""
    from operators.store.sqlite import SqliteStore
    prepared = [prepare(a) for a in read_corpus(corpus_path)]
    cache = IndexCache(embedder.name, prepared)
    cache.remove_stale_stores()
    store = SqliteStore(cache.store)
    await store.open(embedder.name, embedder.dim)
    try:
        stats = await build(store, embedder, prepared, cache)
    except BaseException:
        await store.close()
        raise
    return store, stats


def table(results: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| mode | queries | nDCG@10 | recall@100 | nDCG@10 tune half | nDCG@10 held-out half "
             "| p50 ms / query | rerank p50 ms: cold / warm cache |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, s in results.items():
        rerank = (f"{_ms(s['rerank p50 ms'])} / {_ms(s['rerank warm p50 ms'])}"
                  if s["rerank p50 ms"] else "–")
        lines.append(f"| {mode} | {s['queries']} | {s['ndcg@10']:.4f} | {s['recall@100']:.4f} | "
                     f"{s['ndcg@10 tune']:.4f} | {s['ndcg@10 held-out']:.4f} | {s['p50 ms']:.1f} "
                     f"| {rerank} |")
    return lines


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def gain_lines(rows: dict[str, list[Scored]], base: str = "hybrid") -> list[str]:
    return [gain_line(rows, base, mode) for mode in RERANKED if mode in rows and base in rows]


def gain_line(rows: dict[str, list[Scored]], base: str, better: str) -> str:
    """A reranker's nDCG@10 gain over `base`, paired by claim, with a bootstrap interval."""
    diffs = [b.ndcg10 - a.ndcg10 for a, b in zip(rows[base], rows[better])]
    held = [d for d, r in zip(diffs, rows[base]) if r.half == "held-out"]
    parts = []
    for name, values in (("all claims", diffs), ("held-out half", held)):
        low, high = bootstrap_interval(values)
        parts.append(f"{name} {mean(values):+.4f} (95 % interval {low:+.4f} … {high:+.4f})")
    return f"{better} − {base} in nDCG@10, paired by claim: " + "; ".join(parts) + ".  "


def index_line(stats: BuildStats, path: Path) -> str:
    rate = (f"MiniLM embedded them at {stats.chunks_per_s:.1f} chunks/s ({stats.embed_s:.0f} s, "
            f"{stats.threads} OpenBLAS thread(s), {stats.date or 'date unknown'})"
            if stats.embedded else "embedding figures unknown")
    source = {"": "embedded by this run", "vectors": "vectors from the cache",
              "store": "store from the cache"}[stats.cached]
    return (f"Index: {stats.documents} abstracts → {stats.chunks} chunks ({source}, "
            f"{path.name}); {rate}.")


def parser() -> argparse.ArgumentParser:
    from evals.cli import add_retrieval_arguments
    ap = argparse.ArgumentParser(prog="python -m evals.scifact", description=__doc__.splitlines()[0])
    return add_retrieval_arguments(ap)


def main(argv: list[str] | None = None) -> int:
    from evals.cli import run_retrieval
    results = run_retrieval(parser().parse_args(argv))
    return 1 if results["pass"] is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
