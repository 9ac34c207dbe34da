"""The meeting summary: sections, the map schema, grounding and merging on hand-made
transcripts (no LLM), and one map-reduce run with the real SmolLM2-135M."""
from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from operators.meeting import summary as sm
from operators.meeting.summary import Cited, Draft
from schemas import Transcript, TranscriptSegment
from schemas.meeting import MeetingSummary, summary_json_schema

LINES = [
    ("Ana", "Welcome everyone, today we choose the remote control design."),
    ("Ben", "Yeah."),
    ("Ben", "I think the case should be made of rubber, it is cheaper."),
    ("Ana", "How much cheaper is rubber than plastic?"),
    ("Ben", "About two euros per unit."),
    ("Cleo", "Mm-hmm."),
    ("Cleo", "Then we agree on a rubber case."),
    ("Ana", "Ben, please send the supplier quotes by Friday."),
    ("Ben", "I will send the supplier quotes."),
    ("Cleo", "Who pays for the new logo is still open."),
]


def transcript(lines=LINES) -> Transcript:
    segs = [TranscriptSegment(start=4.0 * i, end=4.0 * i + 3.5, speaker=who, text=text)
            for i, (who, text) in enumerate(lines)]
    return Transcript(job_id="j1", segments=segs, duration_s=4.0 * len(lines))


def words(text: str) -> int:
    return len(text.split())


def test_sections_skip_fillers_and_respect_the_budget():
    t = transcript()
    parts = sm.sections(t, 25, words)
    assert parts == [[0, 2], [3, 4, 6], [7, 8], [9]]      # lines 1 and 5 are fillers
    for p in parts:
        assert sum(words(sm.line(i, t.segments[i])) for i in p) <= 25


def test_sections_cut_between_speaker_turns_not_inside_them():
    t = transcript([("Ana", "one two three"), ("Ana", "four five six"),
                    ("Ben", "seven eight nine"), ("Ben", "ten eleven twelve")])
    # Three lines (15 words) would fit; the cut still falls where Ben takes over.
    assert sm.sections(t, 15, words) == [[0, 1], [2, 3]]


def test_a_turn_longer_than_a_section_is_cut_between_its_segments():
    t = transcript([("Ana", "one two three four five six")] * 4)
    parts = sm.sections(t, 20, words)
    assert [len(p) for p in parts] == [2, 2]


def test_line_numbers_the_segment_and_names_its_speaker():
    assert sm.line(7, transcript().segments[7]) == \
        "[7] Ana: Ben, please send the supplier quotes by Friday."


def test_section_schema_only_lets_items_cite_lines_of_the_section():
    schema = sm.section_schema([2, 3, 4])
    cite = schema["properties"]["decisions"]["items"]["properties"]["segments"]
    assert cite["items"]["enum"] == [2, 3, 4] and cite["minItems"] == 1
    assert schema["properties"]["key_points"]["minItems"] == 1
    assert list(schema["properties"]) == list(sm.CATEGORIES)


def test_grounding_keeps_supported_items_and_removes_invented_ones():
    draft = Draft(key_points=[Cited(text="The case should be made of rubber because it is cheaper.",
                                    segments=[2]),
                              Cited(text="The team will launch in Japan next spring.", segments=[2])])
    out = sm.ground(transcript(), draft, min_support=0.5)
    assert [c.text for c in out.draft.key_points] == [draft.key_points[0].text]
    assert len(out.removed) == 1 and out.removed[0].startswith("The team will launch in Japan")


def test_a_number_the_cited_lines_do_not_say_fails_support():
    draft = Draft(key_points=[Cited(text="Rubber is five euros cheaper per unit.", segments=[4]),
                              Cited(text="Rubber is 5 euros cheaper per unit.", segments=[4])])
    out = sm.ground(transcript(), draft, min_support=0.5)
    assert [c.text for c in out.draft.key_points] == ["Rubber is five euros cheaper per unit."]


def test_citations_are_clamped_to_real_segments_and_an_item_citing_none_goes():
    draft = Draft(decisions=[Cited(text="They agree on a rubber case.", segments=[6, 99, -1]),
                             Cited(text="They agree on a rubber case.", segments=[42])])
    out = sm.ground(transcript(), draft, min_support=0.5)
    assert [c.segments for c in out.draft.decisions] == [[6]]
    assert "cites no segment" in out.removed[0]


def test_an_item_without_content_words_goes():
    out = sm.ground(transcript(), Draft(key_points=[Cited(text="It is what it is.", segments=[2])]),
                    min_support=0.5)
    assert out.draft.key_points == [] and "says nothing" in out.removed[0]


