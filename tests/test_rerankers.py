"""The sentence + BM25 reranker: its pure parts on hand-made numbers, the whole on MiniLM."""
from __future__ import annotations

import numpy as np
import pytest

from operators.qa.rerankers import (SCORES, SENTENCES, RerankWeights, SentenceCache,
                                    best_sentence, blend, minmax, passage_cosines, rerank,
                                    reorder, sentences)
from schemas.documents import DocumentKey, Passage


def _passage(n: int, text: str = "text", *, vector_rank: int = 0, relevance=None) -> Passage:
    return Passage(chunk_id=f"d{n}#0", key=DocumentKey(doc_id=f"d{n}"), index=0, text=text,
                   start=0, end=len(text), vector_rank=vector_rank, relevance=relevance)


# --- sentences -------------------------------------------------------------------------

def test_sentences_split_where_pdf_text_lost_the_space():
    text = "White matter matters in infants.A line scan sequence was applied to preterm babies."
    assert sentences(text) == ["White matter matters in infants.",
                               "A line scan sequence was applied to preterm babies."]


def test_sentences_keep_abbreviations_and_merge_fragments():
    text = ("Results. The U.S. Army trial, e.g. The first cohort, enrolled 40 people (n = 40). "
            "It worked well.")
    # "Results." has nothing before it to join; "It worked well." (3 words) joins backwards
    assert sentences(text) == [
        "Results.",
        "The U.S. Army trial, e.g. The first cohort, enrolled 40 people (n = 40). It worked well."]


def test_a_heading_line_is_a_sentence_of_its_own():
    text = "Aspirin and colorectal cancer\n\nWe followed 2,000 adults for ten years."
    assert sentences(text) == ["Aspirin and colorectal cancer",
                               "We followed 2,000 adults for ten years."]


def test_text_without_a_sentence_end_is_one_sentence():
    assert sentences("no full stop here at all") == ["no full stop here at all"]
    assert sentences("") == [""]


# --- scores ----------------------------------------------------------------------------

def test_minmax_scales_to_unit_range_and_flattens_constants():
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax(np.array([7.0, 7.0])), [0.0, 0.0])
    assert minmax(np.array([])).size == 0


def test_best_sentence_is_the_highest_cosine_per_passage():
    q = np.array([1.0, 0.0], np.float32)
    vectors = [np.array([[0.0, 1.0], [0.6, 0.8]], np.float32), np.array([[1.0, 0.0]], np.float32),
               np.empty((0, 2), np.float32)]
    np.testing.assert_allclose(best_sentence(q, vectors), [0.6, 1.0, 0.0])


def test_blend_weighs_scaled_signals():
    sentence, keyword = np.array([0.2, 0.6, 0.4]), np.array([30.0, 10.0, 0.0])
    passage = np.array([0.0, 1.0, 0.5])
    # scaled: sentence [0, 1, .5], keyword [1, 1/3, 0], passage as given
    np.testing.assert_allclose(blend(SENTENCES, sentence, keyword, passage), [1.0, 4 / 3, 0.5])
    np.testing.assert_allclose(blend(SCORES, sentence, keyword, passage), [1.0, 4 / 3, 0.5])
    only_keyword = RerankWeights(sentence=0.0, keyword=1.0, passage=0.0)
    np.testing.assert_allclose(blend(only_keyword, sentence, keyword, passage), [1.0, 1 / 3, 0.0])
    mixed = RerankWeights(sentence=1.0, keyword=1.0, passage=2.0)
    np.testing.assert_allclose(blend(mixed, sentence, keyword, passage), [1.0, 10 / 3, 1.5])


def test_a_keyword_only_passage_gets_the_lowest_cosine_seen():
    passages = [_passage(0, vector_rank=3, relevance=0.61), _passage(1),
                _passage(2, vector_rank=9, relevance=0.42)]
    np.testing.assert_allclose(passage_cosines(passages), [0.61, 0.42, 0.42])
    np.testing.assert_allclose(passage_cosines([_passage(0)]), [0.0])


def test_reorder_sorts_by_score_keeps_fused_order_on_ties_and_records_the_score():
    passages = [_passage(n) for n in range(4)]
    out = reorder(passages, np.array([0.5, 0.9, 0.5, 0.1]))
    assert [p.chunk_id for p in out] == ["d1#0", "d0#0", "d2#0", "d3#0"]
    assert [p.score for p in out] == [0.9, 0.5, 0.5, 0.1]


