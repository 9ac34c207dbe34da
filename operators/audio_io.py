"""Helpers the audio operators share: scratch files, verified fetches, PCM reads, threads.

Audio of any length goes through files, never whole into memory: decode writes 16 kHz s16le
PCM to a file as it goes, and VAD and ASR read back only the block or window they need.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np

from operators.base import Context
from schemas import ObjectRef

T = TypeVar("T")

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2
PCM_CONTENT_TYPE = "audio/pcm;format=s16le;rate=16000;channels=1"


class BlobIntegrityError(Exception):
    """A fetched object is not what its reference says (size or sha256). Retried: a later
    fetch may be whole; a wrong reference dead-letters after max_deliver."""

    def __init__(self, name: str, what: str, expected: Any, got: Any):
        super().__init__(f"object {name!r}: {what} is {got}, its reference says {expected}")
        self.name, self.what, self.expected, self.got = name, what, expected, got


async def run_settled(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work in a thread. If cancelled, wait for the thread to finish before
    re-raising, so a caller's cleanup never closes a file or decoder still in use there."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])  # bounded: callers keep each call to a short block of work
        raise


@contextlib.contextmanager
def scratch_file(ctx: Context, suffix: str = "") -> Iterator[Path]:
    """A fresh file in the operator's scratch folder, deleted however the block ends."""
    Path(ctx.scratch).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=ctx.scratch, prefix=f"{ctx.operator}-", suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def file_digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def check_ref(ref: ObjectRef, path: Path) -> None:
    """Compare a fetched file with what its reference promises (fields left empty are skipped)."""
    size, sha = file_digest(path)
    if ref.size and ref.size != size:
        raise BlobIntegrityError(ref.name, "size", ref.size, size)
    if ref.sha256 and ref.sha256 != sha:
        raise BlobIntegrityError(ref.name, "sha256", ref.sha256, sha)


async def fetch_checked(ctx: Context, ref: ObjectRef, path: Path) -> Path:
    await ctx.blobs.get_file(ref, path)
    await run_settled(check_ref, ref, path)
    return path


def complete_ref(ref: ObjectRef, size: int, sha256: str) -> ObjectRef:
    """A store may leave size or sha256 empty; fill them from what we wrote, or catch a
    store that kept something else."""
    if ref.size and ref.size != size:
        raise BlobIntegrityError(ref.name, "stored size", size, ref.size)
    if ref.sha256 and ref.sha256 != sha256:
        raise BlobIntegrityError(ref.name, "stored sha256", sha256, ref.sha256)
    return msgspec.structs.replace(ref, size=size, sha256=sha256)


class HashingWriter:
    """Writes a file while counting and hashing it, so no second pass is needed."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def pcm_samples(path: Path) -> int:
    return Path(path).stat().st_size // BYTES_PER_SAMPLE


def read_pcm(path: Path, start: int, count: int) -> np.ndarray:
    """Samples [start, start+count) of an s16le file as float32 in [-1, 1)."""
    with open(path, "rb") as f:
        f.seek(start * BYTES_PER_SAMPLE)
        raw = f.read(count * BYTES_PER_SAMPLE)
    usable = len(raw) - len(raw) % BYTES_PER_SAMPLE
    return np.frombuffer(raw[:usable], dtype="<i2").astype(np.float32) / 32768.0


class WavHeader(msgspec.Struct, frozen=True):
    sample_rate: int
    channels: int
    bits: int
    data_bytes: int       # as declared; 0xFFFFFFFF means "unknown" (streamed writers)
    data_offset: int


def wav_header(path: Path) -> WavHeader | None:
    """Parse a RIFF/WAVE header, or None if the file is not one. ffmpeg silently clamps a
    bad header to the file size; reading it ourselves lets decode say what was wrong."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt = None
        while chunk := f.read(8):
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                return _header(fmt, size, f.tell()) if fmt else None
            body = f.read(min(size, 64)) if cid == b"fmt " else b""
            fmt = body if cid == b"fmt " else fmt
            f.seek(size + (size & 1) - len(body), os.SEEK_CUR)
    return None


def _header(fmt: bytes, data_bytes: int, offset: int) -> WavHeader | None:
    if len(fmt) < 16:
        return None
    _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    return WavHeader(sample_rate=rate, channels=channels, bits=bits,
                     data_bytes=data_bytes, data_offset=offset)


def load_16k(path: Path) -> np.ndarray:
    """A whole (short) file as float32 16 kHz mono, for evaluations and engine-level tests;
    operators stream instead (operators/decode)."""
    import av   # only here: the rest of this module needs no codec
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    with av.open(str(path)) as c:
        frames = [o for f in c.decode(audio=0) for o in resampler.resample(f)]
    frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float32) / 32768