def test_a_citation_next_to_the_supporting_line_is_widened_to_it():
    # The answer (line 4) cited as the question (line 3): within reach, so line 4 is added.
    draft = Draft(key_points=[Cited(text="Rubber is about two euros per unit cheaper.", segments=[3])])
    out = sm.ground(transcript(), draft, min_support=0.6, reach=2)
    assert out.draft.key_points[0].segments == [3, 4] and out.widened == 1
    assert sm.ground(transcript(), draft, min_support=0.6, reach=0).removed


def test_owner_and_due_are_kept_only_when_the_cited_lines_say_them():
    draft = Draft(action_items=[
        Cited(text="Ben will send the supplier quotes.", owner="Ben", due="Friday", segments=[7]),
        Cited(text="Ben will send the supplier quotes.", owner="Cleo", due="Monday", segments=[8])])
    kept = sm.ground(transcript(), draft, min_support=0.5).draft.action_items
    assert [(c.owner, c.due) for c in kept] == [("Ben", "Friday"), ("", "")]


def test_merge_joins_near_duplicates_across_sections_and_keeps_their_citations():
    first = Draft(key_points=[Cited(text="The case should be made of rubber.", segments=[2])])
    second = Draft(key_points=[Cited(text="The case should be rubber.", segments=[6]),
                               Cited(text="The logo payment is open.", segments=[9])])
    merged = sm.merge([first, second])
    assert [(c.text, c.segments) for c in merged.key_points] == [
        ("The case should be made of rubber.", [2, 6]), ("The logo payment is open.", [9])]


def test_a_key_point_repeating_a_decision_joins_the_decision():
    merged = sm.merge([Draft(key_points=[Cited(text="They agree on a rubber case.", segments=[2])]),
                       Draft(decisions=[Cited(text="We agree on a rubber case.", segments=[6])])])
    assert merged.key_points == []
    assert [(c.text, c.segments) for c in merged.decisions] == [("We agree on a rubber case.", [2, 6])]


def test_the_summary_carries_spans_and_validates_against_the_published_schema():
    draft = Draft(decisions=[Cited(text="They agree on a rubber case.", segments=[6, 2])],
                  action_items=[Cited(text="Ben sends the supplier quotes.", owner="Ben",
                                      due="Friday", segments=[7])])
    summary = sm.to_summary(transcript(), draft, model="none")
    span = summary.decisions[0].span
    assert (span.start_s, span.end_s, span.segments) == (8.0, 27.5, [2, 6])
    data = msgspec.json.encode(summary)
    assert msgspec.json.decode(data, type=MeetingSummary) == summary
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(summary_json_schema())
    assert validator.is_valid(json.loads(data))
    broken = json.loads(data)
    broken["decisions"][0]["span"]["segments"] = []
    assert not validator.is_valid(broken)      # the schema says what it promises


class Picker:
    """An engine that always answers the same JSON (the select step's grammar would allow it)."""

    model, context_tokens = "picker", 4096

    def __init__(self, text: str):
        self.text, self.prompts = text, []

    async def stream(self, prompt):
        from operators.generate.engine import Delta
        self.prompts.append(prompt)
        yield Delta(text=self.text, finish_reason="stop")


def test_select_keeps_only_picked_items_in_their_order_and_never_more_than_the_cap():
    items = [Cited(text=f"point {n}", segments=[n]) for n in range(5)]
    engine = Picker("[3, 1, 3]")
    kept = asyncio.run(sm.select(engine, "key_points", items, 2, sm.SummaryConfig()))
    assert [c.text for c in kept] == ["point 1", "point 3"]
    assert engine.prompts[0].json_schema["items"]["enum"] == [0, 1, 2, 3, 4]
    assert asyncio.run(sm.select(engine, "key_points", items[:2], 2, sm.SummaryConfig())) == items[:2]


@pytest.mark.models
def test_real_model_summary_validates_and_cites_real_segments():
    from operators.generate.shared import shared_llama
    from tests.llm_fixtures import config

    async def run() -> MeetingSummary:
        engine = shared_llama(config("smollm2-135m", threads=1, context_tokens=2048))
        try:
            cfg = sm.SummaryConfig(section_tokens=60, max_tokens=300)   # several map steps
            return await sm.summarize(transcript(), engine, cfg)
        finally:
            await engine.close()

    summary = asyncio.run(run())
    assert summary.sections >= 2 and summary.model
    data = msgspec.json.encode(summary)
    assert msgspec.json.decode(data, type=MeetingSummary) == summary
    t = transcript()
    items = [*summary.key_points, *summary.decisions, *summary.action_items,
             *summary.open_questions]
    assert len(items) + len(summary.removed) >= summary.sections   # a key point per map step
    for item in items:
        assert item.span.segments and all(0 <= i < len(t.segments) for i in item.span.segments)
        cited = " ".join(t.segments[i].text for i in item.span.segments)
        assert sm.support(item.text, f"{cited} {' '.join(t.segments[i].speaker for i in item.span.segments)}") >= 0.5
