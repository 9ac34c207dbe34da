"""The embedded document store (SQLite FTS5 + numpy) on real SQLite files in tmp_path.

Vectors are 8-dimensional and hand-made (one axis per topic) so the best vector match is
known; texts carry distinct words so the best keyword match is known too. The permission
tests put a foreign chunk that is the EXACT best match for the query (same words, same
vector) next to a readable, weaker one: it must never come back, in any mode.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from operators.store.engine import SearchQuery, StoreError
from operators.store.fts import choose, match_expression, words
from operators.store.fusion import fuse
from operators.store.sqlite import SqliteConfig, SqliteStore
from operators.store.vectors import MIN_SPLIT_ROWS, VectorIndex, top_n
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey, Principal

ROOT = Path(__file__).resolve().parents[1]
DIM, MODEL = 8, "test-model"
MODES = ["vector", "keyword", "hybrid"]
ALICE = Principal(user="alice", tenant="acme", groups=["eng"])


def axis(i: int, wobble: float = 0.0) -> list[float]:
    """A unit-ish vector along axis i, tilted toward the next axis by `wobble`."""
    v = np.zeros(DIM, np.float32)
    v[i % DIM], v[(i + 1) % DIM] = 1.0, wobble
    return v.tolist()


def doc_info(doc_id: str, n: int, *, version: str = "v1", tenant: str = "acme",
             collection: str = "docs", acl: list[str] | None = None,
             metadata: dict[str, str] | None = None, title: str = "") -> DocumentInfo:
    return DocumentInfo(key=DocumentKey(tenant=tenant, collection=collection, doc_id=doc_id),
                        version=version, title=title or doc_id, acl=acl or ["*"],
                        metadata=metadata or {}, chunks=n)


def records(texts: list[str]) -> list[ChunkRecord]:
    out, pos = [], 0
    for i, text in enumerate(texts):
        out.append(ChunkRecord(index=i, text=text, start=pos, end=pos + len(text)))
        pos += len(text) + 1
    return out


async def add(store: SqliteStore, doc_id: str, texts: list[str], vectors: list[list[float]],
              **info) -> DocumentInfo:
    doc = doc_info(doc_id, len(texts), **info)
    await store.put_chunks(doc, records(texts), np.array(vectors, np.float32))
    assert await store.commit(doc) is not None
    return doc


def query(text: str = "", vector: list[float] | None = None, mode: str = "hybrid",
          principal: Principal = ALICE, **kw) -> SearchQuery:
    return SearchQuery(principal=principal, text=text, vector=vector, mode=mode, **kw)


def ids(hits) -> list[str]:
    return [h.chunk.chunk_id for h in hits]


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
async def store(tmp_path, request):
    s = SqliteStore(tmp_path / "store.db", config=SqliteConfig(threads=request.param))
    await s.open(MODEL, DIM)
    yield s
    await s.close()


# --- versions: staging, commit, replace, delete ------------------------------------------

async def test_staged_chunks_are_invisible_until_commit(store):
    doc = doc_info("paper", 2)
    await store.put_chunks(doc, records(["zebra stripes", "zebra herds"]),
                           np.array([axis(0), axis(1)], np.float32))
    for mode in MODES:
        assert await store.search(query("zebra", axis(0), mode)) == []
    assert await store.document(doc.key) is None
    assert await store.count() == {"documents": 0, "chunks": 0}
    assert await store.commit(doc) == ""
    assert await store.document(doc.key) == doc
    hits = await store.search(query("zebra", axis(0), "keyword"))
    assert sorted(ids(hits)) == ["paper#0", "paper#1"]
    assert await store.count() == {"documents": 1, "chunks": 2}


async def test_commit_waits_until_every_chunk_is_staged(store):
    doc = doc_info("paper", 3)
    await store.put_chunks(doc, records(["one", "two", "three"])[:2],
                           np.array([axis(0), axis(1)], np.float32))
    assert await store.commit(doc) is None
    assert await store.search(query("one", axis(0))) == []
    third = [ChunkRecord(index=2, text="three", start=8, end=13)]
    await store.put_chunks(doc, third, np.array([axis(2)], np.float32))
    assert await store.commit(doc) == ""
    assert await store.count() == {"documents": 1, "chunks": 3}


async def test_a_replaced_version_is_never_served_again(store):
    await add(store, "paper", ["zebra stripes", "zebra herds", "zebra foals"],
              [axis(0), axis(0, 0.1), axis(0, 0.2)], version="v1")
    new = doc_info("paper", 2, version="v2")
    await store.put_chunks(new, records(["okapi forest", "okapi diet"]),
                           np.array([axis(3), axis(3, 0.1)], np.float32))
    before = await store.search(query("zebra okapi", axis(3)))
    assert {h.chunk.version for h in before} == {"v1"}      # v2 only staged so far
    assert await store.commit(new) == "v1"
    assert await store.search(query("zebra", mode="keyword")) == []
    for mode in MODES:
        hits = await store.search(query("zebra okapi", axis(0), mode))
        assert {h.chunk.version for h in hits} == {"v2"}
    assert await store.count() == {"documents": 1, "chunks": 2}


async def test_commit_again_is_a_no_op_with_the_same_answer(store):
    await add(store, "paper", ["zebra"], [axis(0)], version="v1")
    new = await add(store, "paper", ["okapi"], [axis(3)], version="v2")
    await store.put_chunks(new, records(["okapi"]), np.array([axis(3)], np.float32))  # redelivery
    assert await store.commit(new) == "v1"
    assert await store.commit(new) == "v1"
    assert ids(await store.search(query("okapi", axis(3)))) == ["paper#0"]
    assert await store.count() == {"documents": 1, "chunks": 1}


async def test_delete_removes_the_document_and_its_chunks(store):
    doc = await add(store, "paper", ["zebra stripes"], [axis(0)])
    staged = doc_info("paper", 1, version="v2")
    await store.put_chunks(staged, records(["okapi"]), np.array([axis(3)], np.float32))
    assert await store.delete(doc.key) == "v1"
    for mode in MODES:
        assert await store.search(query("zebra okapi", axis(0), mode)) == []
    assert await store.document(doc.key) is None
    assert await store.commit(staged) is None          # its staged chunks went too
    assert await store.delete(doc.key) == ""
    assert await store.count() == {"documents": 0, "chunks": 0}


async def test_update_document_changes_access_without_touching_chunks(store):
    doc = await add(store, "plan", ["quarterly roadmap"], [axis(0)], acl=["sales"])
    assert await store.search(query("roadmap", axis(0))) == []        # alice is in eng
    await store.update_document(doc_info("plan", 1, acl=["eng"], metadata={"state": "final"}))
    hits = await store.search(query("roadmap", axis(0), filters={"state": "final"}))
    assert ids(hits) == ["plan#0"] and hits[0].chunk.text == "quarterly roadmap"
    assert (await store.document(doc.key)).acl == ["eng"]


# --- permissions inside the search --------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
async def test_another_tenant_never_appears_even_as_the_exact_best_match(store, mode):
    await add(store, "theirs", ["merger plan for globex"], [axis(0)], tenant="globex")
    await add(store, "ours", ["merger rumours"], [axis(0, 0.9)], tenant="acme")
    hits = await store.search(query("merger plan for globex", axis(0), mode))
    assert ids(hits) == ["ours#0"]
    assert all(ALICE.may_read(h.chunk.key.tenant, ["*"]) for h in hits)


@pytest.mark.parametrize("mode", MODES)
async def test_acl_groups_filter_inside_the_search(store, mode):
    await add(store, "secret", ["salary table for engineers"], [axis(0)], acl=["hr"])
    await add(store, "mine", ["salary notes"], [axis(0, 0.9)], acl=["user:alice"])
    await add(store, "team", ["salary bands"], [axis(0, 1.2)], acl=["eng"])
    await add(store, "other", ["salary of bob"], [axis(0, 0.5)], acl=["user:bob"])
    hits = await store.search(query("salary table for engineers", axis(0), mode, k=10))
    assert set(ids(hits)) == {"mine#0", "team#0"}


@pytest.mark.parametrize("readable", [1, 30])      # of 40: the gathered and the masked path
async def test_vector_mask_applies_before_the_top_k(store, readable):
    for i in range(40):
        acl = ["eng"] if i < readable else ["hr"]
        # the unreadable chunks are the closest to the query: a post-filtered top k is empty
        await add(store, f"d{i}", [f"chunk {i}"], [axis(0, 0.5 if i < readable else 0.01)], acl=acl)
    hits = await store.search(query(vector=axis(0), mode="vector", k=5))
    assert len(hits) == min(5, readable)
    assert all(int(h.chunk.key.doc_id[1:]) < readable for h in hits)


# --- filters, ranking, sanitising -----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
async def test_collection_and_metadata_filters_apply_to_both_lists(store, mode):
    for doc_id, collection, year in (("a", "finance", "2024"), ("b", "finance", "2023"),
                                     ("c", "legal", "2024")):
        await add(store, doc_id, ["budget review"], [axis(0)], collection=collection,
                  metadata={"year": year})
    got = await store.search(query("budget", axis(0), mode, collections=["finance"]))
    assert sorted(ids(got)) == ["a#0", "b#0"]
    got = await store.search(query("budget", axis(0), mode, filters={"year": "2024"}))
    assert sorted(ids(got)) == ["a#0", "c#0"]
    got = await store.search(query("budget", axis(0), mode, collections=["legal"],
                                   filters={"year": "2023"}))
    assert got == []


GARBAGE = ['"foo" AND (bar', "NEAR*", "-x", "", "   ", "!!!", "^", "a:b", '"', "NOT", "AND OR",
           "*", "(", "text:foo", "'; DROP TABLE chunks; --", "NEAR(foo bar, 2)", "foo*", "\x00",
           "ünïcödé naïve café", "🦓 zebra"]


@pytest.mark.parametrize("text", GARBAGE)
async def test_query_syntax_in_user_text_never_raises(store, text):
    await add(store, "d", ["foo bar zebra cafe naive"], [axis(0)])
    for mode in ("keyword", "hybrid"):
        hits = await store.search(query(text, axis(0), mode))
        assert all(h.chunk.key.doc_id == "d" for h in hits)
    assert await store.count() == {"documents": 1, "chunks": 1}


async def test_words_and_match_expression():
    assert words('"foo" AND (bar') == ["foo", "bar"]          # "and" is a stop word
    assert words("what is it") == ["what", "is", "it"]          # stop words only: kept
    assert words("NEAR* -x") == ["near", "x"] and words("!!! ^ *") == []
    assert match_expression(["foo", "bar"]) == '"foo" OR "bar"'
    assert match_expression(["r"], ["c"]) == '("r") AND ("r" OR "c")'
    assert match_expression([]) is None


def test_common_words_only_score_once_rare_words_fill_the_budget():
    frequencies = {"protein": 40, "show": 90_000, "kinase": 9_000, "absent": 0}
    assert choose(frequencies, common=5_000) == (["protein"], ["kinase", "show"])
    assert choose({"show": 90_000, "cell": 70_000}, common=5_000) == (["cell"], ["show"])
    assert choose({"a": 10, "b": 20}, common=5_000) == (["a", "b"], [])


async def test_a_title_match_counts_less_than_a_text_match(store):
    await add(store, "titled", ["stripes and herds"], [axis(0)], title="Zebra handbook")
    await add(store, "texted", ["zebra stripes"], [axis(1)], title="Savanna notes")
    hits = await store.search(query("zebra", mode="keyword"))
    assert ids(hits) == ["texted#0", "titled#0"]


async def test_diacritics_and_stems_match(store):
    await add(store, "d", ["Le café des enzymes running"], [axis(0)])
    assert ids(await store.search(query("cafe enzyme runs", mode="keyword"))) == ["d#0"]


async def test_hybrid_fuses_both_lists_with_ranks_and_raw_scores(store):
    await add(store, "kw", ["aardvark burrow"], [axis(5)])           # best by keyword
    await add(store, "vec", ["nothing in common"], [axis(0)])         # best by vector
    await add(store, "both", ["aardvark"], [axis(0, 0.3)])            # second in both
    hits = await store.search(query("aardvark burrow", axis(0), candidates=2, k=2))
    by_id = {h.chunk.key.doc_id: h for h in hits}
    assert ids(hits) == ["both#0", "kw#0"]         # kw and vec tie at 1/61: lower rowid wins
    assert (by_id["both"].vector_rank, by_id["both"].keyword_rank) == (2, 2)
    assert (by_id["kw"].vector_rank, by_id["kw"].keyword_rank) == (0, 1)
    assert by_id["both"].score == pytest.approx(2 / 62)
    assert by_id["kw"].score == pytest.approx(1 / 61)
    assert by_id["both"].vector_score == pytest.approx(float(np.dot(axis(0), axis(0, 0.3)))
                                                       / np.linalg.norm(axis(0, 0.3)))
    assert by_id["kw"].keyword_score > by_id["both"].keyword_score > 0
    assert by_id["kw"].vector_score == 0.0


async def test_a_chunk_only_the_keyword_list_finds_still_appears(store):
    for i in range(6):                                   # six better vector matches
        await add(store, f"near{i}", [f"filler {i}"], [axis(0, 0.1 * i)])
    await add(store, "exact", ["quokka census"], [axis(4)])
    hits = await store.search(query("quokka census", axis(0), candidates=5, k=5))
    assert "exact#0" in ids(hits)
    exact = hits[ids(hits).index("exact#0")]
    assert (exact.vector_rank, exact.keyword_rank) == (0, 1)
    assert exact.score == pytest.approx(1 / 61) and len(hits) == 5


def test_fusion_breaks_ties_deterministically():
    fused = fuse([(7, 0.9), (3, 0.8)], [(3, 5.0), (7, 4.0)], rrf_k=60, k=5)
    assert [f.rowid for f in fused] == [3, 7]          # equal sums: lower rowid after best rank
    assert fuse([(1, 0.5)], [], rrf_k=60, k=0) == []


async def test_single_mode_scores_are_raw(store):
    await add(store, "d", ["gamma ray burst"], [axis(2)])
    [hit] = await store.search(query(vector=axis(2), mode="vector"))
    assert hit.score == pytest.approx(1.0) and (hit.vector_rank, hit.keyword_rank) == (1, 0)
    [hit] = await store.search(query("gamma", mode="keyword"))
    assert hit.score == hit.keyword_score > 0 and hit.keyword_rank == 1


def test_the_product_split_over_threads_equals_the_plain_one():
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((MIN_SPLIT_ROWS + 1001, DIM)).astype(np.float32)
    vector = rng.standard_normal(DIM).astype(np.float32)
    index = VectorIndex(DIM, threads=3)
    np.testing.assert_allclose(index.product(matrix, vector), matrix @ vector, rtol=1e-4, atol=1e-5)
    index.close()


def test_top_n_is_ordered_and_takes_all_when_n_is_large():
    scores = np.array([0.1, 0.9, 0.5, 0.9, -1.0], np.float32)
    assert top_n(scores, 2).tolist() == [1, 3]          # a tie: the lower position first
    assert top_n(scores, 10).tolist() == [1, 3, 2, 0, 4]


# --- errors -------------------------------------------------------------------------------

async def test_a_store_of_another_model_or_dim_is_refused(tmp_path, store):
    other = SqliteStore(tmp_path / "store.db")
    with pytest.raises(StoreError, match="test-model.*other-model.*re-index"):
        await other.open("other-model", DIM)
    with pytest.raises(StoreError, match="dim 8.*dim 16"):
        await other.open(MODEL, 16)
    await other.close()


async def test_bad_input_raises_store_errors(store, tmp_path):
    doc = doc_info("d", 2)
    with pytest.raises(StoreError, match="2 chunks but 1 vectors"):
        await store.put_chunks(doc, records(["a", "b"]), np.array([axis(0)], np.float32))
    with pytest.raises(StoreError, match="dim"):
        await store.put_chunks(doc, records(["a", "b"]), np.ones((2, 5), np.float32))
    with pytest.raises(StoreError, match="NaN"):
        await store.put_chunks(doc, records(["a", "b"]),
                               np.array([axis(0), [np.nan] * DIM], np.float32))
    with pytest.raises(StoreError, match="query.vector"):
        await store.search(query("a", None, "vector"))
    with pytest.raises(StoreError, match="3 values"):
        await store.search(query("a", [1.0, 0.0, 0.0]))
    unopened = SqliteStore(tmp_path / "x.db")
    with pytest.raises(StoreError, match="not open"):
        await unopened.count()
    await unopened.close()
    with pytest.raises(StoreError, match="config.path"):
        SqliteStore(config=SqliteConfig())


async def test_a_file_that_is_not_a_store_gives_a_store_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not an SQLite database, just some text " * 100)
    s = SqliteStore(bad)
    with pytest.raises(StoreError, match="bad.db"):
        await s.open(MODEL, DIM)
    await s.close()


async def test_closed_store_refuses_calls(tmp_path):
    s = SqliteStore(config=SqliteConfig(path=str(tmp_path / "c.db")))
    await s.open(MODEL, DIM)
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.count()


async def test_counts_per_tenant(store):
    await add(store, "a", ["x", "y"], [axis(0), axis(1)], tenant="acme")
    await add(store, "b", ["z"], [axis(2)], tenant="globex")
    await store.put_chunks(doc_info("c", 1), records(["staged"]), np.array([axis(3)], np.float32))
    assert await store.count() == {"documents": 2, "chunks": 3}
    assert await store.count("acme") == {"documents": 1, "chunks": 2}
    assert await store.count("nobody") == {"documents": 0, "chunks": 0}


async def test_documents_lists_what_the_principal_may_read(store):
    await add(store, "pub", ["x"], [axis(0)], collection="wiki")
    await add(store, "team", ["y"], [axis(1)], collection="notes", acl=["eng"])
    await add(store, "hr", ["z"], [axis(2)], collection="notes", acl=["hr"])
    await add(store, "other", ["w"], [axis(3)], tenant="globex")
    listed = await store.documents(ALICE)
    assert [d.key.doc_id for d in listed] == ["team", "pub"]     # by collection, then id
    assert [d.key.doc_id for d in await store.documents(ALICE, "wiki")] == ["pub"]
    assert listed[0] == doc_info("team", 1, collection="notes", acl=["eng"])


async def test_a_reader_without_a_model_takes_the_store_as_it_is(tmp_path):
    reader = SqliteStore(tmp_path / "store.db")
    await reader.open("", 0)                       # before anything was written
    assert await reader.search(query("walrus", axis(0))) == []
    writer = SqliteStore(tmp_path / "store.db")
    await writer.open(MODEL, DIM)
    await add(writer, "d", ["walrus"], [axis(0)])
    assert ids(await reader.search(query("walrus", axis(0)))) == ["d#0"]
    await writer.close()
    await reader.close()


# --- several stores on one file -------------------------------------------------------------

async def test_a_second_store_sees_commits_at_its_next_search(tmp_path, store):
    reader = SqliteStore(tmp_path / "store.db")
    await reader.open(MODEL, DIM)
    await add(store, "d0", ["walrus"], [axis(0)])
    assert ids(await reader.search(query("walrus", axis(0)))) == ["d0#0"]   # loads in full
    await add(store, "d1", ["walrus pup"], [axis(1)])                        # then incremental
    await add(store, "d0", ["narwhal"], [axis(2)], version="v2")
    for mode in MODES:
        hits = await reader.search(query("walrus narwhal", axis(1), mode, k=5))
        assert sorted(ids(hits)) == ["d0#0", "d1#0"]
        assert {h.chunk.version for h in hits if h.chunk.key.doc_id == "d0"} == {"v2"}
    await store.delete(DocumentKey(tenant="acme", collection="docs", doc_id="d1"))
    await store.update_document(doc_info("d0", 1, version="v2", acl=["hr"]))
    for mode in MODES:
        assert await reader.search(query("walrus narwhal", axis(1), mode)) == []
    await reader.close()


async def test_many_replacements_keep_the_reader_exact(tmp_path, store):
    reader = SqliteStore(tmp_path / "store.db")
    await reader.open(MODEL, DIM)
    await add(store, "keep", ["steady"], [axis(4)])
    for v in range(12):            # removed rows pile up: the reader's matrix compacts
        await add(store, "churn", [f"word{v} a", f"word{v} b"], [axis(v), axis(v, 0.5)],
                  version=f"v{v}")
        hits = await reader.search(query(f"word{v} steady", axis(v), k=10))
        assert sorted(ids(hits)) == ["churn#0", "churn#1", "keep#0"]
        assert {h.chunk.version for h in hits if h.chunk.key.doc_id == "churn"} == {f"v{v}"}
    await reader.close()


async def test_a_reader_behind_the_pruned_change_log_reloads(tmp_path, store):
    reader = SqliteStore(tmp_path / "store.db")
    await reader.open(MODEL, DIM)
    await add(store, "a", ["alpha"], [axis(0)])
    assert ids(await reader.search(query("alpha", axis(0)))) == ["a#0"]
    await add(store, "b", ["alpha beta"], [axis(0, 0.2)])
    await store.delete(DocumentKey(tenant="acme", collection="docs", doc_id="a"))
    with sqlite3.connect(tmp_path / "store.db") as conn:   # what pruning does to old entries
        conn.execute("DELETE FROM changes WHERE seq < (SELECT max(seq) FROM changes)")
    assert ids(await reader.search(query("alpha", axis(0), "vector"))) == ["b#0"]
    await reader.close()


WRITER = """
import asyncio, sys, numpy as np
from operators.store.sqlite import SqliteStore
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey
async def main():
    store = SqliteStore(sys.argv[1])
    await store.open("test-model", 8)
    doc = DocumentInfo(key=DocumentKey(tenant="acme", collection="docs", doc_id="remote"),
                       version="r1", acl=["eng"], chunks=1)
    text = "manatee written by another process"
    await store.put_chunks(doc, [ChunkRecord(index=0, text=text, start=0, end=len(text))],
                           np.eye(8, dtype=np.float32)[6:7])
    print(await store.commit(doc))
    await store.close()
asyncio.run(main())
"""


async def test_a_commit_by_another_process_is_seen_without_a_restart(tmp_path, store):
    await add(store, "local", ["dugong"], [axis(0)])
    assert ids(await store.search(query("dugong", axis(0)))) == ["local#0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "store.db")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for mode in MODES:
        hits = await store.search(query("manatee", axis(6), mode, k=1))
        assert ids(hits) == ["remote#0"]
    assert await store.count() == {"documents": 2, "chunks": 2}
