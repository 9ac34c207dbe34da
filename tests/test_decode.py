"""Decode: real formats to 16 kHz mono PCM, bad files rejected with a reason, long files in
bounded memory."""
from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from operators.audio_io import BlobIntegrityError
from operators.base import Reject
from operators.decode import Decode, DecodeConfig
from tests.audio_fixtures import (
    AMI,
    ASR,
    FLAC,
    WENET,
    Recorder,
    encode,
    job_for,
    manifest,
    needs_data,
    run,
    tone,
    truncated,
    video_only,
    wav_header,
    write_wav,
)

ROOT = Path(__file__).resolve().parents[1]


async def decode(path: Path, config: DecodeConfig | None = None, rec: Recorder | None = None):
    rec = rec or Recorder("decode")
    [out] = await run(Decode("decode", config), await job_for(rec.blobs, path), rec)
    assert not list(rec.scratch.iterdir()), "scratch files left behind"
    return out


async def rejected(path: Path, config: DecodeConfig | None = None) -> str:
    rec = Recorder("decode")
    with pytest.raises(Reject) as err:
        await run(Decode("decode", config), await job_for(rec.blobs, path), rec)
    assert not list(rec.scratch.iterdir()), "scratch files left behind"
    return err.value.reason


@needs_data
@pytest.mark.parametrize("clip, fmt, rate", [
    ("librispeech_wenet/1995-1837-0001.wav", "wav/pcm_s16le", 16_000),
    ("ljspeech/LJ001-0001.wav", "wav/pcm_s16le", 22_050),
    ("fleurs_en/fleurs-en-000.ogg", "ogg/opus", 48_000),
    ("librispeech_lhotse/2412-153948-0000.flac", "flac/flac", 16_000),
])
async def test_shared_clips(clip, fmt, rate):
    rec = Recorder("decode")
    out = await decode(ASR / clip, rec=rec)
    listed = clip.replace("fleurs_en/", "fleurs_en/wav16k/").replace(".ogg", ".wav")
    assert out.duration_s == pytest.approx(manifest()[listed]["duration_s"], abs=0.02)
    assert (out.source_format, out.source_sample_rate, out.source_channels) == (fmt, rate, 1)
    assert (out.sample_rate, out.warnings, out.job_id) == (16_000, [], "job")
    pcm = rec.blobs._path(out.pcm.name).read_bytes()
    assert out.pcm.name == "job/pcm16k.s16le"
    assert out.pcm.size == len(pcm) == round(out.duration_s * 16_000) * 2
    assert out.pcm.sha256 == hashlib.sha256(pcm).hexdigest()
    assert rec.progress[-1][2] == "decoding"


@needs_data
async def test_float32_wav():
    out = await decode(AMI / "dev00.wav")
    assert (out.source_format, out.duration_s) == ("wav/pcm_f32le", pytest.approx(30.0, abs=0.01))


@needs_data
@pytest.mark.parametrize("name, codec, video", [
    ("a.mp3", "libmp3lame", False), ("a.m4a", "aac", False), ("v.mp4", "aac", True)])
async def test_encoded(tmp_path, name, codec, video):
    out = await decode(encode(WENET, tmp_path / name, codec, video=video))
    # AAC adds a frame of priming that ffmpeg reports as audio
    assert out.duration_s == pytest.approx(8.73, abs=0.07)
    assert out.warnings == []


async def test_stereo_is_downmixed(tmp_path):
    frames = tone(2.0, rate=8_000)  # 16 000 mono samples = 8 000 stereo frames at 8 kHz
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_header(8_000, len(frames), channels=2) + frames)
    out = await decode(path)
    assert (out.source_channels, out.source_sample_rate) == (2, 8_000)
    assert out.duration_s == pytest.approx(1.0, abs=0.01)


async def test_progress_every_minute(tmp_path):
    rec = Recorder("decode")
    out = await decode(write_wav(tmp_path / "long.wav", tone(150.0)), rec=rec)
    assert out.duration_s == pytest.approx(150.0)
    assert [round(p[0]) for p in rec.progress] == [60, 120, 150]
    assert all(total == pytest.approx(150.0) for _, total, _ in rec.progress)


@pytest.mark.parametrize("make, reason", [
    (lambda d: d.joinpath("empty.wav").write_bytes(b""), "empty file (0 bytes)"),
    (lambda d: d.joinpath("notes.wav").write_text("not audio\n" * 50),
     "not an audio file: notes.wav"),
    (lambda d: write_wav(d / "r0.wav", tone(1.0), rate=0), "sample rate 0 Hz is below the minimum"),
    (lambda d: write_wav(d / "r1.wav", tone(1.0), rate=1), "sample rate 1 Hz is below the minimum"),
    (lambda d: write_wav(d / "r2k.wav", tone(1.0), rate=2_000), "sample rate 2000 Hz"),
    (lambda d: video_only(d / "silent.mp4"), "no audio stream in silent.mp4"),
    (lambda d: write_wav(d / "hollow.wav", b"", declared=32_000), "no audio could be decoded"),
])
async def test_bad_input_is_rejected(tmp_path, make, reason):
    make(tmp_path)
    [path] = tmp_path.iterdir()
    assert reason in await rejected(path)


