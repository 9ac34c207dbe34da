"""The meeting transcriber's own stages, driven without a bus: words to speakers (align),
cleanup, diarize on real speech, summarize's edge cases and archive's filing."""
from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from operators.base import Reject
from operators.diarize.align import attribute
from operators.diarize.operator import Diarize
from operators.diarize.rttm import Turn
from operators.meeting.archive import Archive, document_id, minutes_name
from operators.meeting.cleanup import clean, domain_terms, drop_disfluencies, respell
from operators.meeting.summarize import Summarize
from schemas import (DecodedAudio, MeetingInfo, MeetingMinutes, ObjectRef, Span, Transcript,
                     TranscriptSegment, Word)
from tests.audio_fixtures import Recorder, decoded, needs_data, run


def words(text: str, start: float = 0.0, step: float = 0.5) -> list[Word]:
    return [Word(word=w, start=start + i * step, end=start + i * step + 0.4, probability=0.9)
            for i, w in enumerate(text.split())]


def segment(text: str, start: float = 0.0, step: float = 0.5) -> TranscriptSegment:
    ws = words(text, start, step)
    return TranscriptSegment(start=ws[0].start, end=ws[-1].end, text=text, words=ws)


def transcript(*segments: TranscriptSegment, meeting: MeetingInfo | None = None) -> Transcript:
    audio = DecodedAudio(job_id="j1", pcm=ObjectRef(bucket="b", name="j1/pcm"),
                         meeting=meeting, source=ObjectRef(bucket="b", name="j1/in.wav"))
    return Transcript(job_id="j1", segments=list(segments), audio=audio, duration_s=60.0)


# --- align ------------------------------------------------------------------------------

def test_a_segment_spoken_by_two_is_split_where_the_speaker_changes():
    seg = segment("we need the report by friday sure I can do that", 0.0, 0.5)
    turns = [Turn(0.0, 2.9, "SPEAKER_00"), Turn(2.9, 6.0, "SPEAKER_01")]
    out = attribute([seg], turns, {"SPEAKER_01": "Ben"})
    assert [s.speaker for s in out] == ["SPEAKER_00", "Ben"]
    assert out[0].text == "we need the report by friday"
    assert out[1].text == "sure I can do that" and out[1].start == pytest.approx(3.0)
    assert sum(len(s.words) for s in out) == len(seg.words)


def test_a_word_outside_every_turn_takes_the_nearest_or_the_previous_speaker():
    seg = segment("hello there friend", 10.0, 1.0)          # 10.0, 11.0, 12.0
    turns = [Turn(10.0, 10.5, "A"), Turn(12.3, 13.0, "B")]  # 11.0-11.4 is in neither
    out = attribute([seg], turns)
    assert [(s.speaker, s.text) for s in out] == [("A", "hello there"), ("B", "friend")]
    far = attribute([segment("alone", 100.0)], turns)
    assert far[0].speaker == ""                            # nothing near and nothing before


def test_without_turns_the_transcript_is_unchanged_but_for_empty_speakers():
    seg = segment("just one voice")
    assert attribute([seg], []) == [seg]


# --- cleanup ----------------------------------------------------------------------------

def test_domain_terms_come_from_names_and_the_agendas_proper_nouns():
    info = MeetingInfo(participants=["Ana Lopez", "Tom"],
                       agenda="1. Budget for Kubernetes migration\n2. The API review with ACME")
    terms = domain_terms(info)
    assert {"Ana", "Lopez", "Tom", "Kubernetes", "API", "ACME"} <= set(terms)
    assert "The" not in terms and "Budget" not in terms


def test_respelling_recases_exact_terms_and_fixes_near_misses_of_long_ones_only():
    terms = {t.lower(): t for t in ["Ana", "Kubernetes", "API"]}
    assert respell("ana,", terms, 6) == "Ana,"
    assert respell("api", terms, 6) == "API"
    assert respell("Kubernetis.", terms, 6) == "Kubernetes."
    assert respell("Anna", terms, 6) == "Anna"          # too short to be respelled
    assert respell("kubernetis", terms, 6) == "kubernetis"   # lower case: an ordinary word


def test_disfluencies_go_from_words_and_text_on_request_only():
    ws = words("um I I think uh we should go")
    assert [w.word for w in drop_disfluencies(ws)] == ["I", "think", "we", "should", "go"]
    t = transcript(segment("um I I think uh we should go"), segment("uh um", 10.0))
    kept = clean(t, MeetingInfo())
    assert kept.segments == t.segments
    cleaned = clean(t, MeetingInfo(remove_disfluencies=True))
    assert [s.text for s in cleaned.segments] == ["I think we should go"]   # "uh um" is gone


