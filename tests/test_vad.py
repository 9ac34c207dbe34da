"""VAD: the streaming segmenter matches Silero's own get_speech_timestamps, skips digital
silence without changing the answer, and the operator reads the PCM a block at a time."""
from __future__ import annotations

import ast
import importlib.metadata
import random
import sys

import msgspec
import numpy as np
import pytest

from operators.base import Reject
from operators.vad import Vad, VadConfig, silero
from operators.vad.silero import SileroVad, _Padder, _Params, _SpanTracker
from schemas import Span
from tests.audio_fixtures import (
    FLAC,
    WENET,
    Recorder,
    decoded,
    load_16k,
    needs_data,
    run,
    write_wav,
)


def reference_timestamps():
    """get_speech_timestamps_from_probs from the installed silero-vad, lifted out of its module
    (which imports torch) so our port is checked against the real thing, not a copy of it."""
    dist = importlib.metadata.distribution("silero-vad")
    tree = ast.parse(dist.locate_file("silero_vad/utils_vad.py").read_text())
    [fn] = [n for n in tree.body if getattr(n, "name", "") == "get_speech_timestamps_from_probs"]
    namespace = {"List": list}
    exec(compile(ast.Module([fn], []), "utils_vad.py", "exec"), namespace)
    return namespace["get_speech_timestamps_from_probs"]


def ported(probs: list[float], config: VadConfig, total: int) -> list[tuple[int, int]]:
    params = _Params.of(config)
    tracker, padder = _SpanTracker(params), _Padder(params.pad)
    for p in probs:
        tracker.push(p)
        for span in tracker.take():
            padder.add(*span)
    for span in tracker.finish(total):
        padder.add(*span)
    padder.finish(total)
    return padder.take()


def random_probs(rng: random.Random, n: int) -> list[float]:
    """Runs of speech-like and silence-like levels with noise: every branch gets exercised."""
    probs: list[float] = []
    while len(probs) < n:
        level = rng.random()
        probs += [min(1.0, max(0.0, rng.gauss(level, 0.15))) for _ in range(rng.randint(1, 80))]
    return probs[:n]


def test_segmenter_matches_silero():
    reference, rng = reference_timestamps(), random.Random(7)
    for _ in range(400):
        n = rng.randint(1, 2500)
        config = VadConfig(threshold=rng.choice([0.3, 0.5, 0.7]),
                           min_speech_ms=rng.choice([0, 250, 500]),
                           min_silence_ms=rng.choice([0, 100, 400]),
                           speech_pad_ms=rng.choice([0, 30, 200]),
                           max_segment_s=rng.choice([2.0, 5.0, 30.0]))
        probs, total = random_probs(rng, n), n * 512 - rng.randint(0, 511)
        expected = reference(
            probs, threshold=config.threshold, min_speech_duration_ms=config.min_speech_ms,
            min_silence_duration_ms=config.min_silence_ms, speech_pad_ms=config.speech_pad_ms,
            max_speech_duration_s=config.max_segment_s, audio_length_samples=total)
        assert ported(probs, config, total) == [(s["start"], s["end"]) for s in expected]


@pytest.fixture(scope="module")
def engine() -> SileroVad:
    return SileroVad()


def segment(engine, audio: np.ndarray, block: int = 16_000 * 7 + 13):
    stream = engine.stream()
    spans = []
    for i in range(0, len(audio), block):
        spans += stream.feed(audio[i:i + block])
    return spans + stream.finish(), stream.model_calls


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, np.ndarray]:
    if not WENET.exists():
        pytest.skip("shared data not found")
    return load_16k(WENET), load_16k(FLAC)


@pytest.mark.models
def test_full_model_matches_silero(engine, speech, monkeypatch):
    """Probabilities from every window, segmented by Silero's code, give our spans."""
    monkeypatch.setattr(silero, "SILENCE_RMS", 0.0)
    audio = np.concatenate(speech)
    stream, probs = engine.stream(), []
    for i in range(0, len(audio), 512):
        probs.append(stream._infer(np.pad(audio[i:i + 512], (0, 512 - len(audio[i:i + 512])))))
    expected = reference_timestamps()(probs, audio_length_samples=len(audio),
                                      max_speech_duration_s=30.0)
    spans, _ = segment(engine, audio)
    assert spans == [Span(round(s["start"] / 16_000, 3), round(s["end"] / 16_000, 3))
                     for s in expected]
    assert 4 <= len(spans) <= 12 and spans[0].start < 0.3 and spans[-1].end > 19.0


@pytest.mark.models
def test_blocks_do_not_matter(engine, speech):
    audio = speech[0]
    assert segment(engine, audio, 16_000 * 60)[0] == segment(engine, audio, 1000)[0]


@pytest.mark.models
@pytest.mark.parametrize("gap_s, exact", [(0.5, True), (0.9, True), (10.0, False)])
def test_digital_silence_skips_the_model(engine, speech, monkeypatch, gap_s, exact):
    """Short dropouts are replayed exactly; long ones are skipped, at the cost of a few ms."""
    audio = np.concatenate([speech[0], np.zeros(int(gap_s * 16_000), np.float32), speech[1]])
    skipped, calls = segment(engine, audio)
    monkeypatch.setattr(silero, "SILENCE_RMS", 0.0)
    full, full_calls = segment(engine, audio)
    if exact:
        assert (skipped, calls) == (full, full_calls)
    else:
        assert calls < full_calls - 200
        assert len(skipped) == len(full)
        assert all(abs(a.start - b.start) < 0.05 and abs(a.end - b.end) < 0.05
                   for a, b in zip(skipped, full, strict=True))


@pytest.mark.models
def test_silence_and_noise(engine):
    spans, calls = segment(engine, np.zeros(16_000 * 60, np.float32))
    assert (spans, calls) == ([], 0)
    noise = np.random.default_rng(0).normal(0, 0.01, 16_000 * 10).astype(np.float32)
    assert segment(engine, noise)[0] == []


@pytest.mark.models
def test_long_speech_is_cut(speech):
    engine = SileroVad(VadConfig(max_segment_s=4.0))
    spans, _ = segment(engine, np.concatenate(speech))
    assert max(s.end - s.start for s in spans) <= 4.0 + 0.001
    assert len(spans) >= 6


@needs_data
@pytest.mark.models
async def test_operator_on_decoded_audio():
    rec = Recorder("vad")
    audio = await decoded(rec.blobs, WENET)
    op = Vad("vad")
    await op.start()
    [out] = await run(op, audio, rec)
    assert out.job_id == "job" and out.audio == audio
    assert 0 < out.segments[0].start < 0.3 and out.segments[-1].end <= audio.duration_s
    assert out.speech_s == pytest.approx(sum(s.end - s.start for s in out.segments), abs=1e-3)
    assert 6.0 < out.speech_s < audio.duration_s
    assert rec.progress == [(pytest.approx(8.73), pytest.approx(8.73), "voice activity")]
    assert not list(rec.scratch.iterdir())
    assert "torch" not in sys.modules and "silero_vad" not in sys.modules


class BlockCounter:
    """A fake detector: one span per block it is fed, so the operator's loop is visible."""

    sample_rate = 16_000

    def __init__(self):
        self.blocks: list[int] = []

    def stream(self):
        return self

    def feed(self, pcm):
        self.blocks.append(len(pcm))
        start = sum(self.blocks[:-1]) / 16_000
        return [Span(start, start + 1.0)]

    def finish(self):
        return [Span(999.0, 1000.0)]


async def test_operator_reads_blocks_and_reports(tmp_path):
    rec = Recorder("vad")
    pcm = np.zeros(16_000 * 660, "<i2").tobytes()   # 11 minutes
    audio = await decoded(rec.blobs, write_wav(tmp_path / "quiet.wav", pcm))
    counter = BlockCounter()
    [out] = await run(Vad("vad", engine=counter), audio, rec)
    assert counter.blocks == [16_000 * 60] * 11
    assert len(out.segments) == 12 and out.speech_s == 12.0
    assert [p[0] for p in rec.progress] == [300.0, 600.0, 660.0]


async def test_operator_rejects_other_rates(tmp_path):
    rec = Recorder("vad")
    audio = await decoded(rec.blobs, write_wav(tmp_path / "a.wav", b"\0\0" * 16_000))
    audio = msgspec.structs.replace(audio, sample_rate=8_000)
    with pytest.raises(Reject, match="16000 Hz"):
        await run(Vad("vad", engine=BlockCounter()), audio, rec)
