"""The permission leak test, small: 100 queries over 36 short documents, real store and MiniLM.

The full run (1,000 queries, whole abstracts) is `python -m evals.leak`.
"""
from __future__ import annotations

import msgspec
import pytest

from evals.leak import run_leak_test
from evals.leak_corpus import SCIFACT
from schemas.documents import Principal

pytestmark = pytest.mark.skipif(not SCIFACT.exists(), reason=f"SciFact not found at {SCIFACT}")


@pytest.fixture(scope="module")
async def embedder():
    from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
    engine = MiniLmEmbedder(MiniLmConfig(threads=1))
    yield engine
    await engine.close()


async def test_no_query_shows_a_principal_what_it_may_not_read(tmp_path, embedder):
    report = await run_leak_test(tmp_path, embedder, queries=100, docs_per_acl=2, max_words=60)
    assert report.queries == 100 and report.hits > 500
    assert set(report.by_mode) == {"vector", "keyword", "hybrid"}
    assert set(report.by_kind) == {"foreign-canary", "foreign-text", "topic", "own-canary"}
    assert (report.foreign_chunks, report.stale_chunks, report.wrong_canaries) == (0, 0, 0), \
        report.examples
    # the searches work: a principal's own canary is found by keyword and hybrid search
    assert report.control_total >= 5 and report.control_found == report.control_total


class EveryGroup:
    """A broken store: it searches as if the asker were in every group of its tenant."""

    def __init__(self, store):
        self.store = store

    async def search(self, query):
        p = query.principal
        widened = Principal(user=p.user, tenant=p.tenant, groups=["finance", "hr", "eng", "board"])
        return await self.store.search(msgspec.structs.replace(query, principal=widened))


async def test_the_checks_catch_a_store_that_ignores_groups(tmp_path, embedder):
    report = await run_leak_test(tmp_path, embedder, queries=20, docs_per_acl=1, max_words=40,
                                 reader=EveryGroup)
    assert report.foreign_chunks > 0 and report.wrong_canaries > 0
