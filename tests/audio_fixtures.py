"""Test helpers for the audio operators: shared data, synthetic bad files, WER.

Shared data is read in place from ../shared/data, never copied into the repo.
"""
from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import av
import numpy as np

from evals.wer import wer as evals_wer
import pytest

from operators.audio_io import load_16k  # noqa: F401  (tests import it from here)
from operators.base import Context, Operator
from operators.testing import MemoryBlobStore
from schemas import DecodedAudio, Message, TranscribeJob

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ASR = DATA / "asr"
AMI = DATA / "diarization" / "ami_debug"
WENET = ASR / "librispeech_wenet" / "1995-1837-0001.wav"
FLAC = ASR / "librispeech_lhotse" / "2412-153948-0000.flac"

needs_data = pytest.mark.skipif(not ASR.exists(), reason=f"shared data not found at {DATA}")


def manifest() -> dict[str, dict]:
    """Clip path (relative to data/asr) -> its manifest row."""
    rows = (json.loads(line) for line in (ASR / "manifest.jsonl").read_text().splitlines())
    return {row["audio"]: row for row in rows if row}


# --- synthetic files --------------------------------------------------------------------

def wav_header(rate: int, data_bytes: int, channels: int = 1, bits: int = 16,
               fmt: int = 1) -> bytes:
    """A 44-byte RIFF/WAVE header, written by hand so it can lie."""
    align = channels * bits // 8
    riff = min(36 + data_bytes, 0xFFFFFFFF)
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * align, align, bits)
            + b"data" + struct.pack("<I", data_bytes))


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = 16_000, declared: int | None = None) -> Path:
    path.write_bytes(wav_header(rate, len(pcm) if declared is None else declared) + pcm)
    return path


def encode(src: Path, dst: Path, codec: str, video: bool = False) -> Path:
    """Re-encode a file's first audio stream with PyAV (and add a blank video track)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.audio[0]
        vst = _video_stream(out) if video else None
        ost = out.add_stream(codec, rate=ist.rate, layout="mono")
        fmt = ost.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=ist.rate)
        frames = [f for frame in inp.decode(ist) for f in resampler.resample(frame)]
        for frame in frames + resampler.resample(None) + [None]:
            out.mux(ost.encode(frame))
        if vst is not None:
            _blank_video(out, vst, seconds=sum(f.samples for f in frames) / ist.rate)
    return dst


def video_only(dst: Path, seconds: float = 1.0) -> Path:
    with av.open(str(dst), "w") as out:
        _blank_video(out, _video_stream(out), seconds)
    return dst


def _video_stream(out: av.container.OutputContainer) -> av.VideoStream:
    stream = out.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    return stream


def _blank_video(out: av.container.OutputContainer, stream: av.VideoStream,
                 seconds: float) -> None:
    black = np.zeros((48, 64, 3), np.uint8)
    for i in range(int(seconds * 10)):
        frame = av.VideoFrame.from_ndarray(black, format="rgb24")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def truncated(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# --- driving operators ------------------------------------------------------------------

class Recorder:
    """A Context whose progress reports are kept for assertions."""

    def __init__(self, operator: str, blobs: MemoryBlobStore | None = None):
        self.progress: list[tuple[float, float, str]] = []
        self.blobs = blobs or MemoryBlobStore()
        self.scratch = Path(tempfile.mkdtemp(prefix="pw-scratch-"))
        self.ctx = Context(operator=operator, job_id="job", blobs=self.blobs,
                           scratch=self.scratch, report=self._report)

    async def _report(self, done: float, total: float, note: str) -> None:
        self.progress.append((done, total, note))


async def job_for(blobs: MemoryBlobStore, path: Path, job_id: str = "job",
                  **fields) -> TranscribeJob:
    ref = await blobs.put_file(f"{job_id}/{path.name}", path)
    return TranscribeJob(job_id=job_id, audio=ref, filename=path.name, **fields)


async def decoded(blobs: MemoryBlobStore, path: Path, job_id: str = "job") -> DecodedAudio:
    """Run the real decoder: the VAD and ASR tests start from its output."""
    from operators.decode import Decode
    from operators.testing import drive
    rec = Recorder("decode", blobs)
    [out] = await drive(Decode("decode"), await job_for(blobs, path, job_id), rec.ctx)
    return out


async def run(op: Operator, msg: Message, rec: Recorder) -> list[Message]:
    from operators.testing import drive
    return await drive(op, msg, rec.ctx)


# --- word error rate ------------------------------------------------------------------

def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one utterance, normalised as the evals normalise (evals/normalize.py)."""
    return evals_wer([reference], [hypothesis]).wer