class FixedSentences:
    """Sentence vectors given by the test, in passage order."""

    def __init__(self, vectors):
        self.given = vectors

    async def vectors(self, passages):
        return self.given[:len(passages)]


async def test_sentences_let_one_strong_sentence_and_bm25_overtake_the_fused_order():
    q = np.array([1.0, 0.0], np.float32)
    passages = [_passage(0), _passage(1), _passage(2)]
    source = FixedSentences([np.array([[0.5, 0.87]], np.float32),              # weak sentences
                             np.array([[0.3, 0.95], [0.99, 0.14]], np.float32),  # one strong
                             np.array([[0.6, 0.8]], np.float32)])
    out = await rerank(passages, [5.0, 9.0, 0.0], SENTENCES, q, source)
    assert [p.chunk_id for p in out] == ["d1#0", "d0#0", "d2#0"]


async def test_scores_blend_cosine_and_bm25_without_embedding_anything():
    passages = [_passage(0, vector_rank=1, relevance=0.70),      # fused first: best cosine
                _passage(1, vector_rank=2, relevance=0.66),      # but far the best BM25
                _passage(2),                                     # keyword-only: cosine .50
                _passage(3, vector_rank=3, relevance=0.50)]
    # cosine [.7, .66, .5, .5] scaled [1, .8, 0, 0]; BM25 [0, 20, 10, 0] scaled [0, 1, .5, 0]
    out = await rerank(passages, [0.0, 20.0, 10.0, 0.0], SCORES)
    assert [p.chunk_id for p in out] == ["d1#0", "d0#0", "d2#0", "d3#0"]
    assert [p.score for p in out] == pytest.approx([1.8, 1.0, 0.5, 0.0])


async def test_rerank_refuses_inputs_that_do_not_fit():
    with pytest.raises(ValueError, match="query_vector"):
        await rerank([_passage(0), _passage(1)], [1.0, 2.0], SENTENCES)
    with pytest.raises(ValueError, match="1 keyword scores for 2 passages"):
        await rerank([_passage(0), _passage(1)], [1.0], SCORES)


async def test_rerank_leaves_a_single_passage_alone():
    one = [_passage(0)]
    assert await rerank(one, [1.0], SENTENCES, np.zeros(2, np.float32), FixedSentences([])) == one


# --- on the real embedder --------------------------------------------------------------

@pytest.fixture(scope="module")
async def embedder():
    from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
    engine = MiniLmEmbedder(MiniLmConfig(threads=1))
    yield engine
    await engine.close()


GENERIC = ("Colorectal cancer screening programmes differ between countries. Costs of "
           "colonoscopy were compared across twelve health systems. Uptake of screening "
           "invitations was highest among women over sixty.")
EVIDENCE = ("We followed 40,000 adults in a national cohort for twelve years. Questionnaires "
            "recorded diet, exercise and medication. Regular aspirin use lowered the risk of "
            "colorectal cancer by a third. Smoking status was adjusted for in every model.")


async def test_the_sentence_that_answers_the_claim_lifts_its_passage(embedder):
    claim = "Aspirin reduces the risk of colorectal cancer."
    q = (await embedder.embed([claim], "query"))[0]
    passages = [_passage(0, GENERIC), _passage(1, EVIDENCE)]    # fused order: generic first
    out = await rerank(passages, [4.0, 4.0], SENTENCES, q, SentenceCache(embedder))
    assert [p.chunk_id for p in out] == ["d1#0", "d0#0"]


async def test_sentence_cache_embeds_only_what_it_has_not_seen(embedder):
    cache = SentenceCache(embedder, max_chunks=2)
    a, b, c = _passage(0, GENERIC), _passage(1, EVIDENCE), _passage(2, "One more sentence here.")
    first = await cache.vectors([a, b])
    assert [len(v) for v in first] == [len(sentences(GENERIC)), len(sentences(EVIDENCE))]
    np.testing.assert_allclose(np.linalg.norm(first[1], axis=1), 1.0, atol=1e-5)
    again = await cache.vectors([b, a])
    assert (cache.misses, cache.hits) == (2, 2)
    np.testing.assert_array_equal(again[0], first[1])
    await cache.vectors([c])                    # b was used least recently: evicted
    await cache.vectors([a])
    assert (cache.misses, cache.hits) == (3, 3)
    await cache.vectors([b])
    assert (cache.misses, cache.hits) == (4, 3)
