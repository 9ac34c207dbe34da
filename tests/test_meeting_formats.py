"""Meeting outputs: each format parsed back and checked against the transcript it came from."""
from __future__ import annotations

import json
import re

import msgspec
import pytest

from operators.meeting import formats as fm
from schemas import Transcript, TranscriptSegment, Word
from schemas.meeting import ActionItem, MeetingSummary, SummaryItem, SummarySpan, summary_json_schema

LONG = ("so the plan is that we build the remote with a rubber case and a small screen and "
        "then we test it with the focus group next week")


def transcript() -> Transcript:
    words = [Word(word=" Hello", start=0.0, end=0.4, probability=0.9),
             Word(word=" <everyone>", start=0.5, end=1.2, probability=0.8)]
    return Transcript(job_id="ES 2004a", duration_s=3725.0, segments=[
        TranscriptSegment(start=0.0, end=1.2, text="Hello <everyone>", words=words, speaker="Ana",
                          avg_logprob=-0.2),
        TranscriptSegment(start=2.0, end=12.0, text=LONG, speaker="Project Manager"),
        TranscriptSegment(start=3700.0, end=3701.5, text="A & B use L_C_D_ | done", speaker=""),
    ])


def summary() -> MeetingSummary:
    span = SummarySpan(start_s=2.0, end_s=12.0, segments=[1])
    return MeetingSummary(job_id="ES 2004a", key_points=[SummaryItem(text="A rubber case.", span=span)],
                          action_items=[ActionItem(text="Test with the focus group | soon",
                                                   owner="Project Manager", span=span)])


SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n")


def seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_timestamps_in_both_subtitle_styles():
    assert fm.timestamp(3725.5) == "01:02:05,500"
    assert fm.timestamp(0.0004, ".") == "00:00:00.000"
    assert fm.timestamp(-3) == "00:00:00,000"


def test_srt_cues_are_numbered_ordered_inside_their_segment_and_keep_every_word():
    t = transcript()
    srt = fm.to_srt(t)
    found = SRT_CUE.findall(srt)
    assert [int(n) for n, *_ in found] == list(range(1, len(found) + 1))
    assert len(found) == 4     # the long segment (133 characters) takes two cues
    for _, start, end, text in found:
        assert seconds(start) < seconds(end) and len(text) <= fm.MAX_CUE_CHARS + len("Project Manager: ")
    long_cues = [(seconds(s), seconds(e), text) for _, s, e, text in found if text.startswith("Project")]
    assert long_cues[0][0] == 2.0 and long_cues[-1][1] == 12.0
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(long_cues, long_cues[1:]))
    joined = " ".join(text.removeprefix("Project Manager: ") for *_, text in long_cues)
    assert joined == LONG
    assert "\nA & B use L_C_D_ | done\n" in srt    # no speaker, no prefix


def test_cues_follow_word_times_when_the_segment_has_them():
    seg = transcript().segments[0]
    assert list(fm.cues(seg, max_chars=6)) == [(0.0, 0.4, "Hello"), (0.5, 1.2, "<everyone>")]


def test_webvtt_has_its_header_voice_spans_and_escapes_markup():
    vtt = fm.to_webvtt(transcript())
    assert vtt.startswith("WEBVTT\n\n")
    assert "00:00:00.000 --> 00:00:01.200\n<v Ana>Hello &lt;everyone&gt;\n" in vtt
    assert "<v Project Manager>so the plan" in vtt
    assert "\nA &amp; B use L_C_D_ | done\n" in vtt


def test_rttm_has_ten_fields_per_segment_and_reads_back_as_the_speaker_turns():
    from operators.diarize.rttm import read_rttm
    text = fm.to_rttm(transcript())
    assert all(len(line.split()) == 10 for line in text.splitlines())
    turns = read_rttm(text)["ES_2004a"]
    assert [(t.start, round(t.end - t.start, 3), t.speaker) for t in turns] == [
        (0.0, 1.2, "Ana"), (2.0, 10.0, "Project_Manager"), (3700.0, 1.5, "unknown")]


def test_markdown_minutes_list_the_summary_with_times_and_escape_the_transcript():
    text = fm.to_markdown(transcript(), summary(), title="Kick-off")
    assert text.startswith("# Kick-off\n")
    assert "Duration: 1:02:05 · Speakers: Ana, Project Manager" in text
    assert "## Key points\n\n- A rubber case. (00:02–00:12)" in text
    assert "| Test with the focus group \\| soon | Project Manager | – | 00:02–00:12 |" in text
    assert "## Decisions" not in text            # an empty section is left out
    assert "L\\_C\\_D\\_ \\| done" in text and "**1:01:40 Speaker:**" in text
    assert "## Transcript" not in fm.to_markdown(transcript(), summary(), with_transcript=False)


def test_json_keeps_segments_words_speakers_times_and_confidences():
    t = transcript()
    data = fm.render("json", t)
    assert msgspec.json.decode(data, type=Transcript) == t
    seg = json.loads(data)["segments"][0]
    assert seg["words"][1]["probability"] == 0.8 and seg["avg_logprob"] == -0.2


def test_summary_json_validates_and_needs_a_summary():
    data = fm.render(fm.Format.SUMMARY, transcript(), summary())
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(data), summary_json_schema())
    with pytest.raises(ValueError):
        fm.render("summary", transcript())


def test_every_format_renders_and_has_a_file_type():
    for fmt in fm.Format:
        assert fm.render(fmt, transcript(), summary())
        assert fmt in fm.FORMATS
    with pytest.raises(ValueError):
        fm.render("docx", transcript())
