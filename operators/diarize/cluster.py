"""Who spoke: clustering speaker embeddings when nobody says how many speakers there are.

- `agglomerate`: average-linkage agglomerative clustering on cosine similarity, merging while
  the two closest clusters are more alike than a threshold (tuned on ami_debug train +
  development, evals/diarization.py), then folding clusters too small to be a speaker into
  their nearest large one. The threshold, not a count, decides how many speakers there are.
- `SpeakerRegistry`: the speakers met so far in a long recording, as running centroids; each
  chunk's clusters are matched one-to-one to them (or become new speakers), so labels stay
  the same chunk after chunk while memory stays a few vectors per speaker.
- `assign`: the optimal one-to-one assignment (Hungarian method) both of those and the DER
  scorer use; numpy only, since scipy is not a dependency.
"""
from __future__ import annotations

import numpy as np


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Min-cost matching of a (rows, cols) matrix: min(rows, cols) (row, col) pairs.
    Kuhn-Munkres with potentials, O(n^2 m); fine for the tens of speakers it sees."""
    cost = np.asarray(cost, np.float64)
    if cost.size == 0:
        return []
    flipped = cost.shape[0] > cost.shape[1]
    c = cost.T if flipped else cost
    pairs = _hungarian(c)
    return sorted((j, i) for i, j in pairs) if flipped else pairs


def _hungarian(c: np.ndarray) -> list[tuple[int, int]]:
    """rows <= cols. u, v are the dual potentials; match[j] is the row (1-based) of column j."""
    n, m = c.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    match = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv, way, used = np.full(m + 1, np.inf), np.zeros(m + 1, dtype=int), np.zeros(m + 1, bool)
        while match[j0]:
            used[j0] = True
            i0, free = match[j0], ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better], way[1:][better] = reduced[better], j0
            j1 = int(np.argmin(np.where(free, minv[1:], np.inf))) + 1
            delta = minv[j1]
            u[match[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    return sorted((int(match[j]) - 1, j - 1) for j in range(1, m + 1) if match[j])


def agglomerate(vectors: np.ndarray, threshold: float, min_size: int = 1) -> np.ndarray:
    """Labels 0..k-1 (numbered by first appearance) for unit vectors (n, d)."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=int)
    labels = _average_linkage(vectors, threshold)
    labels = _fold_small(vectors, labels, min_size)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))     # renumber clusters in order of appearance
    return order[inverse]


def _average_linkage(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Merge the most similar pair of clusters while their mean pairwise cosine > threshold
    (Lance-Williams update: the merged row is the size-weighted mean of the two rows)."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(len(vectors))
    labels = np.arange(len(vectors))
    alive = np.ones(len(vectors), bool)
    while alive.sum() > 1:
        flat = int(np.argmax(sim))
        a, b = divmod(flat, len(sim))
        if sim[a, b] <= threshold:
            break
        merged = (sizes[a] * sim[a] + sizes[b] * sim[b]) / (sizes[a] + sizes[b])
        sim[a], sim[:, a] = merged, merged
        sim[a, a] = -np.inf
        sim[b], sim[:, b] = -np.inf, -np.inf
        sizes[a] += sizes[b]
        alive[b] = False
        labels[labels == b] = a
    return labels


def _fold_small(vectors: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Clusters under min_size windows are a few seconds of speech: too little to call a
    speaker, usually overlap or noise. Their windows go to the nearest large centroid."""
    ids, counts = np.unique(labels, return_counts=True)
    large = ids[counts >= min_size]
    if len(large) == 0 or len(large) == len(ids):
        return labels
    centroids = _unit(np.stack([vectors[labels == i].mean(axis=0) for i in large]))
    small = ~np.isin(labels, large)
    labels = labels.copy()
    labels[small] = large[np.argmax(vectors[small] @ centroids.T, axis=1)]
    return labels


def centroids(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, d) sums and (k,) counts of each label 0..k-1."""
    k = int(labels.max()) + 1 if len(labels) else 0
    sums = np.zeros((k, vectors.shape[1]))
    np.add.at(sums, labels, vectors)
    return sums, np.bincount(labels, minlength=k)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class SpeakerRegistry:
    """Speakers of one recording so far: sums of their unit embeddings and window counts."""

    def __init__(self, threshold: float, dim: int):
        self.threshold = threshold
        self.sums = np.zeros((0, dim))
        self.counts = np.zeros(0, dtype=int)

    def __len__(self) -> int:
        return len(self.counts)

    def match(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Global speaker ids for a chunk's clusters (given as sums and counts), and fold them
        into the running centroids. A cluster joins the speaker it is paired with if their
        centroids are more alike than the threshold; otherwise it is a new speaker. Pairing
        is one-to-one: the chunk's clustering already said its clusters are different."""
        ids = np.full(len(counts), -1)
        if len(self):
            sim = _unit(sums) @ _unit(self.sums).T
            for row, col in assign(-sim):
                if sim[row, col] > self.threshold:
                    ids[row] = col
        for row in np.flatnonzero(ids < 0):
            ids[row] = len(self)
            self.sums = np.vstack([self.sums, np.zeros((1, self.sums.shape[1]))])
            self.counts = np.append(self.counts, 0)
        np.add.at(self.sums, ids, sums)
        np.add.at(self.counts, ids, counts)
        return ids
