"""Decode: any audio or video file in, one 16 kHz mono s16le PCM object out.

PyAV decodes frame by frame into a scratch file, so a 4-hour recording costs a few MB of
memory. The decoding runs in a thread a minute of audio at a time; between minutes the
operator reports progress on the event loop.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import av
import msgspec

from operators.audio_io import (
    BYTES_PER_SAMPLE,
    HashingWriter,
    complete_ref,
    fetch_checked,
    run_settled,
    scratch_file,
    wav_header,
)
from operators.base import Context, Operator, Reject
from schemas import DecodedAudio, TranscribeJob

CHUNK_S = 60.0           # audio decoded per thread call, and the progress step
MAX_BAD_PACKETS = 50     # consecutive undecodable packets before we call the rest lost
UNKNOWN_WAV_SIZE = 0xFFFFFFFF


class DecodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sample_rate: int = 16_000
    min_source_rate: int = 4_000
    max_duration_s: float = 6 * 3600


class Decode(Operator[TranscribeJob, DecodedAudio]):
    kind = "decode"
    input_type = TranscribeJob
    output_type = DecodedAudio
    Config = DecodeConfig

    async def process(self, job: TranscribeJob, ctx: Context) -> AsyncIterator[DecodedAudio]:
        with scratch_file(ctx, ".src") as src, scratch_file(ctx, ".s16le") as pcm:
            await fetch_checked(ctx, job.audio, src)
            decoder = await run_settled(_Decoder, src, pcm, self.config, job.filename)
            try:
                await self._decode_all(decoder, ctx)
            finally:
                await run_settled(decoder.close)
            ref = await ctx.blobs.put_file(f"{job.job_id}/pcm{self.config.sample_rate // 1000}k"
                                           ".s16le", pcm, decoder.content_type)
            ref = complete_ref(ref, decoder.writer.size, decoder.writer.sha256)
        yield DecodedAudio(
            job_id=job.job_id, pcm=ref, sample_rate=self.config.sample_rate,
            duration_s=decoder.seconds, source_format=decoder.source_format,
            source_sample_rate=decoder.source_rate, source_channels=decoder.source_channels,
            warnings=decoder.warnings, language=job.language, prompt=job.prompt,
            meeting=job.meeting, source=job.audio)

    async def _decode_all(self, decoder: _Decoder, ctx: Context) -> None:
        while not decoder.finished:
            await run_settled(decoder.step, CHUNK_S)
            await ctx.progress(decoder.seconds, decoder.declared_s, "decoding")
        decoder.check_result()


class _Decoder:
    """Synchronous PyAV decoding, driven a chunk at a time from a thread."""

    def __init__(self, src: Path, out: Path, config: DecodeConfig, filename: str = ""):
        self.config, self.label = config, filename or src.name
        self.warnings: list[str] = []
        self.samples, self.finished = 0, False
        self._bad_packets, self._last_error, self._error_at = 0, "", 0.0
        self._good_after_error = True
        _check_file(src, config, self.warnings, self.label)
        self._open(src)
        self.writer = HashingWriter(out)
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=config.sample_rate)
        self._packets = self._container.demux(self._stream)

    def _open(self, src: Path) -> None:
        try:
            self._container = av.open(str(src), metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise Reject(f"not an audio file: {self.label}: {_why(exc)}") from None
        if not self._container.streams.audio:
            kinds = sorted({s.type for s in self._container.streams}) or ["none"]
            problem = (f"no audio stream in {self.label} "
                       f"({self._container.format.name}; streams: {', '.join(kinds)})")
            self._container.close()
            raise Reject(problem)
        self._stream = stream = self._container.streams.audio[0]
        # read once: the container is closed before the message is built
        self.source_format = f"{self._container.format.name}/{stream.codec_context.name}"
        self.source_rate = stream.codec_context.sample_rate or 0
        self.source_channels = stream.codec_context.channels or 0
        self.declared_s = self._declared_s()
        self._check_stream()

    def _check_stream(self) -> None:
        rate, cfg, problem = self.source_rate, self.config, ""
        if rate < cfg.min_source_rate:
            problem = f"sample rate {rate} Hz is below the minimum of {cfg.min_source_rate} Hz"
        elif self.declared_s > cfg.max_duration_s:  # fail fast; decoding checks it again
            problem = (f"{self.label} declares {_hms(self.declared_s)}, over the limit of "
                       f"{_hms(cfg.max_duration_s)} (max_duration_s)")
        if problem:
            self._container.close()
            raise Reject(problem)

    def _declared_s(self) -> float:
        """What the container says; a hint for progress and truncation, never trusted alone."""
        if self._container.duration and self._container.duration > 0:
            return self._container.duration / av.time_base
        stream = self._stream
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        return 0.0

    @property
    def seconds(self) -> float:
        return self.samples / self.config.sample_rate

    @property
    def content_type(self) -> str:
        return f"audio/pcm;format=s16le;rate={self.config.sample_rate};channels=1"

    def step(self, seconds: float) -> None:
        """Decode about `seconds` more audio; sets `finished` at the end of the stream."""
        goal = self.samples + int(seconds * self.config.sample_rate)
        while self.samples < goal and not self.finished:
            try:
                packet = next(self._packets)
            except StopIteration:
                self._flush()
            except av.FFmpegError as exc:  # the container itself is cut or corrupt
                self._note_error(exc)
                self._flush()
            else:
                self._decode_packet(packet)
            self._check_length()

    def _decode_packet(self, packet: av.Packet) -> None:
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            self._note_error(exc)
            if self._bad_packets >= MAX_BAD_PACKETS:
                self._flush()
            return
        self._bad_packets = 0
        for frame in frames:
            self._good_after_error = True
            self._write(self._resampler.resample(frame))

    def _note_error(self, exc: Exception) -> None:
        self._bad_packets += 1
        if self._good_after_error or not self._last_error:
            self._error_at, self._last_error = self.seconds, _why(exc)
        self._good_after_error = False

    def _write(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            data = frame.to_ndarray()[0, : frame.samples].astype("<i2", copy=False).tobytes()
            self.writer.write(data)
            self.samples += len(data) // BYTES_PER_SAMPLE

    def _flush(self) -> None:
        self._write(self._resampler.resample(None))
        self.finished = True

    def _check_length(self) -> None:
        if self.seconds > self.config.max_duration_s:
            raise Reject(f"{self.label} is longer than {_hms(self.config.max_duration_s)} "
                         f"(max_duration_s)")

    def check_result(self) -> None:
        """After the last chunk: nothing decoded is a Reject; a cut-off end is a warning."""
        if self.samples == 0:
            why = f": {self._last_error}" if self._last_error else ""
            raise Reject(f"no audio could be decoded from {self.label}{why}")
        if self._last_error and not self._good_after_error:
            self.warnings.append(f"truncated: decoding stopped at {self._error_at:.1f} s: "
                                 f"{self._last_error}")
        elif self._last_error:
            self.warnings.append(f"skipped undecodable packets (first at {self._error_at:.1f} s: "
                                 f"{self._last_error})")
        elif not self.source_format.startswith("wav/"):  # wav is checked from its header
            self._check_declared()

    def _check_declared(self) -> None:
        declared = self.declared_s
        if declared and self.seconds < 0.9 * declared and declared - self.seconds > 1.0:
            self.warnings.append(f"truncated: decoded {self.seconds:.1f} s of the "
                                 f"{declared:.1f} s the file declares")

    def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
        self._container.close()


def _check_file(src: Path, config: DecodeConfig, warnings: list[str], label: str) -> None:
    """What ffmpeg would hide or blur: an empty file, and a WAV header that lies."""
    size = src.stat().st_size
    if size == 0:
        raise Reject("empty file (0 bytes)")
    header = wav_header(src)
    if header is None:
        return
    if header.sample_rate < config.min_source_rate:
        raise Reject(f"sample rate {header.sample_rate} Hz is below the minimum of "
                     f"{config.min_source_rate} Hz (WAV header)")
    held = size - header.data_offset
    if header.data_bytes in (0, UNKNOWN_WAV_SIZE):
        warnings.append(f"WAV header declares no data size ({header.data_bytes:#x}); "
                        f"decoded to the end of the file")
    elif header.data_bytes > held:
        rate = header.sample_rate * header.channels * max(header.bits // 8, 1)
        warnings.append(f"truncated: the WAV header declares {header.data_bytes / rate:.1f} s, "
                        f"the file holds {max(held, 0) / rate:.1f} s")


def _why(exc: Exception) -> str:
    """ffmpeg's own words, without the errno and file name PyAV wraps them in."""
    return getattr(exc, "strerror", None) or str(exc)


def _hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min" if h else f"{rest // 60} min {rest % 60:02d} s"
