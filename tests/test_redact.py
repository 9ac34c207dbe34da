"""PII redaction: each kind on hand cases, transcripts (text and words), and precision/recall
on the Presidio synthetic set (`pytest -s tests/test_redact.py -k presidio` prints the table)."""
from __future__ import annotations

import json
from collections import Counter

import msgspec
import pytest

from operators.meeting.redact import (Found, Pii, find, iban_valid, luhn, redact,
                                      redact_transcript)
from schemas import Transcript, TranscriptSegment, Word


def kinds(text: str, names=()) -> list[tuple[str, str]]:
    return [(f.kind.value, text[f.start:f.end]) for f in find(text, names)]


def test_luhn_and_iban_checks():
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_each_kind_is_found_with_its_exact_extent():
    text = ("Mail ana.silva@example.co.uk or call +44 20 7946 0958 ext 12. Card 4111 1111 1111 "
            "1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789.")
    assert kinds(text) == [("email", "ana.silva@example.co.uk"), ("phone", "+44 20 7946 0958 ext 12"),
                           ("card", "4111 1111 1111 1111"), ("iban", "GB82 WEST 1234 5698 7654 32"),
                           ("ssn", "123-45-6789")]


def test_lookalikes_are_left_alone():
    text = ("Order 4111 1111 1111 1112 shipped on 2024-03-15 12:30 to 10.0.0.12, "
            "version 1.2.3, SSN-like 900-12-3456, IBAN-like GB82WEST12345698765433, "
            "we sold 1500 units at 25 euros; she lives at 370 3911 Fourth Avenue.")
    assert kinds(text) == []


def test_names_are_redacted_only_when_given_whole_words_any_case_and_spacing():
    text = "Ana Silva said ANA  SILVA and Anastasia agreed; Ben's idea."
    assert kinds(text, ["Ana Silva", "Ben"]) == [("name", "Ana Silva"), ("name", "ANA  SILVA"),
                                                 ("name", "Ben")]
    assert kinds(text) == []


def test_the_longer_overlapping_match_wins():
    assert kinds("write to ana@example.com", ["ana"]) == [("email", "ana@example.com")]


def test_redact_masks_and_says_where_in_the_original_text():
    text = "Call 555-123-4567 or mail bo@x.org, Bo."
    done = redact(text, names=["Bo"])
    assert done.text == "Call [PHONE] or mail [EMAIL], [NAME]."
    assert done.found == [Found(Pii.PHONE, 5, 17), Found(Pii.EMAIL, 26, 34), Found(Pii.NAME, 36, 38)]
    assert b"555" not in msgspec.json.encode(done.found)   # the record holds no value


def test_kinds_can_be_chosen():
    done = redact("Call 555-123-4567 or mail bo@x.org", kinds=frozenset({Pii.EMAIL}))
    assert done.text == "Call 555-123-4567 or mail [EMAIL]"


def test_transcripts_are_redacted_in_text_and_words_with_a_phone_said_in_groups():
    words = [Word(word=w, start=float(i), end=i + 0.8, probability=0.9)
             for i, w in enumerate([" Ana,", " call", " 555", " 123", " 4567", " today."])]
    t = Transcript(job_id="j", segments=[
        TranscriptSegment(start=0, end=6, text=" Ana, call 555 123 4567 today.", words=words, speaker="Ben"),
        TranscriptSegment(start=6, end=8, text="Nothing here.", speaker="Ana")])
    out, where = redact_transcript(t, names=["Ana"])
    assert out.segments[0].text == " [NAME], call [PHONE] today."
    said = [w.word for w in out.segments[0].words]
    assert said == [" [NAME]", " call", " [PHONE]", " today."]
    phone = out.segments[0].words[2]
    assert (phone.start, phone.end) == (2.0, 4.8)            # from " 555" to " 4567"
    assert out.segments[1] == t.segments[1]
    assert [(w.segment, w.kind) for w in where] == [(0, Pii.NAME), (0, Pii.PHONE)]
    assert out.segments[1].speaker == "Ana"                  # speaker labels are not text


# ---- Presidio synthetic set ----------------------------------------------------------------

GOLD = {"EMAIL_ADDRESS": Pii.EMAIL, "PHONE_NUMBER": Pii.PHONE, "CREDIT_CARD": Pii.CARD,
        "IBAN_CODE": Pii.IBAN, "US_SSN": Pii.SSN, "PERSON": Pii.NAME}


def presidio_scores(rows: list[dict]) -> dict[Pii, dict[str, float]]:
    """Per kind: a prediction is right if it overlaps a gold span of that kind; a gold span
    is found if a prediction of its kind overlaps it. Names are given from the gold spans
    (the redactor only redacts names it is given), so the name row tests matching only."""
    right, predicted, found, gold = Counter(), Counter(), Counter(), Counter()
    for row in rows:
        spans = [(GOLD.get(s["entity_type"]), s["start_position"], s["end_position"])
                 for s in row["spans"]]
        names = [s["entity_value"] for s in row["spans"] if s["entity_type"] == "PERSON"]
        pred = find(row["full_text"], names)
        for p in pred:
            predicted[p.kind] += 1
            right[p.kind] += any(k == p.kind and a < p.end and b > p.start for k, a, b in spans)
        for k, a, b in spans:
            if k is not None:
                gold[k] += 1
                found[k] += any(p.kind == k and a < p.end and b > p.start for p in pred)
    return {k: {"precision": right[k] / predicted[k] if predicted[k] else 0.0,
                "recall": found[k] / gold[k] if gold[k] else 0.0,
                "predicted": predicted[k], "gold": gold[k]} for k in Pii}


def test_presidio_precision_and_recall(shared_data):
    rows = json.loads((shared_data / "security/pii_presidio/synth_dataset_v2.json").read_text())
    scores = presidio_scores(rows)
    print("\n| kind | gold | predicted | precision | recall |\n|---|---:|---:|---:|---:|")
    for k, s in scores.items():
        print(f"| {k.value} | {s['gold']} | {s['predicted']} | {s['precision']:.3f} | {s['recall']:.3f} |")
    for k in (Pii.EMAIL, Pii.CARD, Pii.IBAN, Pii.SSN):
        assert scores[k]["precision"] >= 0.95 and scores[k]["recall"] >= 0.95, k
    assert scores[Pii.PHONE]["recall"] >= 0.95 and scores[Pii.PHONE]["precision"] >= 0.85
    assert scores[Pii.NAME]["recall"] == pytest.approx(1.0)
