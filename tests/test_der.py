"""DER (evals/der.py) on cases worked out by hand, and against pyannote.metrics on random
ones (tests/data/der_reference.json, written by tests/data/make_der_reference.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.der import DerResult, der
from operators.diarize import Turn

PYANNOTE = json.loads((Path(__file__).parent / "data" / "der_reference.json").read_text())
REF = [Turn(0.0, 10.0, "alice"), Turn(10.0, 20.0, "bob")]


def test_perfect_up_to_label_names():
    result = der(REF, [Turn(0.0, 10.0, "x"), Turn(10.0, 20.0, "y")])
    assert result.total == 20.0 and result.der == 0.0


def test_nothing_found_is_all_miss():
    result = der(REF, [], uem=[(0.0, 20.0)])
    assert (result.miss, result.false_alarm, result.confusion, result.der) == (20.0, 0, 0, 1.0)


def test_speech_in_silence_is_false_alarm():
    result = der([Turn(0.0, 10.0, "a")], [Turn(0.0, 10.0, "x"), Turn(15.0, 20.0, "x")],
                 uem=[(0.0, 20.0)])
    assert (result.false_alarm, result.miss, result.der) == (5.0, 0.0, 0.5)


def test_one_speaker_for_two_is_confusion_for_the_shorter():
    """Both turns labelled x: x maps to whoever it agrees with longer (alice, 12 s)."""
    ref = [Turn(0.0, 12.0, "alice"), Turn(12.0, 20.0, "bob")]
    result = der(ref, [Turn(0.0, 20.0, "x")])
    assert (result.confusion, result.miss, result.false_alarm) == (8.0, 0.0, 0.0)


def test_mapping_is_one_to_one_and_optimal():
    """Agreement: x-alice 5 s, y-alice 4 s, x-bob 4 s, y-bob 0. Greedy takes x-alice first and
    is left with y-bob (5 s right, 8 s confused); the best mapping is x-bob, y-alice (8 s
    right, 5 s confused)."""
    ref = [Turn(0.0, 9.0, "alice"), Turn(9.0, 13.0, "bob")]
    hyp = [Turn(0.0, 5.0, "x"), Turn(5.0, 9.0, "y"), Turn(9.0, 13.0, "x")]
    result = der(ref, hyp)
    assert result.confusion == pytest.approx(5.0) and result.total == 13.0


def test_overlap_counts_each_reference_speaker():
    """2 s where both talk and one is found: 2 s of miss, 12 s of reference speech."""
    ref = [Turn(0.0, 6.0, "a"), Turn(4.0, 10.0, "b")]
    hyp = [Turn(0.0, 5.0, "x"), Turn(5.0, 10.0, "y")]
    result = der(ref, hyp)
    assert result.total == 12.0 and result.miss == pytest.approx(2.0)
    assert result.confusion == pytest.approx(0.0) and result.overlap == pytest.approx(4.0)
    assert result.overlap_miss == pytest.approx(2.0)
    assert der(ref, hyp, skip_overlap=True).der == 0.0


def test_collar_removes_time_around_reference_boundaries():
    """A boundary 0.2 s late: all error without a collar, none with 0.25 s either side."""
    hyp = [Turn(0.0, 10.2, "x"), Turn(10.2, 20.0, "y")]
    assert der(REF, hyp).confusion == pytest.approx(0.2)
    with_collar = der(REF, hyp, collar=0.25)
    assert with_collar.der == 0.0
    assert with_collar.total == pytest.approx(20.0 - 0.25 - 0.5 - 0.25)   # 3 boundaries


def test_uem_limits_the_scored_time():
    result = der(REF, [Turn(0.0, 20.0, "x")], uem=[(0.0, 10.0)])
    assert result.total == 10.0 and result.der == 0.0


def test_a_speakers_own_overlapping_turns_count_once():
    ref = [Turn(0.0, 10.0, "a"), Turn(2.0, 4.0, "a")]
    assert der(ref, [Turn(0.0, 10.0, "x")]) == DerResult(total=10.0)


def test_empty_and_sum():
    assert der([], []).der == 0.0
    total = der(REF, []) + der(REF, REF)
    assert total.total == 40.0 and total.der == 0.5


@pytest.mark.parametrize("case", PYANNOTE["cases"], ids=lambda c: f"{len(c['reference'])}ref")
def test_matches_pyannote_metrics(case):
    ref = [Turn(*t) for t in case["reference"]]
    hyp = [Turn(*t) for t in case["hypothesis"]]
    for collar, want in case["scores"].items():
        got = der(ref, hyp, uem=[tuple(case["uem"])], collar=float(collar))
        assert got.total == pytest.approx(want["total"], abs=1e-6)
        assert got.miss == pytest.approx(want["missed detection"], abs=1e-6)
        assert got.false_alarm == pytest.approx(want["false alarm"], abs=1e-6)
        assert got.confusion == pytest.approx(want["confusion"], abs=1e-6)


def test_focus_scores_a_part_with_the_global_mapping():
    """x is mapped to alice over the whole; inside bob's short turn x is then confusion."""
    ref = [Turn(0.0, 9.0, "alice"), Turn(9.0, 10.0, "bob")]
    hyp = [Turn(0.0, 10.0, "x")]
    part = der(ref, hyp, focus=[(9.0, 10.0)])
    assert part.total == pytest.approx(1.0) and part.confusion == pytest.approx(1.0)
    assert der(ref, hyp, uem=[(9.0, 10.0)]).confusion == 0.0   # its own mapping: x is bob