async def test_unknown_wav_size_decodes_what_is_there(tmp_path):
    out = await decode(write_wav(tmp_path / "stream.wav", tone(3.0), declared=0xFFFFFFFF))
    assert out.duration_s == pytest.approx(3.0)
    assert out.warnings == ["WAV header declares no data size (0xffffffff); "
                            "decoded to the end of the file"]


async def test_truncated_wav(tmp_path):
    out = await decode(write_wav(tmp_path / "cut.wav", tone(3.0), declared=6 * 32_000))
    assert out.duration_s == pytest.approx(3.0)
    assert out.warnings == ["truncated: the WAV header declares 6.0 s, the file holds 3.0 s"]


@needs_data
async def test_truncated_flac_keeps_what_decoded(tmp_path):
    out = await decode(truncated(FLAC, tmp_path / "cut.flac"))
    assert 4.0 < out.duration_s < 7.0
    [warning] = out.warnings
    assert warning.startswith(f"truncated: decoding stopped at {out.duration_s:.1f} s: ")


@needs_data
async def test_truncated_mp3(tmp_path):
    mp3 = encode(WENET, tmp_path / "a.mp3", "libmp3lame")
    out = await decode(truncated(mp3, tmp_path / "cut.mp3"))
    assert 3.0 < out.duration_s < 6.0
    assert out.warnings == [f"truncated: decoded {out.duration_s:.1f} s of the 8.7 s "
                            "the file declares"]


@needs_data
async def test_truncated_to_nothing(tmp_path):
    path = truncated(FLAC, tmp_path / "head.flac", fraction=0.001)
    reason = await rejected(path)
    assert reason.startswith(("not an audio file", "no audio could be decoded"))


@needs_data
async def test_over_max_duration():
    reason = await rejected(WENET, DecodeConfig(max_duration_s=5.0))
    assert reason == "1995-1837-0001.wav declares 0 min 09 s, over the limit of 0 min 05 s " \
                     "(max_duration_s)"


async def test_input_checked_against_its_ref(tmp_path):
    rec = Recorder("decode")
    job = await job_for(rec.blobs, write_wav(tmp_path / "a.wav", tone(1.0)))
    job = msgspec.structs.replace(job, audio=msgspec.structs.replace(job.audio, sha256="0" * 64))
    with pytest.raises(BlobIntegrityError, match="sha256"):
        await run(Decode("decode"), job, rec)
    assert not list(rec.scratch.iterdir())


def test_config_forbids_unknown_fields():
    with pytest.raises(msgspec.ValidationError, match="max_duration"):
        msgspec.convert({"max_duration": 10}, DecodeConfig)


FOUR_HOURS = textwrap.dedent("""
    import asyncio, json, shutil, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from operators.decode import Decode
    from tests.audio_fixtures import Recorder, job_for, run, tone, wav_header, write_wav

    def hwm_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    async def main(tmp):
        rec = Recorder("decode")
        small = write_wav(tmp / "w.wav", tone(2))
        await run(Decode("decode"), await job_for(rec.blobs, small), rec)
        before = hwm_kb()   # after imports and one small decode: the baseline
        src = tmp / "four-hours.wav"
        data = 4 * 3600 * 16_000 * 2
        with open(src, "wb") as f:
            f.write(wav_header(16_000, data))
            f.truncate(44 + data)   # sparse: zeros that take no disk
        [out] = await run(Decode("decode"), await job_for(rec.blobs, src, "long"), rec)
        shutil.rmtree(rec.blobs.root)
        print(json.dumps({"growth_kb": hwm_kb() - before, "duration_s": out.duration_s,
                          "progress": len(rec.progress)}))

    asyncio.run(main(Path(sys.argv[2])))
""")


@pytest.mark.slow
def test_four_hours_in_bounded_memory(tmp_path):
    """A 4-hour file is decoded a minute at a time: the peak RSS barely moves. Measured in a
    child process, since VmHWM is a high-water mark for the whole process."""
    done = subprocess.run([sys.executable, "-c", FOUR_HOURS, str(ROOT), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["duration_s"] == pytest.approx(4 * 3600, abs=1)
    assert result["growth_kb"] < 150 * 1024
    assert result["progress"] >= 240


async def test_cancel_cleans_up(tmp_path):
    """Cancelled mid-file (a redelivery, a shutdown): the decoder thread is let finish its
    chunk before the files are closed and deleted, and the cancellation propagates."""
    rec = Recorder("decode")
    job = await job_for(rec.blobs, write_wav(tmp_path / "long.wav", tone(300.0)))
    first = asyncio.Event()

    async def report(done, total, note):
        first.set()
        await asyncio.sleep(0)
    rec.ctx.report = report
    task = asyncio.create_task(run(Decode("decode"), job, rec))
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not list(rec.scratch.iterdir())
