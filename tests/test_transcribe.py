"""Product test: the transcribe topology end to end over a real nats-server, on real speech,
and every bad input of the foundation issue through the whole pipeline."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import msgspec
import pytest
import pytest_asyncio

from evals.wer import wer
from schemas import Failure, FailureCategory, Headers
from tests.audio_fixtures import FLAC, WENET, manifest, needs_data, tone, truncated, write_wav
from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.cli import TRANSCRIBE_YAML
from topology.jobs import JobFailed, transcribe_file

pytestmark = [needs_data, pytest.mark.models]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def deployment(nats_server):
    dep = await Deployment.open(topo_spec.load(TRANSCRIBE_YAML), nats_server.url, "tproduct")
    await dep.start_operators()
    yield dep
    await dep.close()


async def transcribe(dep, path):
    return await transcribe_file(dep.bus, dep.blobs, path, timeout=120)


async def test_two_clips_within_the_wer_bound(deployment):
    rows = manifest()
    refs, hyps = [], []
    for clip in (WENET, FLAC):
        transcript = await transcribe(deployment, clip)
        assert transcript.segments and transcript.model == "whisper-tiny.en"
        words = [w for s in transcript.segments for w in s.words]
        assert all(a.start <= b.start for a, b in zip(words, words[1:]))  # timestamps in order
        assert words[-1].end <= transcript.duration_s + 0.05
        refs.append(rows[str(clip.relative_to(clip.parents[1]))]["text"])
        hyps.append(transcript.text)
    assert wer(refs, hyps).wer <= 0.12, hyps


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, words", [
    (lambda d: _write(d / "empty.wav", b""), "empty file"),
    (lambda d: _write(d / "notes.wav", b"meeting notes, not audio\n" * 40), "not an audio file"),
    (lambda d: write_wav(d / "zero.wav", tone(1.0), rate=0), "sample rate"),
    (lambda d: write_wav(d / "one.wav", tone(1.0), rate=1), "sample rate"),
])
async def test_bad_input_fails_clearly_and_once(deployment, tmp_path, make, words):
    with pytest.raises(JobFailed) as err:
        await transcribe(deployment, make(tmp_path))
    assert err.value.failure.category is FailureCategory.BAD_INPUT
    assert err.value.failure.operator == "decode" and words in err.value.failure.reason
    assert err.value.failure.attempt == 1  # bad input is never retried


async def test_lying_and_truncated_files_keep_what_they_hold(deployment, tmp_path):
    huge = write_wav(tmp_path / "huge.wav", WENET.read_bytes()[44:], declared=0xFFFFFFFF)
    cut = truncated(FLAC, tmp_path / "cut.flac", 0.6)
    for path in (huge, cut):
        transcript = await transcribe(deployment, path)
        assert transcript.text and transcript.warnings, path.name


async def test_garbage_on_the_jobs_subject_is_a_failure_and_work_goes_on(deployment, tmp_path):
    s = deployment.bus.subjects
    got: list[Failure] = []

    async def on_failure(msg):
        got.append(msgspec.msgpack.decode(msg.data, type=Failure))
    sub = await deployment.bus.nc.subscribe(s.edge("errors", "jgarbage"), cb=on_failure)
    await deployment.bus.js.publish(s.edge("jobs", "jgarbage"), b"\x93garbage",
                                    headers={Headers.JOB: "jgarbage"})
    transcript = await transcribe(deployment, WENET)  # the pipeline still serves
    assert "sorrow" in transcript.text.lower()
    for _ in range(50):
        if got:
            break
        await asyncio.sleep(0.1)
    await sub.unsubscribe()
    assert got and got[0].category is FailureCategory.BAD_MESSAGE and got[0].operator == "decode"


@pytest.mark.slow
def test_cli_stands_up_what_it_needs_and_prints_the_transcript(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    res = subprocess.run([sys.executable, "-m", "topology.cli", "transcribe", str(WENET)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**env, "PYTHONPATH": str(ROOT), "PATCHWIRE_DATA_DIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("[00:00:00")
    assert wer([manifest()["librispeech_wenet/1995-1837-0001.wav"]["text"]],
               [" ".join(line.split("] ", 1)[1] for line in res.stdout.splitlines())]).wer <= 0.12
