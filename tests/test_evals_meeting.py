"""The meeting eval's arithmetic and the load test's meeting builder: cpWER (evals/cpwer.py)
on hand-worked cases and against brute force, AMI reference cleanup, and the streamed
concatenation of clips (loadtests/meeting.py). Tiny inputs; no models, no servers."""
from __future__ import annotations

import itertools
import random
import wave
from types import SimpleNamespace

import numpy as np
import pytest

from evals.cpwer import ami_reference, by_speaker, cpwer, speaker_free
from evals.wer import align
from loadtests import meeting as bench
from topology import cli_docs


# ---- cpWER --------------------------------------------------------------------------------

def test_perfect_whatever_the_labels():
    result = cpwer({"A": "hello world", "B": "good morning"},
                   {"x": "good morning", "y": "hello world"})
    assert (result.errors, result.words, result.wer) == (0, 4, 0.0)
    assert result.mapping == {"x": "B", "y": "A"}


def test_a_word_given_to_the_wrong_speaker_counts_twice():
    """"three" belongs to B but was given to x (= A): an insertion in A, a deletion in B."""
    result = cpwer({"A": "one two", "B": "three four"}, {"x": "one two three", "y": "four"})
    assert (result.insertions, result.deletions, result.substitutions) == (1, 1, 0)
    assert result.wer == 0.5


def test_unmatched_reference_speaker_is_all_deletions():
    result = cpwer({"A": "one two", "B": "three four", "C": "five six seven"},
                   {"x": "one two", "y": "three four"})
    assert (result.deletions, result.errors, result.words) == (3, 3, 7)
    assert set(result.mapping.values()) == {"A", "B"}


def test_unmatched_hypothesis_speaker_is_all_insertions():
    result = cpwer({"A": "one two"}, {"x": "one two", "y": "noise here"})
    assert (result.insertions, result.errors) == (2, 2)
    assert result.mapping == {"x": "A", "y": ""}


def test_empty_hypothesis_deletes_everything():
    result = cpwer({"A": "one two", "B": "three"}, {})
    assert (result.deletions, result.errors, result.wer, result.mapping) == (3, 3, 1.0, {})


def test_nothing_said_nothing_heard():
    assert cpwer({}, {}).wer == 0.0
    assert cpwer({"A": ""}, {"x": ""}).errors == 0


def test_normalised_before_scoring():
    result = cpwer({"A": "Mm-hmm. Don't do it, Mr. Smith!"}, {"x": "do not do it mister smith"})
    assert result.errors == 0


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_over_permutations(seed):
    rng = random.Random(seed)
    vocab = "a b c d e".split()
    text = lambda: " ".join(rng.choices(vocab, k=rng.randint(0, 6)))  # noqa: E731
    refs = {f"r{i}": text() for i in range(rng.randint(1, 4))}
    hyps = {f"h{i}": text() for i in range(rng.randint(0, 4))}
    size = max(len(refs), len(hyps))
    ref_w = [t.split() for t in refs.values()] + [[]] * (size - len(refs))
    hyp_w = [t.split() for t in hyps.values()] + [[]] * (size - len(hyps))
    best = min(sum(sum(align(ref_w[i], hyp_w[p[i]])) for i in range(size))
               for p in itertools.permutations(range(size)))
    assert cpwer(refs, hyps, normalizer=None).errors == best


def test_by_speaker_joins_in_time_order():
    seg = lambda start, speaker, text: SimpleNamespace(start=start, speaker=speaker, text=text)  # noqa: E731
    assert by_speaker([seg(5, "x", "later"), seg(0, "x", " first "), seg(2, "y", "other")]) == \
        {"x": "first later", "y": "other"}


def test_speaker_free_moves_each_piece_to_its_speaker():
    refs = {"A": "one two three", "B": "four five six"}
    pieces = [("A", "one two"), ("A", "three"), ("A", "four five"), ("B", "six")]
    assert cpwer(refs, {"A": "one two three four five", "B": "six"}).errors == 4
    result = speaker_free(refs, pieces)
    assert result.errors == 0 and result.mapping == {"A": "A", "B": "B"}


def test_speaker_free_is_a_local_search_never_worse_than_its_start():
    """Two pieces that must swap speakers together: no single move helps, so the search
    stops where it began (the figure is an upper bound on the exact optimum)."""
    refs = {"A": "one two three", "B": "four five"}
    pieces = [("A", "one two"), ("A", "four"), ("B", "three"), ("B", "five")]
    start = cpwer(refs, {"A": "one two four", "B": "three five"}).errors
    assert speaker_free(refs, pieces).errors == start == 2


def test_speaker_free_without_references_inserts_everything():
    assert speaker_free({}, [("x", "one two")]).insertions == 2


