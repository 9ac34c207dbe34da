"""The light fallback voice: Debian's espeak-ng (formant synthesis, no model, ~5 MB).

One `espeak-ng --stdout` process per utterance: it starts in ~10 ms and streams its WAV as
it goes, so pieces come out while the rest is still being made, and abandoning an utterance
is killing its process; nothing is shared between utterances, so nothing can be left dirty.
"""
from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator

from operators.voice.synthesize import SynthesizeConfig
from operators.voice.tts.engine import PieceMaker, TtsError

INSTALL_HINT = "apt-get install espeak-ng (or: bash infra/espeak.sh)"
DEFAULT_WPM = 175          # espeak-ng's own default speed
_HEADER_BYTES = 44         # a streamed RIFF header: "RIFF", "WAVE", a 16-byte fmt, "data"


class EspeakEngine:
    def __init__(self, config: SynthesizeConfig | None = None):
        self.config = config or SynthesizeConfig()
        self.sample_rate = self.config.sample_rate
        self.binary = ""

    async def start(self) -> None:
        """Find the binary and check the voice once, so a typo fails at start, not mid-call."""
        self.binary = shutil.which("espeak-ng") or ""
        if not self.binary:
            raise TtsError(f"the espeak engine needs espeak-ng: {INSTALL_HINT}")
        proc = await asyncio.create_subprocess_exec(
            self.binary, "-q", "-v", self.config.espeak_voice, "x",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), self.config.timeout_s)
        if proc.returncode != 0:
            raise TtsError(f"espeak-ng voice {self.config.espeak_voice!r}: "
                           f"{err.decode(errors='replace').strip()} (see: espeak-ng --voices)")

    async def close(self) -> None:
        return None

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        if not self.binary:
            raise TtsError("EspeakEngine.speak() before start()")
        if not text.strip():
            return
        proc = await asyncio.create_subprocess_exec(
            self.binary, "--stdout", "--stdin", "-v", self.config.espeak_voice,
            "-s", str(round(DEFAULT_WPM * self.config.speed)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            proc.stdin.write(text.encode("utf-8"))
            proc.stdin.close()
            pieces = PieceMaker(await self._within(_rate(proc)), self.sample_rate,
                                self.config.piece_ms)
            while chunk := await self._within(proc.stdout.read(8192)):
                for piece in pieces.feed(chunk):
                    yield piece
            for piece in pieces.flush():
                yield piece
            if await self._within(proc.wait()) != 0:
                err = await proc.stderr.read()
                raise TtsError(f"espeak-ng exited {proc.returncode}: "
                               f"{err.decode(errors='replace').strip()[:300]}")
        finally:   # a barge-in (or an error) ends the utterance here and now
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def _within(self, aw):
        """Each wait on the child is bounded on its own: a timeout around the whole generator
        would also run while the consumer holds a piece, and cancel the consumer instead."""
        try:
            return await asyncio.wait_for(aw, self.config.timeout_s)
        except TimeoutError:
            raise TtsError(f"espeak-ng gave nothing for {self.config.timeout_s:.0f} s") from None


async def _rate(proc: asyncio.subprocess.Process) -> int:
    try:
        header = await proc.stdout.readexactly(_HEADER_BYTES)
    except asyncio.IncompleteReadError as e:
        raise TtsError(f"espeak-ng wrote {len(e.partial)} bytes, no WAV header") from None
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE" or header[36:40] != b"data":
        raise TtsError(f"espeak-ng wrote no plain WAV header: {header[:40]!r}")
    channels, rate, _, _, bits = struct.unpack("<HIIHH", header[22:36])
    if (channels, bits) != (1, 16):
        raise TtsError(f"espeak-ng wrote {channels} channels of {bits} bit; expected mono 16 bit")
    return rate
