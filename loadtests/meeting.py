"""Meeting transcriber load figures: an hour-long meeting end to end -> loadtests/RESULTS.md.

    python loadtests/meeting.py [--minutes 60] [--asr-model whisper-base] [--no-summary]
                                [--summary-model qwen2.5-coder-1.5b] [--set OP.KEY=VALUE]
                                [--out PATH]

The meeting is the shared AMI clips (ami_debug's 30 s clips and the 60 s ES2004a mixture)
concatenated and looped to `--minutes`, written as a 16 kHz mono wav in a temp dir one clip
at a time. topology/meeting_transcriber.yaml runs in this process on an embedded nats-server
(`asr.model`, `summarize.model` and any --set overridden; not indexed; the QA store a temp
file) and `transcribe_meeting` sends the file once, as `patchwire meeting` does. Printed: wall time
from submit to minutes and its RTF, each stage's wall time (first 'started' to last 'done'
in its Progress events), and memory: this process's VmRSS sampled every 0.5 s, read at 25 %,
50 % and 100 % of the ASR's progress, its median over each quarter of the ASR and
diarization stages (does it grow with the audio?), its VmHWM at the end, and the
nats-server child's peak.
Target (the issue): an hour in ≤ 10 minutes (RTF ≤ 0.17) with memory that does not grow
with the meeting's length.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests.memory import _cmdline, children, read_status  # noqa: E402
from loadtests.results import replace_block  # noqa: E402

DATA = ROOT.parent / "shared/data/diarization"
RATE = 16_000
TARGET_RTF = 600 / 3600          # an hour in 10 minutes
CHECKPOINTS = (0.25, 0.5, 1.0)   # fractions of the ASR's progress where VmRSS is read
RISE = 0.02                      # a steady RSS rise over half a stage beyond this: it grows


# ---- the meeting --------------------------------------------------------------------------

def dataset_clips() -> list[Path]:
    """Every ami_debug clip with speech (not empty.wav), then the ES2004a mixture."""
    debug = sorted(p for p in (DATA / "ami_debug").glob("*.wav") if p.stem != "empty")
    return debug + [DATA / "ami_mixture_es2004a/mixture.wav"]


def _load_int16(path: Path) -> np.ndarray:
    from operators.audio_io import load_16k
    return (np.clip(load_16k(path), -1.0, 32767 / 32768) * 32768).astype(np.int16)


def meeting_chunks(clips: list[Path], seconds: float,
                   load: Callable[[Path], np.ndarray] = _load_int16) -> Iterator[np.ndarray]:
    """The clips in order, looped, cut at exactly `seconds`: one decoded clip at a time."""
    left = int(round(seconds * RATE))
    while left > 0:
        for clip in clips:
            piece = load(clip)[:left]
            if not len(piece):
                continue
            left -= len(piece)
            yield piece
            if left <= 0:
                return


def write_wav(path: Path, chunks: Iterable[np.ndarray]) -> float:
    """16 kHz mono s16 wav, written chunk by chunk; returns its duration in seconds."""
    frames = 0
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE)
        for chunk in chunks:
            out.writeframes(chunk.astype(np.int16).tobytes())
            frames += len(chunk)
    return frames / RATE


# ---- memory ------------------------------------------------------------------------------

class RssSampler(threading.Thread):
    """(epoch time, VmRSS MiB) of this process every `period` s; the nats-server child's
    largest VmRSS too (JetStream holds the audio objects)."""

    def __init__(self, period: float = 0.5):
        super().__init__(daemon=True)
        self.period, self.samples, self.nats_peak_mb = period, [], 0.0
        self.stopped = threading.Event()
        self.nats = next((c for c in children(os.getpid()) if "nats-server" in _cmdline(c)), None)

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            self.samples.append((time.time(), rss_mb()))
            if self.nats:
                self.nats_peak_mb = max(self.nats_peak_mb, read_status(self.nats).get("VmRSS", 0) / 1024)

    def peak_between(self, start: float, end: float) -> float | None:
        inside = [mb for t, mb in self.samples if start <= t <= end]
        return max(inside) if inside else None


def rss_mb(field: str = "VmRSS") -> float:
    return read_status(os.getpid()).get(field, 0) / 1024


# ---- the run -------------------------------------------------------------------------------

class Watch:
    """Progress events as they come: per operator the first start and last end, and VmRSS
    when the ASR first reaches each checkpoint."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.asr_rss: dict[float, float] = {}
        self.last: dict[str, tuple[float, float, float]] = {}   # (time, done, total)

    def __call__(self, event) -> None:
        stage, name = event.stage.value, event.operator
        if stage == "started":
            self.started.setdefault(name, event.time)
        elif stage == "done":
            self.done[name] = event.time
        elif stage == "progress":
            self.last[name] = (event.time, event.done, event.total)
        if name == "asr" and stage == "progress" and event.total:
            for mark in CHECKPOINTS:
                if event.done / event.total >= mark and mark not in self.asr_rss:
                    self.asr_rss[mark] = rss_mb()


