"""nDCG@k and recall@k on cases worked out by hand."""
from __future__ import annotations

import math

import pytest

from evals.ir import dcg, load_qrels, mean, ndcg_at, recall_at, unique

LOG2_3 = math.log2(3)      # the discount at rank 2


def test_dcg_discounts_by_log2_of_rank_plus_one():
    # 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.26186 + 0.5
    assert dcg([3, 2, 1]) == pytest.approx(3 + 2 / LOG2_3 + 0.5)


def test_perfect_ranking_scores_one():
    assert ndcg_at(["a", "b", "x"], {"a": 1, "b": 1}, 10) == pytest.approx(1.0)


def test_single_relevant_at_rank_two():
    # DCG = 1/log2(3), IDCG = 1: 0.63093
    assert ndcg_at(["x", "a"], {"a": 1}, 10) == pytest.approx(1 / LOG2_3)
    assert ndcg_at(["x", "a"], {"a": 1}, 10) == pytest.approx(0.63093, abs=1e-5)


def test_two_relevant_one_found_at_rank_three():
    # DCG = 1/log2(4) = 0.5; IDCG = 1 + 1/log2(3) = 1.63093; nDCG = 0.30657
    assert ndcg_at(["x", "y", "a"], {"a": 1, "b": 1}, 10) == pytest.approx(0.5 / (1 + 1 / LOG2_3))
    assert ndcg_at(["x", "y", "a"], {"a": 1, "b": 1}, 10) == pytest.approx(0.30657, abs=1e-5)


def test_graded_relevance_puts_the_higher_grade_first_in_the_ideal():
    # ranked b(1), a(2): DCG = 1 + 2/log2(3) = 2.26186; ideal a, b: 2 + 1/log2(3) = 2.63093
    got = ndcg_at(["b", "a"], {"a": 2, "b": 1}, 10)
    assert got == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))


def test_cutoff_ignores_what_lies_below_k():
    assert ndcg_at(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert recall_at(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert recall_at(["x", "y", "a"], {"a": 1}, 3) == 1.0


def test_ideal_is_cut_at_k_too():
    # three relevant, k = 1, the first is relevant: DCG = IDCG = 1
    assert ndcg_at(["a", "x"], {"a": 1, "b": 1, "c": 1}, 1) == pytest.approx(1.0)


def test_a_repeated_document_earns_its_gain_once():
    # chunks a#0, a#1 → documents a, a: the second is skipped, x moves up to rank 2
    ranked = ["a", "a", "x", "b"]
    # document order a, x, b: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    assert ndcg_at(ranked, {"a": 1, "b": 1}, 10) == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert recall_at(ranked, {"a": 1, "b": 1}, 2) == 0.5
    assert recall_at(ranked, {"a": 1, "b": 1}, 3) == 1.0


def test_zero_grades_are_not_relevant():
    assert recall_at(["a"], {"a": 0, "b": 1}, 10) == 0.0
    assert ndcg_at(["a"], {"a": 0}, 10) == 0.0


def test_no_relevant_documents_score_zero():
    assert ndcg_at(["a"], {}, 10) == 0.0 and recall_at(["a"], {}, 10) == 0.0


def test_recall_counts_found_over_all_relevant():
    assert recall_at(["a", "x", "c"], {"a": 1, "b": 1, "c": 1, "d": 1}, 10) == 0.5


def test_unique_and_mean():
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert mean([1.0, 0.0, 0.5]) == 0.5 and mean([]) == 0.0


def test_load_qrels_reads_beir_tsv(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n1\t31715818\t1\n1\t99\t2\n3\t14717500\t1\n")
    assert load_qrels(path) == {"1": {"31715818": 1, "99": 2}, "3": {"14717500": 1}}


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_queries():
    from evals.ir import bootstrap_interval
    few = [0.1, -0.05, 0.2, 0.0, 0.05] * 4
    low, high = bootstrap_interval(few)
    assert low < mean(few) < high
    many_low, many_high = bootstrap_interval(few * 25)
    assert many_high - many_low < (high - low) / 3      # ~1/sqrt(25) of the width
    assert bootstrap_interval([0.5] * 10) == (0.5, 0.5)
    assert bootstrap_interval([]) == (0.0, 0.0)