def test_ami_reference_cleanup():
    text = "may h maybe have an L_C_D_ di display, a b button I think"
    assert ami_reference(text).split() == "may maybe have an LCD di display, a button I think".split()


# ---- the meeting builder ------------------------------------------------------------------

def _clips(tmp_path, lengths):
    """Tiny 16 kHz wavs; clip k holds the value k + 1 throughout."""
    paths = []
    for k, n in enumerate(lengths):
        path = tmp_path / f"clip{k}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(bench.RATE)
            out.writeframes(np.full(n, k + 1, np.int16).tobytes())
        paths.append(path)
    return paths


def test_meeting_loops_the_clips_and_cuts_at_the_duration(tmp_path):
    clips = _clips(tmp_path, [1600, 800])                  # 0.1 s and 0.05 s
    pieces = list(bench.meeting_chunks(clips, 0.33))
    audio = np.concatenate(pieces)
    assert len(audio) == round(0.33 * bench.RATE)
    expected = np.concatenate([np.full(1600, 1), np.full(800, 2), np.full(1600, 1),
                               np.full(800, 2), np.full(1600, 1)])[:len(audio)]
    assert np.array_equal(audio, expected)


def test_meeting_is_built_one_clip_at_a_time(tmp_path):
    """Lazy: a clip is decoded only when the writer asks for it, and no piece is longer
    than a clip, so memory holds one clip whatever the meeting's length."""
    loads = []

    def load(path):
        loads.append(path)
        return np.ones(100, np.int16)
    chunks = bench.meeting_chunks([tmp_path / "a", tmp_path / "b"], 10.0, load=load)
    first = next(chunks)
    assert len(loads) == 1 and len(first) == 100
    sizes = []

    def watched():
        for piece in chunks:
            sizes.append(len(piece))
            yield piece
    seconds = bench.write_wav(tmp_path / "meeting.wav", watched())
    assert seconds == pytest.approx(10.0 - 100 / bench.RATE)
    assert max(sizes) == 100 and len(loads) == 10 * bench.RATE // 100


def test_written_meeting_is_a_16k_mono_wav_of_that_length(tmp_path):
    clips = _clips(tmp_path, [1600])
    out = tmp_path / "meeting.wav"
    seconds = bench.write_wav(out, bench.meeting_chunks(clips, 0.25))
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        assert w.getnframes() == 4000 and seconds == 0.25
        assert set(np.frombuffer(w.readframes(4000), np.int16)) == {1}


# ---- the load test's progress watch and the CLI -------------------------------------------

def test_watch_keeps_first_start_last_done_and_asr_checkpoints():
    watch = bench.Watch()
    event = lambda op, stage, t, done=0.0, total=0.0: SimpleNamespace(  # noqa: E731
        operator=op, stage=SimpleNamespace(value=stage), time=t, done=done, total=total)
    for e in (event("asr", "started", 1.0), event("asr", "started", 2.0),
              event("asr", "progress", 3.0, 30, 100), event("asr", "progress", 4.0, 60, 100),
              event("asr", "done", 5.0), event("asr", "done", 6.0)):
        watch(e)
    assert (watch.started["asr"], watch.done["asr"]) == (1.0, 6.0)
    assert set(watch.asr_rss) == {0.25, 0.5}


def test_quarter_medians_show_a_trend_through_noise():
    """A step up each quarter, with a spike of 1 GiB in two samples of every ten."""
    samples = [(t, 100.0 + 10 * (t // 10) + (1000.0 if t % 5 == 0 else 0.0)) for t in range(40)]
    assert bench.quarter_medians(samples, 0.0, 40.0) == [100.0, 110.0, 120.0, 130.0]
    assert bench.quarter_medians(samples, 100.0, 140.0) == []


def test_trend_tells_a_steady_rise_from_a_transient():
    watch = bench.Watch()
    watch.started, watch.done = {"asr": 0.0}, {"asr": 40.0}
    rising = SimpleNamespace(samples=[(t, 400.0 + t) for t in range(40)])
    transient = SimpleNamespace(samples=[(t, 500.0 + (90.0 if 10 <= t < 20 else 0.0))
                                         for t in range(40)])
    assert "GROWS" in bench._trend({"watch": watch, "sampler": rising}, "asr")
    assert "bounded" in bench._trend({"watch": watch, "sampler": transient}, "asr")


def test_eval_meeting_rejects_unknown_parts(capsys):
    args = SimpleNamespace(product="meeting", parts="wer,bogus", out=None, limit=None, tasks=1)
    assert cli_docs.cmd_eval(args) == 2
    assert "known parts: wer,sawer,der,summary" in capsys.readouterr().err