async def run_meeting(path: Path, settings: list[str], summary: bool, timeout: float) -> dict:
    from evals.meeting import meeting_deployment
    from topology.meeting import meeting_info, transcribe_meeting
    opened = time.perf_counter()
    async with meeting_deployment(settings) as dep:
        startup_s, idle_mb = time.perf_counter() - opened, rss_mb()
        sampler, watch = RssSampler(), Watch()
        sampler.start()
        submitted, t0, load = time.time(), time.perf_counter(), os.getloadavg()[0]
        minutes, _ = await transcribe_meeting(
            dep.bus, dep.blobs, path, meeting_info(summarize=summary, index=False),
            timeout=timeout, on_progress=watch)
        wall, finished = time.perf_counter() - t0, time.time()
        sampler.stopped.set()
        sampler.join()
    if 1.0 not in watch.asr_rss and "asr" in watch.done:   # its last progress event was lost
        before = [mb for t, mb in sampler.samples if t <= watch.done["asr"]]
        watch.asr_rss.update({1.0: before[-1]} if before else {})
    return {"startup_s": startup_s, "idle_mb": idle_mb, "wall_s": wall, "watch": watch,
            "sampler": sampler, "submitted": submitted, "finished": finished,
            "hwm_mb": rss_mb("VmHWM"), "minutes": minutes,
            "load": (load, os.getloadavg()[0])}


# ---- report --------------------------------------------------------------------------------

def stage_rows(run: dict) -> list[str]:
    """One row per operator that reported: its wall time, when, and the most RSS meanwhile.
    A stage whose 'done' never came (the minutes ended the watch) ends at the minutes."""
    watch, sampler, t0 = run["watch"], run["sampler"], run["submitted"]
    lines = ["| stage | starts at s | wall s | share | max VmRSS MiB meanwhile |",
             "|---|---:|---:|---:|---:|"]
    for name, start in sorted(watch.started.items(), key=lambda kv: kv[1]):
        end = watch.done.get(name, run["finished"])
        peak = sampler.peak_between(start, end)
        lines.append(f"| {name} | {start - t0:.1f} | {end - start:.1f} | "
                     f"{100 * (end - start) / run['wall_s']:.0f} % | "
                     f"{f'{peak:.0f}' if peak else '–'} |")
    return lines


