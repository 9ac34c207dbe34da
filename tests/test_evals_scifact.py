"""The SciFact evaluation's own parts: the index cache and the scoring glue (evals/scifact*.py)."""
from __future__ import annotations

import pytest

from evals.scifact_index import Abstract, IndexCache, build, prepare
from operators.store.sqlite import SqliteStore

ABSTRACTS = [
    Abstract("1", "Aspirin and colorectal cancer", "Regular aspirin use lowered the risk of "
             "colorectal cancer by a third in a cohort of 40,000 adults."),
    Abstract("2", "White matter in preterm infants", "Diffusion tensor imaging showed higher "
             "diffusion coefficients in preterm infants at term."),
    Abstract("3", "Statins and memory", "No effect of statins on memory was found in 2,000 "
             "older adults followed for five years."),
]


def test_an_abstract_is_chunked_as_a_markdown_document_titled_by_its_heading():
    p = prepare(ABSTRACTS[0])
    assert p.doc.title == "Aspirin and colorectal cancer" and p.doc.key.tenant == "scifact"
    assert p.doc.chunks == len(p.batch.chunks) == 1
    assert p.batch.chunks[0].text.startswith("Aspirin and colorectal cancer\n\nRegular")


def test_the_cache_key_follows_every_embedded_text(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHWIRE_DATA_DIR", str(tmp_path))
    prepared = [prepare(a) for a in ABSTRACTS]
    same = IndexCache("m", [prepare(a) for a in ABSTRACTS])
    assert IndexCache("m", prepared).vectors == same.vectors
    assert same.vectors.parent == tmp_path / "evals"
    edited = [prepare(ABSTRACTS[0]._replace(text="Changed."))] + prepared[1:]
    assert IndexCache("m", edited).vectors != same.vectors
    assert IndexCache("other-model", prepared).vectors != same.vectors


@pytest.fixture(scope="module")
async def embedder():
    from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
    engine = MiniLmEmbedder(MiniLmConfig(threads=1))
    yield engine
    await engine.close()


async def _build(cache: IndexCache, embedder, prepared):
    store = SqliteStore(cache.store)
    await store.open(embedder.name, embedder.dim)
    try:
        return await build(store, embedder, prepared, cache), await store.count()
    finally:
        await store.close()


async def test_a_second_build_reuses_the_vectors_and_then_the_store(tmp_path, monkeypatch, embedder):
    monkeypatch.setenv("PATCHWIRE_DATA_DIR", str(tmp_path))
    prepared = [prepare(a) for a in ABSTRACTS]
    cache = IndexCache(embedder.name, prepared)
    first, count = await _build(cache, embedder, prepared)
    assert (first.cached, first.embedded, count) == ("", 3, {"documents": 3, "chunks": 3})
    assert first.chunks_per_s > 0 and cache.vectors.exists()
    again, _ = await _build(cache, embedder, prepared)
    assert (again.cached, again.embedded) == ("store", 3)       # figures of the first run
    for leftover in cache.store.parent.glob(cache.store.name + "*"):   # as if the store
        leftover.unlink()                                               # code had changed
    rebuilt, count = await _build(cache, embedder, prepared)
    assert rebuilt.cached == "vectors" and count["documents"] == 3


# --- the SciFact evaluation's scoring glue (evals/scifact.py) ---------------------------

def _scored(qid: str, half: str, ndcg: float, ms: float = 10.0):
    from evals.scifact import Scored
    return Scored(query_id=qid, half=half, ndcg10=ndcg, recall100=1.0, ms=ms)


def test_claims_split_in_two_fixed_halves():
    from evals.scifact import Claim
    halves = [Claim(str(i), "c").half for i in range(400)]
    assert 150 < halves.count("tune") < 250                 # about half each
    assert halves == [Claim(str(i), "other text").half for i in range(400)]   # id decides


def test_summary_averages_each_half_and_takes_the_median_latency():
    from evals.scifact import summary
    rows = [_scored("a", "tune", 1.0, 5), _scored("b", "tune", 0.5, 50),
            _scored("c", "held-out", 0.0, 7)]
    s = summary(rows)
    assert s["ndcg@10"] == pytest.approx(0.5) and s["p50 ms"] == 7
    assert s["ndcg@10 tune"] == 0.75 and s["ndcg@10 held-out"] == 0.0


def test_gain_line_pairs_claims():
    from evals.scifact import gain_line
    rows = {"hybrid": [_scored("a", "tune", 0.5), _scored("b", "held-out", 0.2)],
            "hybrid+rerank": [_scored("a", "tune", 0.7), _scored("b", "held-out", 0.6)]}
    line = gain_line(rows, "hybrid", "hybrid+rerank")
    assert "all claims +0.3000" in line and "held-out half +0.4000" in line
