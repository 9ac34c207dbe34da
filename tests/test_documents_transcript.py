"""Meeting transcripts as documents (operators/documents/transcript.py): patchwire's own
transcript JSON, WebVTT and SubRip."""
from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from operators.base import Reject
from operators.documents import chunk_document, parse_document
from operators.documents import transcript as transcript_module
from schemas.speech import Transcript, TranscriptSegment, Word

QMSUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "meetings" / "qmsum"


def cli_json(transcript: Transcript) -> bytes:
    """Exactly what `patchwire transcribe --json` prints (topology/cli.py)."""
    return json.dumps(msgspec.to_builtins(transcript), indent=2).encode()


def seg(start: float, text: str, speaker: str = "", end: float | None = None) -> TranscriptSegment:
    words = [Word(word=w, start=start, end=start + 0.3) for w in text.split()]
    return TranscriptSegment(start=start, end=start + 2.0 if end is None else end, text=text,
                             speaker=speaker, words=words)


def meeting() -> Transcript:
    return Transcript(job_id="j1", model="whisper-base", duration_s=200.0, segments=[
        seg(0.4, " Good morning, everyone.", "Ana"),
        seg(2.5, "Let's start with the budget.", "Ana"),
        seg(5.0, "   ", "Ana"),                                   # silence: skipped
        seg(83.2, "The budget is on track.", "Ben"),
        seg(85.6, "Marketing is a bit over.", "Ben"),
        seg(3725.0, "Thanks, see you next week.", "Ana"),
    ], warnings=["low audio level"])


def test_cli_json_becomes_one_paragraph_per_turn():
    doc = parse_document(cli_json(meeting()), "weekly-sync.json")
    assert doc.format == "transcript" and doc.title == "weekly-sync"
    assert doc.text == ("[00:00:00] Ana: Good morning, everyone. Let's start with the budget.\n\n"
                        "[00:01:23] Ben: The budget is on track. Marketing is a bit over.\n\n"
                        "[01:02:05] Ana: Thanks, see you next week.")
    assert all(b.kind == "paragraph" and b.section_path == ["Transcript"] for b in doc.blocks)
    assert doc.warnings == ["transcript: low audio level"]


def test_recognised_by_content_type_and_without_speakers():
    t = Transcript(job_id="j", segments=[seg(1, "one"), seg(3, "two"), seg(21, "three")])
    doc = parse_document(cli_json(t), "upload", "application/json; charset=utf-8")
    assert doc.text == "[00:00:01] one two three"


def test_long_turns_and_pauses_start_new_paragraphs(monkeypatch):
    monkeypatch.setattr(transcript_module, "MAX_TURN_CHARS", 40)
    sentences = [seg(10.0 * i, f"Sentence number {i} is here.", "Ana") for i in range(5)]
    later = seg(10.0 * 4 + 2 + transcript_module.PAUSE_S + 1, "After a pause.", "Ana")
    doc = parse_document(cli_json(Transcript(job_id="j", segments=sentences + [later])), "t.json")
    paragraphs = doc.text.split("\n\n")
    assert paragraphs[:3] == ["[00:00:00] Ana: Sentence number 0 is here.",
                              "[00:00:10] Ana: Sentence number 1 is here.",
                              "[00:00:20] Ana: Sentence number 2 is here."]
    assert paragraphs[-1] == "[00:01:13] Ana: After a pause."
    assert len(doc.blocks) == 6


def test_default_turn_bound_keeps_paragraphs_chunkable():
    words = " ".join(f"word{i}" for i in range(40))
    t = Transcript(job_id="j", segments=[seg(5.0 * i, words, "Ana") for i in range(60)])
    doc = parse_document(cli_json(t), "monologue.json")
    assert len(doc.blocks) > 5
    assert all(b.end - b.start <= transcript_module.MAX_TURN_CHARS + 30 for b in doc.blocks)
    chunks = chunk_document(doc, "mono", max_tokens=128, overlap_tokens=16)
    assert all(c.text == doc.text[c.start:c.end] and c.section_path == ["Transcript"]
               for c in chunks)