def test_redaction_masks_personal_data_before_anything_is_stored():
    t = transcript(segment("Ana said mail ana@example.com or call 555 123 4567 today"))
    info = MeetingInfo(participants=["Ana"], redact=["email", "phone"], redact_names=True)
    out = clean(t, info)
    text = out.segments[0].text
    assert "ana@example.com" not in text and "4567" not in text and "Ana" not in text
    assert all("example" not in w.word for w in out.segments[0].words)
    assert any("redacted" in w for w in out.warnings)


def test_an_unknown_redaction_kind_is_rejected_with_the_known_ones():
    with pytest.raises(Reject, match="known: email"):
        clean(transcript(segment("hello")), MeetingInfo(redact=["passport"]))


# --- diarize ----------------------------------------------------------------------------

@needs_data
@pytest.mark.models
async def test_diarize_attributes_real_meeting_speech_to_several_speakers(shared_data):
    rec = Recorder("diarize")
    audio = await decoded(rec.blobs, shared_data / "diarization/ami_mixture_es2004a/mixture.wav")
    segs = [segment(" ".join(["word"] * 20), start, 0.5) for start in (0.0, 30.0, 45.0)]
    t = Transcript(job_id="job", segments=segs, audio=audio, speech=[Span(0.0, 60.0)],
                   duration_s=audio.duration_s)
    [out] = await run(Diarize("diarize"), t, rec)
    assert len({s.speaker for s in out.segments}) >= 2
    assert all(s.speaker.startswith("SPEAKER_") for s in out.segments)
    assert rec.progress and rec.progress[-1][0] == pytest.approx(60.0, abs=0.1)


async def test_diarize_without_the_audio_is_bad_input():
    with pytest.raises(Reject, match="pass_audio"):
        await run(Diarize("diarize", engine=object()), Transcript(job_id="j"), Recorder("d"))


# --- summarize and archive --------------------------------------------------------------

@pytest.mark.parametrize("info, t, why", [
    (MeetingInfo(summarize=False), transcript(segment("hello")), "summarize=false"),
    (MeetingInfo(), transcript(), "nobody spoke"),
])
async def test_no_summary_is_filed_with_the_reason(info, t, why):
    t = msgspec.structs.replace(t, audio=msgspec.structs.replace(t.audio, meeting=info))
    [out] = await run(Summarize("summarize", engine=object()), t, Recorder("summarize"))
    assert isinstance(out, MeetingMinutes) and out.summary is None
    assert why in out.warnings[0] and out.audio == t.audio.pcm
    assert bool(out.document_id) == bool(t.segments)     # nothing to search: not indexed


async def test_archive_files_the_minutes_and_hands_the_transcript_to_ingest(tmp_path):
    rec = Recorder("archive")
    info = MeetingInfo(title="Budget / Q3 review", acl=["group:finance"], tenant="acme")
    t = transcript(msgspec.structs.replace(segment("we keep the budget"), speaker="Ana"),
                   meeting=info)
    minutes = MeetingMinutes(job_id="j1", transcript=t, info=info, audio=t.audio.pcm,
                             document_id=document_id("j1"))
    [job] = await run(Archive("archive"), minutes, rec)
    assert job.key.collection == "meetings" and job.key.tenant == "acme"
    assert job.key.doc_id == document_id("j1") and job.acl == ["group:finance"]
    assert job.filename == "Budget Q3 review.json"
    body = json.loads(Path(await rec.blobs.get_file(job.source, tmp_path / "t.json")).read_text())
    assert body["kind"] == "Transcript" and body["audio"] is None
    assert body["segments"][0]["speaker"] == "Ana"
    filed = ObjectRef(bucket="mem", name=minutes_name("j1"))
    stored = msgspec.json.decode((await rec.blobs.get_file(filed, tmp_path / "m.json")).read_bytes(),
                                 type=MeetingMinutes)
    assert stored.document_id == document_id("j1")


async def test_archive_deletes_the_recording_when_asked_and_skips_indexing(tmp_path):
    rec = Recorder("archive")
    pcm, src = tmp_path / "pcm", tmp_path / "src"
    pcm.write_bytes(b"\0" * 32)
    src.write_bytes(b"RIFF")
    pcm_ref = await rec.blobs.put_file("j1/pcm", pcm)
    src_ref = await rec.blobs.put_file("j1/in.wav", src)
    info = MeetingInfo(keep_audio=False, index=False)
    t = transcript(segment("hello"), meeting=info)
    out = await run(Archive("archive"), MeetingMinutes(job_id="j1", transcript=t, info=info,
                                                       audio=pcm_ref), rec)
    assert out == []
    for ref in (pcm_ref, src_ref):
        with pytest.raises(FileNotFoundError):
            await rec.blobs.get_file(ref, tmp_path / "x")
    stored = msgspec.json.decode(
        (await rec.blobs.get_file(ObjectRef(bucket="mem", name=minutes_name("j1")),
                                  tmp_path / "m.json")).read_bytes(), type=MeetingMinutes)
    assert stored.audio is None and stored.document_id == ""
