"""WER: the normaliser makes Whisper-style output and the shared references meet, the alignment
counts edits right, and a manifest scores into a report."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evals.normalize import int_to_words, normalize, ordinal_words
from evals.wer import align, format_report, main, score_manifest, wer

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "asr" / "manifest.jsonl"


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"), (105, "one hundred five"),
    (1000, "one thousand"), (2024, "two thousand twenty four"),
    (1_234_567_890, "one billion two hundred thirty four million five hundred sixty seven thousand "
                    "eight hundred ninety"),
])
def test_int_to_words(n, words):
    assert int_to_words(n) == words


def test_ordinals():
    assert [ordinal_words(n) for n in (1, 2, 3, 5, 12, 15, 20, 21, 100)] == [
        "first", "second", "third", "fifth", "twelfth", "fifteenth", "twentieth", "twenty first",
        "one hundredth"]


# (reference as in the shared manifest, what an ASR model would plausibly write)
SAME = [
    ('the Gutenberg, or "forty-two line Bible" of about fourteen fifty-five,',
     "The Gutenberg, or 42-line Bible of about 1455."),
    ("(which also was printed at Maintz by Peter Schoeffer in the year fourteen sixty-two)",
     "which also was printed at Maintz by Peter Schoeffer in the year 1462."),
    ("invented in the middle of the fifteenth century", "invented in the middle of the 15th century"),
    ("recorded by lord byron with its splendours", "Recorded by Lord Byron with its splendors."),
    ("The first books were printed in black letter, i.e. the letter", "The first books were printed in "
     "black letter, that is, the letter"),
    ("psalters, etc., produced", "psalters et cetera produced"),
    ("lag behind by 25 to 30 year", "lag behind by twenty-five to thirty year"),
    ("is therefore said to be 3:2", "is therefore said to be 3 2"),
    ("many people don't think", "Many people do not think"),
    ("IT WAS THE FIRST GREAT SORROW OF HIS LIFE", "It was the first great sorrow of his life."),
    ("Paris, Lubeck, and other cities", "Paris, Lübeck and other cities."),
    ("the ne-plus-ultra of Gothic type,", "the ne plus ultra of gothic type"),
    ("Mr. and Mrs. Smith met Dr. Jones", "mister and missus smith met doctor jones"),
    ("one hundred and twenty people, a thousand more", "120 people, 1,000 more"),
    ("it cost $5 or 10% of 2.5 million in the 1990s", "it cost five dollars or ten percent of two point "
     "five million in the nineteen nineties"),
    ("um, the colour of the centre [inaudible]", "the color of the center"),
]


@pytest.mark.parametrize("ref, hyp", SAME)
def test_normaliser_joins_equivalent_writings(ref, hyp):
    assert normalize(ref) == normalize(hyp)


def test_normaliser_output_is_plain_words():
    assert normalize("  Hello,\tWORLD!  It’s   O'Brien's \u201cbook\u201d  ") == "hello world its obriens book"
    assert normalize("") == ""


def test_shared_references_normalise_to_plain_words():
    for line in MANIFEST.read_text().splitlines():
        text = normalize(json.loads(line)["text"])
        assert text and all(w.isalpha() and w.islower() and w.isascii() for w in text.split()), text


def test_align_counts_each_kind_of_edit():
    assert align("a b c d".split(), "a x c d e".split()) == (1, 0, 1)
    assert align("a b c".split(), "a c".split()) == (0, 1, 0)
    assert align([], "a b".split()) == (0, 0, 2)
    assert align("a b".split(), []) == (0, 2, 0)


def test_corpus_wer_sums_edits_over_reference_words():
    result = wer(["the cat sat", "on the mat"], ["the cat sat down", "on a mat"])
    assert (result.errors, result.words, result.substitutions, result.deletions, result.insertions) == (
        2, 6, 1, 0, 1)
    assert result.wer == pytest.approx(2 / 6)
    assert wer([""], [""]).wer == 0.0 and math.isinf(wer([""], ["x"]).wer)
    assert wer(["Hello, World"], ["hello world"], normalizer=None).errors == 2
    with pytest.raises(ValueError):
        wer(["a"], [])


def test_score_manifest_and_report():
    entries = [json.loads(line) for line in MANIFEST.read_text().splitlines()]
    truth = {MANIFEST.parent / e["audio"]: e["text"] for e in entries}
    perfect = score_manifest(lambda path: truth[path], MANIFEST)
    assert perfect["total"]["errors"] == 0 and perfect["total"]["utterances"] == len(entries)
    assert set(perfect["corpora"]) == {e["corpus"] for e in entries}

    def sloppy(path: Path) -> str:  # drops the last word of every utterance
        return truth[path].rsplit(" ", 1)[0]

    report = score_manifest(sloppy, MANIFEST, limit=3)
    assert [r["deletions"] for r in report["utterances"]] == [1, 1, 1]
    assert report["total"]["words"] == sum(r["words"] for r in report["utterances"])
    text = format_report(report)
    assert "| **total** | 3 |" in text and "## Utterances with errors" in text
    assert text.count("- hyp:") == 3


def test_main_scores_a_hypothesis_file(tmp_path, capsys):
    lines = MANIFEST.read_text().splitlines()[:2]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text("\n".join(json.dumps({"audio": json.loads(l)["audio"], "text": json.loads(l)["text"]})
                              for l in lines))
    assert main([str(manifest), "--hyps", str(hyps), "--json", str(tmp_path / "r.json")]) == 0
    assert "| **total** | 2 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["total"]["wer"] == 0.0
