"""The embedded neural voice: piper-tts (VITS on onnxruntime) in long-lived child processes.

piper-tts is GPL-3.0, so patchwire never imports it: it runs its own CLI, `piper -m VOICE -d
DIR`, which reads one text line at a time on stdin, writes one WAV file per line into DIR and
logs "Wrote DIR/<n>.wav" on stderr. That log line is the utterance boundary; `--output-raw`
has none. Starting a process costs about 0.9 s (the voice loads), so processes live for the
engine's life and are restarted when they die.

Piper returns a line's audio only when the whole line is done, so a sentence is sent as
clauses: the first one short, so speech starts once it is made (0.1-0.3 s on 2 cores), not
after the whole sentence (over 1 s for a long one).
Lines are matched to results in order. A barge-in abandons the clause in flight: its result
is deleted when it comes back, and the next utterance simply queues behind it.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from operators.models import model_file
from operators.voice.synthesize import SynthesizeConfig
from operators.voice.tts.engine import PieceMaker, TtsError

log = logging.getLogger("patchwire.tts.piper")

INSTALL_HINT = "pip install --no-deps piper-tts==1.8.0 pathvalidate==3.3.1"
WARM_UP = "Ready."          # spoken once at start: loads the voice and pays the first-run cost
FIRST_WORDS = 10            # the first clause's cap: ~3 s of speech, ~0.2 s to synthesize here
MAX_WORDS = 24              # later clauses are synthesized while earlier ones play
MIN_WORDS = 2               # a clause shorter than this joins the next one ("Yes," alone is choppy)
_WROTE = re.compile(r"Wrote (.+\.wav)\s*$")
_BREAK = re.compile(r"[,;:.!?)\]\"”]$|^[–—-]$")   # a word that ends a clause
_JOINERS = frozenset("and but or so because which that when while with to for of in".split())


class PiperDied(Exception):
    """The process ended (or hung and was killed) with lines still in flight."""


def clauses(text: str, first_words: int = FIRST_WORDS, max_words: int = MAX_WORDS) -> list[str]:
    """Cut text into lines for piper at punctuation; a clause with none is cut at the cap,
    before a joining word ("and", "which") when one is near."""
    out: list[str] = []
    words: list[str] = []
    for word in text.split():
        words.append(word)
        cap = first_words if not out else max_words
        if _BREAK.search(word) and len(words) >= MIN_WORDS or len(words) >= cap:
            keep = _before_joiner(words) if len(words) >= cap else len(words)
            out.append(" ".join(words[:keep]))
            words = words[keep:]
    if words:
        out.append(" ".join(words))
    return _join_unsayable(out)


def _join_unsayable(parts: list[str]) -> list[str]:
    """A clause of only marks ("—", "(") gives piper no phonemes, and piper 1.8.0 then dies
    writing an empty WAV: such a clause rides with its neighbour."""
    out: list[str] = []
    for part in parts:
        if out and not (_sayable(part) and _sayable(out[-1])):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


def _sayable(text: str) -> bool:
    return any(c.isalnum() for c in text)


def _before_joiner(words: list[str]) -> int:
    for i in range(len(words) - 1, max(MIN_WORDS, len(words) - 5) - 1, -1):
        if words[i].lower() in _JOINERS:
            return i
    return len(words)


class PiperProcess:
    """One `piper` child: lines in, WAV paths back in the same order, any number in flight."""

    def __init__(self, argv: list[str], sample_rate: int, timeout_s: float):
        self.argv, self.sample_rate, self.timeout_s = argv, sample_rate, timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task | None = None
        self.pending: collections.deque[asyncio.Future] = collections.deque()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.dir = Path(tempfile.mkdtemp(prefix="pw-piper-", dir=_ram_dir()))
        self.served = 0               # lines answered

    def rss_mib(self) -> float:
        """The child's resident memory, 0 where /proc cannot say."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except (OSError, AttributeError):
            return 0.0
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        return int(match.group(1)) / 1024 if match else 0.0

    @property
    def alive(self) -> bool:
        return (self.proc is not None and self.proc.returncode is None
                and self.reader is not None and not self.reader.done())

    @property
    def load(self) -> int:
        return len(self.pending)

    async def start(self) -> None:
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, "-d", str(self.dir), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env)
            self.reader = asyncio.create_task(self._read(), name=f"piper-{self.proc.pid}")
            await self.synthesize(WARM_UP)
        except BaseException:   # a failed or cancelled start leaves no child behind
            await self.close()
            raise

    async def synthesize(self, line: str) -> bytes:
        """The PCM of one line (no newline in it). Raises PiperDied."""
        if not self.alive:
            raise PiperDied(self._why())
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            async with asyncio.timeout(self.timeout_s):
                await self.proc.stdin.drain()
                path = await fut
        except (BrokenPipeError, ConnectionResetError):
            raise PiperDied(self._why()) from None
        except TimeoutError:
            self.proc.kill()   # hung: its other lines fail over to a fresh process
            raise PiperDied(f"no audio after {self.timeout_s:.0f} s; killed") from None
        except asyncio.CancelledError:
            fut.cancel()       # the reader deletes its file when it arrives
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().unlink(missing_ok=True)
            raise
        self.served += 1
        return self._pcm(path)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        self._fail_pending()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _read(self) -> None:
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            wrote = _WROTE.search(line)
            if wrote is None:
                self.stderr_tail.append(line)
                continue
            path = Path(wrote.group(1))
            fut = self.pending.popleft() if self.pending else None
            if fut is None or fut.done():   # abandoned by a barge-in
                path.unlink(missing_ok=True)
            else:
                fut.set_result(path)
        await self.proc.wait()
        self._fail_pending()

    def _fail_pending(self) -> None:
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(PiperDied(self._why()))

    def _why(self) -> str:
        code = self.proc.returncode if self.proc else None
        tail = " | ".join(line for line in self.stderr_tail if line.strip())[-600:]
        return f"piper exited ({code}): {tail or 'no message'}"

    def _pcm(self, path: Path) -> bytes:
        try:
            with wave.open(str(path), "rb") as w:
                shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
                if shape != (1, 2, self.sample_rate):
                    raise TtsError(f"piper wrote {shape[0]} ch, {shape[1] * 8} bit, {shape[2]} Hz;"
                                   f" the voice says mono 16 bit {self.sample_rate} Hz")
                return w.readframes(w.getnframes())
        finally:
            path.unlink(missing_ok=True)


