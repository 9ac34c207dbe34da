"""ASR: spans packed into windows, window times mapped back to the recording, the previous
window's text carried as prompt; and real Whisper on real speech."""
from __future__ import annotations

import itertools

import msgspec
import numpy as np
import pytest

from operators.asr import Asr, AsrConfig, plan_windows
from operators.asr.operator import PAD_S, Piece, Window
from operators.vad import Vad
from schemas import Span, SpeechSegments, TranscriptSegment, Word
from tests.audio_fixtures import (
    ASR,
    FLAC,
    WENET,
    Recorder,
    decoded,
    load_16k,
    manifest,
    needs_data,
    run,
    wer,
    write_wav,
)


def test_plan_windows():
    spans = [Span(1.0, 3.0), Span(3.3, 5.0), Span(10.0, 12.0), Span(40.0, 70.0)]
    w1, w2 = plan_windows(spans, duration=70.0, max_window_s=30.0)
    p, approx = PAD_S, pytest.approx
    middle = (40.0 - p + 70.0) / 2
    assert w1.pieces == [Piece(approx(1 - p), approx(5 + p), 0.0),      # a short pause stays in
                         Piece(approx(10 - p), approx(12 + p), approx(4 + 2 * p)),  # a long one is cut
                         Piece(approx(40 - p), approx(middle), approx(6 + 4 * p))]
    assert w2.pieces == [Piece(approx(middle), 70.0, 0.0)]  # over 30 s: split in two
    assert all(w.length <= 30.0 for w in (w1, w2))
    assert plan_windows([], 10.0, 30.0) == []


def test_window_times_map_back():
    window = Window([Piece(0.9, 5.1, 0.0), Piece(9.9, 12.1, 4.2)])
    assert [window.to_source(t) for t in (0.0, 4.2, 4.3, 6.4, 9.0)] == [
        0.9, 9.9, 10.0, 12.1, 12.1]


def test_config_is_checked():
    with pytest.raises(msgspec.ValidationError, match="unknown ASR model 'silero-vad'"):
        msgspec.convert({"model": "silero-vad"}, AsrConfig)
    with pytest.raises(msgspec.ValidationError, match="beam_size"):
        msgspec.convert({"beam_size": 0}, AsrConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"window": 10}, AsrConfig)


class FakeTranscriber:
    """Says which window it heard, one word per second of it."""

    model, multilingual = "fake", False

    def __init__(self):
        self.calls: list[tuple[float, str, str]] = []

    def transcribe(self, pcm, prompt, language):
        seconds = len(pcm) / 16_000
        self.calls.append((seconds, prompt, language))
        n = len(self.calls)
        words = [Word(word=f"w{n}.{i}", start=i + 0.1, end=i + 0.9) for i in range(int(seconds))]
        return [TranscriptSegment(start=0.0, end=seconds, text=f"window {n} " * 3, words=words)]


async def speech_for(rec: Recorder, tmp_path, seconds: float, spans: list[Span], **audio):
    audio_msg = await decoded(rec.blobs, write_wav(tmp_path / "a.wav", b"\1\0" * int(
        seconds * 16_000)))
    audio_msg = msgspec.structs.replace(audio_msg, **audio)
    return SpeechSegments(job_id="job", audio=audio_msg, segments=spans)


async def test_windows_prompts_and_times(tmp_path):
    rec, fake = Recorder("asr"), FakeTranscriber()
    msg = await speech_for(rec, tmp_path, 80.0, [Span(1.0, 20.0), Span(50.0, 75.0)],
                           prompt="Patchwire", language="de", warnings=["truncated: x"])
    [out] = await run(Asr("asr", engine=fake), msg, rec)
    assert [round(c[0], 1) for c in fake.calls] == [round(19 + 2 * PAD_S, 1), round(25 + 2 * PAD_S, 1)]
    assert fake.calls[0][1:] == ("Patchwire", "en")
    assert fake.calls[1][1] == "Patchwire window 1 window 1 window 1"
    first, second = out.segments
    p = PAD_S
    assert (first.start, first.end, second.start, second.end) == pytest.approx((1 - p, 20 + p, 50 - p, 75 + p))
    assert (second.words[0].start, second.words[0].end) == pytest.approx((50 - p + 0.1, 50 - p + 0.9))
    assert (out.model, out.language, out.duration_s) == ("fake", "en", 80.0)
    assert out.warnings == ["truncated: x", "model fake is English-only; language 'de' was "
                            "transcribed as English"]
    assert [p[2] for p in rec.progress] == ["transcribing"] * 2
    assert rec.progress[-1][:2] == (pytest.approx(44 + 4 * p), pytest.approx(44 + 4 * p))
    assert not list(rec.scratch.iterdir())


async def test_no_speech_no_engine(tmp_path):
    rec, fake = Recorder("asr"), FakeTranscriber()
    [out] = await run(Asr("asr", engine=fake), await speech_for(rec, tmp_path, 5.0, []), rec)
    assert (out.segments, fake.calls, out.text) == ([], [], "")


async def transcribe(path, config: AsrConfig | None = None):
    """The whole first topology, in process: decode, VAD, ASR."""
    rec = Recorder("asr")
    audio = await decoded(rec.blobs, path)
    vad, asr = Vad("vad"), Asr("asr", config)
    await vad.start()
    await asr.start()
    [speech] = await run(vad, audio, rec)
    [transcript] = await run(asr, speech, rec)
    return transcript


def check_words(transcript) -> None:
    words = [w for s in transcript.segments for w in s.words]
    assert words and all(0 <= w.start <= w.end <= transcript.duration_s for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))


@needs_data
@pytest.mark.models
async def test_tiny_en_on_librispeech():
    transcript = await transcribe(WENET)
    reference = manifest()["librispeech_wenet/1995-1837-0001.wav"]["text"]
    assert wer(reference, transcript.text) < 0.15, transcript.text
    assert transcript.model == "whisper-tiny.en"
    check_words(transcript)


@needs_data
@pytest.mark.models
@pytest.mark.slow
async def test_base_on_flac(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHWIRE_CACHE_DIR", str(tmp_path))  # joins the parts afresh
    transcript = await transcribe(FLAC, AsrConfig(model="whisper-base"))
    reference = manifest()["librispeech_lhotse/2412-153948-0000.flac"]["text"]
    assert wer(reference, transcript.text) < 0.15, transcript.text
    check_words(transcript)


@needs_data
@pytest.mark.models
@pytest.mark.slow
async def test_clips_with_pauses_land_in_place(tmp_path):
    """Five clips with 3 s pauses: several windows, and every clip's words in its own place."""
    clips = ["librispeech_wenet/1995-1837-0001.wav", "ljspeech/LJ001-0001.wav",
             "librispeech_lhotse/2412-153948-0000.flac", "ljspeech/LJ001-0003.wav",
             "ljspeech/LJ001-0005.wav"]
    pieces, places, at = [], [], 0.0
    for clip in clips:
        audio = load_16k(ASR / clip)
        pieces += [audio, np.zeros(3 * 16_000, np.float32)]
        places.append((at, at + len(audio) / 16_000))
        at += len(audio) / 16_000 + 3.0
    pcm = (np.concatenate(pieces) * 32767).astype("<i2").tobytes()
    transcript = await transcribe(write_wav(tmp_path / "joined.wav", pcm))
    check_words(transcript)
    rows = manifest()
    for clip, (start, end) in zip(clips, places, strict=True):
        heard = " ".join(w.word for s in transcript.segments for w in s.words
                         if start - 0.5 <= w.start and w.end <= end + 0.5)
        assert wer(rows[clip]["text"], heard) < 0.2, (clip, heard)
