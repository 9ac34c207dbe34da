"""ROUGE as evals/summary.py computes it, on cases worked out by hand; and its QMSum reader."""
from __future__ import annotations

from pathlib import Path

import pytest

from evals.summary import clean, lcs, load_meeting, ordered, rouge, rouge_l, rouge_n, tokens


def test_tokens_are_lower_case_alphanumeric_runs():
    assert tokens("The Cat's 25-Euro remote!") == ["the", "cat", "s", "25", "euro", "remote"]


def test_rouge_1_and_2_on_a_one_word_change():
    cand, ref = "the cat sat on the mat", "The cat is on the mat."
    assert rouge_n(cand, ref, 1)["f"] == pytest.approx(5 / 6)      # the ×2, cat, on, mat
    assert rouge_n(cand, ref, 2)["f"] == pytest.approx(3 / 5)      # the cat, on the, the mat


def test_repeated_words_count_only_as_often_as_the_reference_has_them():
    s = rouge_n("the the the the", "the cat", 1)
    assert (s["p"], s["r"]) == (1 / 4, 1 / 2)
    assert s["f"] == pytest.approx(1 / 3)


def test_rouge_l_is_the_longest_common_subsequence():
    assert lcs("a b c d".split(), "d c b a".split()) == 1
    assert lcs("a x b y c".split(), "a b c".split()) == 3
    s = rouge_l("a x b y c", "a b c")
    assert (s["p"], s["r"]) == (3 / 5, 1.0)
    assert s["f"] == pytest.approx(2 * 0.6 / 1.6)


def test_identical_and_empty_texts():
    assert all(v["f"] == 1.0 for v in rouge("Same words here.", "same words here").values())
    assert all(v["f"] == 0.0 for v in rouge("", "reference text").values())
    assert rouge_n("one", "one", 2)["f"] == 0.0                     # no bigram on either side


def test_qmsum_marks_go_and_spaced_punctuation_closes():
    assert clean("{vocalsound} Okay , yeah {disfmarker} we 're fine ?") == "Okay, yeah we 're fine?"


def test_meeting_order_mixes_series_and_phases():
    names = [f"{s}{p}" for s in ("ES2004", "ES2011", "IS1003") for p in "abcd"]
    got = [p.stem for p in ordered([Path(f"{n}.json") for n in names])]
    assert got[:4] == ["ES2004a", "ES2011b", "IS1003c", "ES2004b"]
    assert sorted(got) == sorted(names)


def test_a_qmsum_meeting_reads_as_a_transcript_with_its_reference(shared_data):
    t, reference = load_meeting(shared_data / "meetings/qmsum/Product_test/ES2004a.json")
    assert len(t.segments) == 320 and t.segments[1].speaker == "Project Manager"
    assert "{" not in t.text and reference.startswith("Project Manager introduced")
    assert all(a.end <= b.start + 1e-6 for a, b in zip(t.segments, t.segments[1:]))