def test_powershell_utf16_json_and_bom():
    text = cli_json(meeting()).decode()
    assert parse_document(text.encode("utf-16"), "m.json").text.startswith("[00:00:00] Ana:")
    assert parse_document(b"\xef\xbb\xbf" + text.encode(), "m.json").blocks


@pytest.mark.parametrize("data, reason", [
    (b'{"name": "package", "version": "1.0"}',
     "JSON files are only read as patchwire meeting transcripts"),
    (b'[1, 2, 3]', "JSON files are only read as patchwire meeting transcripts"),
    (b'{"kind": "Transcript"}', "JSON files are only read as patchwire meeting transcripts"),
    (b'{"kind": "Transcript", "segments": [', "not valid JSON"),
    (b'{"kind": "Transcript", "job_id": "j", "segments": [{"start": "soon", "end": 1, "text": "x"}]}',
     "transcript JSON does not match patchwire's Transcript"),
    (b'{"kind": "Transcript", "job_id": "j", "segments": [{"start": 1, "end": 2, "text": "  "}]}',
     "no text in document"),
])
def test_other_json_is_rejected(data, reason):
    with pytest.raises(Reject) as err:
        parse_document(data, "data.json")
    assert reason in err.value.reason


VTT = """WEBVTT - weekly sync

NOTE exported by the meeting tool

STYLE
::cue { color: yellow }

intro
00:00:01.000 --> 00:00:03.500 align:start
<v Ana>Welcome <b>back</b>,
everyone.</v>

00:00:04.000 --> 00:00:06.000
<v.loud Ana>Budget first.

01:02.500 --> 01:05.000
<v Ben>It is on track.
"""

SRT = """1
00:00:01,000 --> 00:00:03,500
Welcome back,
everyone.

2
00:00:05,250 --> 00:00:07,000
Budget first.
"""


def test_webvtt_voices_cues_and_tags():
    doc = parse_document(VTT.encode(), "sync.vtt")
    assert doc.format == "transcript" and doc.title == "sync"
    assert doc.text == ("[00:00:01] Ana: Welcome back, everyone. Budget first.\n\n"
                        "[00:01:02] Ben: It is on track.")


def test_srt_with_windows_newlines():
    doc = parse_document(SRT.replace("\n", "\r\n").encode(), "sync.srt")
    assert doc.text == "[00:00:01] Welcome back, everyone. Budget first."
    assert doc.blocks[0].section_path == ["Transcript"]


def test_subtitles_without_cues_have_no_text():
    with pytest.raises(Reject, match="no text in document"):
        parse_document(b"WEBVTT\n\nNOTE nothing was said\n", "empty.vtt")


def test_clock():
    assert transcript_module.clock(0) == "00:00:00"
    assert transcript_module.clock(3599.99) == "00:59:59"
    assert transcript_module.clock(36000) == "10:00:00"
    assert transcript_module.clock(-3) == "00:00:00"
    assert transcript_module.clock(float("inf")) == "00:00:00"


@pytest.mark.skipif(not (QMSUM / "Product_test" / "ES2004a.json").exists(), reason="no QMSum data")
def test_real_meeting_turns():
    """An AMI meeting's speaker turns (QMSum), timed 4 s apart, as patchwire would write it."""
    turns = json.loads((QMSUM / "Product_test" / "ES2004a.json").read_text())["meeting_transcripts"]
    segments = [TranscriptSegment(start=4.0 * i, end=4.0 * i + 3.5, text=t["content"],
                                  speaker=t["speaker"]) for i, t in enumerate(turns)]
    doc = parse_document(cli_json(Transcript(job_id="ES2004a", segments=segments)), "ES2004a.json")
    speakers = {t["speaker"] for t in turns}
    for b in doc.blocks:
        line = doc.text[b.start:b.end]
        assert line.startswith("[") and line[11:].split(":")[0] in speakers
    changes = sum(1 for a, b in zip(turns, turns[1:]) if a["speaker"] != b["speaker"])
    assert len(doc.blocks) >= changes + 1 - sum(1 for t in turns if not t["content"].strip())
    chunks = chunk_document(doc, "ES2004a", max_tokens=200, overlap_tokens=32)
    assert all(c.text == doc.text[c.start:c.end] for c in chunks)