def quarter_medians(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    """Median VmRSS in each quarter of [start, end]: a trend shows through the allocator's
    noise, which single readings do not."""
    span, out = (end - start) / 4, []
    for q in range(4):
        lo, hi = start + q * span, start + (q + 1) * span
        inside = [mb for t, mb in samples if lo <= t < hi or (q == 3 and t == end)]
        out += [statistics.median(inside)] if inside else []
    return out


def _trend(run: dict, stage: str) -> str:
    watch = run["watch"]
    if stage not in watch.started or stage not in watch.done:
        return f"{stage}: no reading"
    q = quarter_medians(run["sampler"].samples, watch.started[stage], watch.done[stage])
    if len(q) < 4:
        return f"{stage}: too short to sample"
    # memory that grows with the audio rises quarter after quarter; the first quarter still
    # warms up (arenas, buffers), and noise alone rarely rises twice in a row by that much
    growth = (q[3] - q[1]) / q[1]
    grows = q[1] < q[2] < q[3] and growth > RISE
    return (f"{stage} {', '.join(f'{mb:.0f}' for mb in q)} MiB: "
            + (f"GROWS, every quarter, {100 * growth:+.1f} % from the 2nd to the 4th" if grows
               else f"bounded, no steady rise ({100 * growth:+.1f} % from the 2nd quarter to "
                    "the 4th)"))


def memory_lines(run: dict) -> list[str]:
    rss = run["watch"].asr_rss
    marks = ", ".join(f"{100 * m:.0f} %: {rss[m]:.0f} MiB" for m in CHECKPOINTS if m in rss)
    peak = max((mb for _, mb in run["sampler"].samples), default=0.0)
    return [f"- VmRSS idle after startup {run['idle_mb']:.0f} MiB; at the ASR's progress "
            f"{marks}",
            f"- median VmRSS in each quarter of a stage's wall time, {_trend(run, 'asr')}; "
            f"{_trend(run, 'diarize')}",
            f"- peak sampled VmRSS {peak:.0f} MiB; VmHWM at the end {run['hwm_mb']:.0f} MiB "
            f"(the process's own peak, startup included); nats-server child peak "
            f"{run['sampler'].nats_peak_mb:.0f} MiB"]


def summary_lines(run: dict, audio_s: float) -> list[str]:
    watch = run["watch"]
    if "summarize" not in watch.started or not run["minutes"].summary:
        return []
    start, end = watch.started["summarize"], watch.done.get("summarize", run["finished"])
    words = sum(len(s.text.split()) for s in run["minutes"].transcript.segments)
    # its progress counts sections mapped out of sections + 1 (the reduce)
    mapped_at, _, total = watch.last.get("summarize", (end, 0.0, 1.0))
    return [f"- summary: **{end - start:.0f} s** for {words} transcript words "
            f"({(end - start) / (audio_s / 60):.1f} s per audio minute): {total - 1:.0f} "
            f"section(s) mapped in {mapped_at - start:.0f} s (loading the LLM on first use "
            f"included), then {end - mapped_at:.0f} s to merge, ground and reduce"]


def render(run: dict, args, audio_s: float, command: str) -> str:
    wall, transcript = run["wall_s"], run["minutes"].transcript
    rtf = wall / audio_s
    ok = rtf <= TARGET_RTF
    speakers = len({s.speaker for s in transcript.segments})
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return "\n".join([
        f"## Meeting transcriber: {audio_s / 60:.0f} min meeting, {args.asr_model}, "
        f"{'with' if not args.no_summary else 'no'} summary", "",
        f"Date: {date}  ", f"Command: `{command}`  ",
        f"Meeting: {len(dataset_clips())} AMI clips (ami_debug + ES2004a mixture) looped to "
        f"{audio_s / 60:.1f} min, 16 kHz wav; topology/meeting_transcriber.yaml in one process "
        f"(asr {args.asr_model}"
        f"{'' if args.no_summary else f', summarize {args.summary_model}'}"
        f"{''.join(', ' + s for s in args.set)}; not indexed); "
        f"machine: 2 cores shared with other work (1-min load average {run['load'][0]:.1f} at "
        f"submit, {run['load'][1]:.1f} at the end). Startup (model loads) is not in the wall "
        "time.", "",
        f"- end to end, submit to minutes: **{wall:.0f} s**, RTF **{rtf:.3f}** "
        f"({'PASS' if ok else 'FAIL'}: target an hour in ≤ 10 min, RTF ≤ {TARGET_RTF:.3f})",
        f"- startup {run['startup_s']:.1f} s; {len(transcript.segments)} segments, "
        f"{sum(len(s.words) for s in transcript.segments)} words, {speakers} speaker labels",
        *summary_lines(run, audio_s), *memory_lines(run), "", *stage_rows(run)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--asr-model", default="whisper-base", help="or whisper-tiny.en")
    ap.add_argument("--no-summary", action="store_true")
    ap.add_argument("--summary-model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--timeout", type=float, default=4 * 3600.0, help="seconds for the job")
    ap.add_argument("--set", action="append", default=[], metavar="OP.KEY=VALUE",
                    help="another config override, e.g. summarize.threads=1 (repeatable)")
    ap.add_argument("--out", type=Path, help="write a block into this RESULTS.md")
    args = ap.parse_args(argv)
    settings = [f"asr.model={args.asr_model}", f"summarize.model={args.summary_model}", *args.set]
    with tempfile.TemporaryDirectory(prefix="pw-meeting-load-") as tmp:
        path = Path(tmp) / "meeting.wav"
        audio_s = write_wav(path, meeting_chunks(dataset_clips(), args.minutes * 60))
        run = asyncio.run(run_meeting(path, settings, not args.no_summary, args.timeout))
    command = "python loadtests/meeting.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = render(run, args, audio_s, command.strip())
    print(text)
    if args.out:
        name = "-".join([f"meeting-{args.asr_model}-{args.minutes:g}min",
                         *([] if args.no_summary else ["summary"]), *args.set])
        replace_block(args.out, name, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