class PiperEngine:
    """A pool of piper processes (config.processes); each clause goes to the least busy one."""

    def __init__(self, config: SynthesizeConfig | None = None):
        self.config = config or SynthesizeConfig()
        self.sample_rate = self.config.sample_rate
        self.voice_rate = 0
        self._argv: list[str] = []
        self._procs: list[PiperProcess] = []
        self._locks = [asyncio.Lock() for _ in range(self.config.processes)]
        self._recycling: dict[int, asyncio.Task] = {}
        self.recycled = 0             # children replaced for their size or age

    async def start(self) -> None:
        if self._procs:
            return
        self._argv, self.voice_rate = piper_command(self.config)
        for _ in range(self.config.processes):
            try:
                self._procs.append(await self._spawn())
            except PiperDied as e:
                raise TtsError(f"piper did not start with voice {self.config.voice!r}: {e}") from None

    async def close(self) -> None:
        for task in self._recycling.values():
            task.cancel()
        await asyncio.gather(*self._recycling.values(), return_exceptions=True)
        procs, self._procs = self._procs, []
        for proc in procs:
            await proc.close()

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        if not self._procs:
            raise TtsError("PiperEngine.speak() before start()")
        pieces = PieceMaker(self.voice_rate, self.sample_rate, self.config.piece_ms)
        for clause in clauses(text):
            for piece in pieces.feed(await self._synthesize(clause)):
                yield piece
        for piece in pieces.flush():
            yield piece

    async def _synthesize(self, clause: str) -> bytes:
        """One retry on a fresh process: a killed child is recovered, a text that kills piper
        every time is an error, not a crash loop."""
        for attempt in (1, 2):
            try:
                proc = await self._pick()
                pcm = await proc.synthesize(clause)
                self._maybe_recycle(proc)
                return pcm
            except PiperDied as e:
                if attempt == 2:
                    raise TtsError(f"piper died twice on {clause[:80]!r}: {e}") from None
                log.warning("piper process died (%s); restarting it", e)
        raise AssertionError("unreachable")

    async def _pick(self) -> PiperProcess:
        if not self._procs:
            raise TtsError("the piper engine is closed")
        i = min(range(len(self._procs)), key=lambda i: self._procs[i].load)
        async with self._locks[i]:   # callers that find the same dead process restart it once
            if not self._procs[i].alive:
                await self._procs[i].close()
                self._procs[i] = await self._spawn()
        return self._procs[i]

    def _maybe_recycle(self, proc: PiperProcess) -> None:
        """Every 25 lines, a child past its bounds is replaced in the background: speech
        goes on from the old one until the new one has loaded its voice (~0.9 s)."""
        c = self.config
        if proc.served % 25 or proc not in self._procs:
            return
        i = self._procs.index(proc)
        if i in self._recycling:
            return
        rss = proc.rss_mib() if c.recycle_mib else 0.0     # read once: it is a /proc read
        too_old = c.recycle_lines and proc.served >= c.recycle_lines
        too_big = c.recycle_mib and rss > c.recycle_mib
        if too_old or too_big:
            log.info("piper child %s: %d lines, %.0f MiB: replacing it", proc.proc.pid,
                     proc.served, rss)
            self._recycling[i] = asyncio.create_task(self._recycle(i, proc))

    async def _recycle(self, i: int, old: PiperProcess) -> None:
        try:
            fresh = await self._spawn()
            async with self._locks[i]:
                if not self._procs or self._procs[i] is not old:
                    await fresh.close()       # closed or restarted meanwhile
                    return
                self._procs[i] = fresh
            self.recycled += 1
            for _ in range(int(self.config.timeout_s * 10)):   # its lines in flight finish
                if not old.load:
                    break
                await asyncio.sleep(0.1)
            await old.close()
        except PiperDied as e:
            log.warning("piper: a replacement child did not start (%s); keeping the old one", e)
        finally:
            self._recycling.pop(i, None)

    async def _spawn(self) -> PiperProcess:
        proc = PiperProcess(self._argv, self.voice_rate, self.config.timeout_s)
        await proc.start()
        return proc


def piper_command(config: SynthesizeConfig) -> tuple[list[str], int]:
    """The argv that runs the configured voice, and the voice's sample rate. Raises TtsError
    (no piper CLI) or ModelError (no voice) with the command that fixes it."""
    exe = Path(sys.executable).parent / "piper"
    binary = str(exe) if exe.exists() else shutil.which("piper")
    if binary is None:
        raise TtsError(f"the piper engine needs the piper CLI: {INSTALL_HINT} (GPL-3.0: it runs "
                       "as its own process), or use engine: espeak")
    onnx = model_file(config.voice)
    settings = Path(f"{onnx}.json")
    if not settings.exists():
        raise TtsError(f"voice {config.voice!r}: {settings} is missing beside the model")
    rate = int(json.loads(settings.read_text())["audio"]["sample_rate"])
    argv = [binary, "-m", str(onnx), "--length-scale", f"{1 / config.speed:.4f}"]
    if config.noise_scale is not None:
        argv += ["--noise-scale", str(config.noise_scale)]
    if config.noise_w is not None:
        argv += ["--noise-w-scale", str(config.noise_w)]
    return argv, rate


def _ram_dir() -> str | None:
    """Result files are small and short-lived: keep them in RAM where the system offers it."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
