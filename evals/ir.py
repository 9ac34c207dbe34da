"""Ranking metrics for retrieval evaluations: nDCG@k and recall@k, as BEIR reports them.

    ndcg_at(ranked, relevant, k)     relevant: {doc_id: grade}, grade > 0 is relevant
    recall_at(ranked, relevant, k)
    bootstrap_interval(differences)  how sure a paired gain between two systems is

nDCG uses linear gains (grade / log2(rank + 1), rank 1-based), the trec_eval `ndcg_cut`
definition BEIR's published SciFact figures use; the ideal ranking is the relevant
documents sorted by grade. A document id repeated in `ranked` counts at its first place
only: a search returns chunks, several of one document, and a second chunk of a relevant
document must not earn a second gain. A query without relevant documents scores 0 on both
metrics (BEIR skips such queries; our loaders never produce them).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

Qrels = dict[str, dict[str, int]]       # query id → {doc id: grade}


def unique(ids: Iterable[str]) -> list[str]:
    """Ids in order, each at its first place (chunk hits → document ranking)."""
    return list(dict.fromkeys(ids))


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, 1))


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    ideal = dcg(sorted((g for g in relevant.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    got = dcg([max(relevant.get(doc, 0), 0) for doc in unique(ranked)[:k]])
    return got / ideal


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    wanted = {doc for doc, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(unique(ranked)[:k])) / len(wanted)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def bootstrap_interval(values: Sequence[float], level: float = 0.95, rounds: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (per-query differences between
    two systems, say): resample the queries with replacement `rounds` times."""
    if not values:
        return (0.0, 0.0)
    data = np.asarray(values, np.float64)
    picks = np.random.default_rng(seed).integers(0, len(data), (rounds, len(data)))
    means = data[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def load_qrels(path: Path) -> Qrels:
    """BEIR's qrels TSV (header `query-id corpus-id score`)."""
    qrels: Qrels = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels
