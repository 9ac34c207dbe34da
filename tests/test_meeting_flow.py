"""The meeting transcriber end to end over a real nats-server: a 4-speaker AMI minute with its
minutes and the meeting searchable, and every bad input of the issue through the whole
pipeline. Whisper tiny.en and SmolLM2 keep it fast: tests assert what the pipeline
guarantees (speakers, spans, schema, exactly one result), not the quality of the prose."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from operators.audio_io import load_16k
from operators.store.factory import embedded_store
from schemas import FailureCategory, MeetingInfo
from schemas.documents import Principal
from schemas.meeting import summary_json_schema
from tests.audio_fixtures import DATA, encode, needs_data, wav_header
from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.jobs import JobFailed
from topology.meeting import meeting_info, minutes_json, transcribe_meeting

pytestmark = [needs_data, pytest.mark.models, pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")]
MIXTURE = "diarization/ami_mixture_es2004a/mixture.wav"
RATE = 16_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def meetings(nats_server, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "store.sqlite"
    settings = [f"{op}.store={store}" for op in ("chunk", "index")] + [
        "asr.model=whisper-tiny.en", "summarize.model=smollm2-135m",
        "summarize.context_tokens=2048", "summarize.section_tokens=600",
        "summarize.max_tokens=300"]
    topo = topo_spec.override(topo_spec.load(ROOT / "topology/meeting_transcriber.yaml"), settings)
    dep = await Deployment.open(topo, nats_server.url, "tmeeting")
    await dep.start_operators()
    yield dep, store
    await dep.close()


async def run(dep, path: Path, info: MeetingInfo | None = None):
    info = info or MeetingInfo(summarize=False, index=False)
    return await transcribe_meeting(dep.bus, dep.blobs, path, info, timeout=600)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def wav(path: Path, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    data = pcm16(samples)
    path.write_bytes(wav_header(rate, len(data), channels=channels) + data)
    return path


@pytest.fixture(scope="module")
def mixture() -> np.ndarray:
    return load_16k(DATA / MIXTURE)


async def test_a_meeting_gets_speakers_minutes_and_becomes_searchable(meetings, shared_data):
    jsonschema = pytest.importorskip("jsonschema")
    dep, store_path = meetings
    info = meeting_info(title="Remote control design", participants="Ana,Tom",
                        acl="group:design")
    minutes, indexed = await run(dep, shared_data / MIXTURE, info)
    segments = minutes.transcript.segments
    assert len({s.speaker for s in segments}) >= 2 and all(s.speaker for s in segments)
    assert all(s.words and s.start <= s.words[0].start for s in segments)
    assert "menu" in minutes.transcript.text.lower()
    assert minutes.summary is not None and minutes.summary.model == "smollm2-135m"
    published = minutes_json(minutes)
    jsonschema.validate(__import__("json").loads(published)["summary"], summary_json_schema())
    for item in minutes.summary.key_points + minutes.summary.decisions:
        assert all(0 <= i < len(segments) for i in item.span.segments)
    assert indexed is not None and indexed.key.collection == "meetings"
    store = embedded_store(type("C", (), {"store": str(store_path)})())
    await store.open("", 0)
    try:
        mine = await store.documents(Principal(user="ana", groups=["group:design"]), "meetings")
        theirs = await store.documents(Principal(user="eve"), "meetings")
    finally:
        await store.close()
    assert [d.key.doc_id for d in mine] == [minutes.document_id]
    assert mine[0].title == "Remote control design" and theirs == []


@pytest.mark.parametrize("make, expect", [
    (lambda d, m: wav(d / "silence.wav", np.zeros(10 * RATE)), "nobody spoke"),
    (lambda d, m: wav(d / "music.wav", chords(10.0)), "music"),
    (lambda d, m: wav(d / "two-seconds.wav", m[30 * RATE:32 * RATE]), "short"),
])
async def test_silence_music_and_a_two_second_file_get_a_clear_result(meetings, tmp_path,
                                                                       mixture, make, expect):
    dep, _ = meetings
    minutes, _ = await run(dep, make(tmp_path, mixture), MeetingInfo())
    text = minutes.transcript.text
    if expect == "short":
        assert text and minutes.transcript.duration_s == pytest.approx(2.0, abs=0.05)
        assert len({s.speaker for s in minutes.transcript.segments}) == 1
    else:    # no speech: no invented words, no summary, not indexed, and the reason
        assert text == "" and minutes.summary is None and minutes.document_id == ""
        assert any("nobody spoke" in w for w in minutes.warnings)


def chords(seconds: float) -> np.ndarray:
    """Piano-like chords changing twice a second: tonal, rhythmic, no speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng, out = random.Random(7), np.zeros_like(t)
    for start in np.arange(0, seconds, 0.5):
        root = rng.choice([220.0, 261.6, 329.6, 392.0])
        mask = (t >= start) & (t < start + 0.5)
        envelope = np.exp(-3 * (t[mask] - start))
        for ratio in (1.0, 1.26, 1.5, 2.0):
            out[mask] += 0.08 * envelope * np.sin(2 * np.pi * root * ratio * t[mask])
    return out


async def test_telephone_stereo_and_video_recordings_are_transcribed(meetings, tmp_path, mixture):
    dep, _ = meetings
    part = mixture[29 * RATE:53 * RATE]                   # one long turn and the reply
    narrow = wav(tmp_path / "phone.wav", part.reshape(-1, 2).mean(axis=1), rate=8_000)
    stereo = np.stack([part, np.zeros_like(part)], axis=1).reshape(-1)
    one_side = wav(tmp_path / "stereo.wav", stereo, channels=2)
    video = encode(wav(tmp_path / "talk.wav", part), tmp_path / "talk.mp4", "aac", video=True)
    for path in (narrow, one_side, video):
        minutes, _ = await run(dep, path)
        assert "menu" in minutes.transcript.text.lower(), path.name
        assert minutes.transcript.duration_s == pytest.approx(24.0, abs=0.1), path.name


@pytest.mark.parametrize("data, words", [
    (b"\x00\x00\x00\x18ftypmp42" + bytes(random.Random(3).randrange(256) for _ in range(4000)),
     "not an audio file"),
    (b"", "empty file"),
])
async def test_a_corrupt_container_fails_once_with_the_reason(meetings, tmp_path, data, words):
    dep, _ = meetings
    path = tmp_path / "broken.m4a"
    path.write_bytes(data)
    with pytest.raises(JobFailed) as err:
        await run(dep, path)
    failure = err.value.failure
    assert failure.operator == "decode" and failure.category is FailureCategory.BAD_INPUT
    assert words in failure.reason and failure.attempt == 1
