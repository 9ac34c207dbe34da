"""Transcription load figures: real-time factor, peak memory, bus overhead -> loadtests/RESULTS.md.

    python loadtests/transcribe.py [--long-s 150] [--repeats 3] [--clips N] [--memory-minutes 30]
                                   [--bus-rounds 3] [--skip-rtf] [--skip-memory] [--skip-bus]
                                   [--out PATH]

RTF: one in-process deployment of topology/transcribe.yaml (whisper-tiny.en, embedded
nats-server) transcribes a ~2.5 min 16 kHz wav made of manifest clips, `--repeats` times,
alternating with faster-whisper alone (same model and settings as the operator's engine) on
the same file; then every manifest clip once, for the per-clip RTF median.
Memory: see loadtests/memory.py; inputs are one clip, the 2.5 min wav, and a `--memory-minutes`
ogg/opus made by looping the clips. Bus: loadtests/bus_overhead.py, its table parsed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests import memory  # noqa: E402
from loadtests.results import replace_block  # noqa: E402

MANIFEST = ROOT.parent / "shared/data/asr/manifest.jsonl"
RATE = 16_000
GAP_S = 0.3
MODEL = "whisper-tiny.en"
RTF_TARGET, HOP_P50_MS, HOP_P99_MS, RATE_TARGET = 0.15, 1.0, 5.0, 10_000


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(q * len(ordered))) - 1))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---- audio inputs -------------------------------------------------------------------------

def manifest_entries(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def decode_16k(path: Path) -> np.ndarray:
    """Any file to 16 kHz mono int16."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.int16)


def looped_pcm(clips: list[np.ndarray], seconds: float):
    """Clips in order, GAP_S of silence after each, looped until `seconds`; int16 chunks."""
    left = int(seconds * RATE)
    gap = np.zeros(int(GAP_S * RATE), np.int16)
    while left > 0:
        for clip in clips:
            piece = np.concatenate([clip, gap])[:left]
            left -= len(piece)
            yield piece
            if left <= 0:
                return


def write_wav(path: Path, chunks) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(RATE)
        for chunk in chunks:
            out.writeframes(chunk.tobytes())
    return path


def write_opus(path: Path, chunks, bitrate: int = 32_000) -> Path:
    """Ogg/Opus at 16 kHz mono (small: 30 minutes is about 7 MB)."""
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=RATE, layout="mono")
        stream.bit_rate = bitrate
        for chunk in chunks:
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration / av.time_base)


# ---- real-time factor ---------------------------------------------------------------------

@contextlib.asynccontextmanager
async def deployment(model: str, store: Path):
    from topology.app import Deployment
    from topology.cli import TRANSCRIBE_YAML
    from topology.spec import load, override
    topo = override(load(TRANSCRIBE_YAML), [f"asr.model={model}"])
    dep = await Deployment.open(topo, None, "bench", store_dir=store)
    try:
        await dep.start_operators()
        yield dep
    finally:
        await dep.close()


async def pipeline_seconds(dep, path: Path) -> tuple[float, int]:
    """Wall time of one job through the topology, and the number of words it returned."""
    from topology.jobs import transcribe_file
    started = time.perf_counter()
    transcript = await transcribe_file(dep.bus, dep.blobs, path, timeout=1800)
    return time.perf_counter() - started, sum(len(s.words) for s in transcript.segments)


def engine_model(model: str):
    from faster_whisper import WhisperModel

    from operators.asr.operator import AsrConfig
    from operators.models import model_path
    config = AsrConfig(model=model)
    whisper = WhisperModel(str(model_path(model)), device="cpu", compute_type="int8",
                           cpu_threads=config.cpu_threads)
    return whisper, config


def engine_seconds(whisper, config, path: Path) -> tuple[float, int]:
    """faster-whisper alone on the whole file (read included), the operator's settings."""
    from faster_whisper import decode_audio
    started = time.perf_counter()
    segments, _ = whisper.transcribe(decode_audio(str(path), sampling_rate=RATE), language="en",
                                     beam_size=config.beam_size, word_timestamps=True,
                                     vad_filter=False, condition_on_previous_text=False)
    words = sum(len(s.words or []) for s in segments)
    return time.perf_counter() - started, words


async def rtf_figures(long_wav: Path, manifest: Path, repeats: int, clips: int | None,
                      store: Path) -> dict:
    whisper, config = engine_model(MODEL)
    audio_s = audio_seconds(long_wav)
    runs: dict[str, list] = {"pipeline": [], "engine": []}
    async with deployment(MODEL, store) as dep:
        await pipeline_seconds(dep, long_wav)                       # warm-up, not counted
        for i in range(repeats):
            runs["pipeline"].append(await pipeline_seconds(dep, long_wav))
            runs["engine"].append(await asyncio.to_thread(engine_seconds, whisper, config, long_wav))
            print(f"  run {i + 1}: pipeline {runs['pipeline'][-1][0]:.1f} s, "
                  f"engine {runs['engine'][-1][0]:.1f} s for {audio_s:.1f} s", flush=True)
        per_clip = [(await pipeline_seconds(dep, manifest.parent / e["audio"]))[0] / e["duration_s"]
                    for e in manifest_entries(manifest)[:clips]]
    return rtf_summary(runs, audio_s, per_clip)


def rtf_summary(runs: dict[str, list], audio_s: float, per_clip: list[float]) -> dict:
    pipe = statistics.median(s for s, _ in runs["pipeline"]) / audio_s
    engine = statistics.median(s for s, _ in runs["engine"]) / audio_s
    return {"audio_s": round(audio_s, 1), "repeats": len(runs["pipeline"]),
            "pipeline_rtf": round(pipe, 4), "engine_rtf": round(engine, 4),
            "ratio": round(pipe / engine, 3),
            "pipeline_words": [w for _, w in runs["pipeline"]],
            "engine_words": [w for _, w in runs["engine"]],
            "pipeline_s": [round(s, 2) for s, _ in runs["pipeline"]],
            "engine_s": [round(s, 2) for s, _ in runs["engine"]],
            "clips": len(per_clip), "clip_rtf_p50": round(statistics.median(per_clip), 4),
            "clip_rtf_p90": round(percentile(per_clip, 0.9), 4),
            "clip_rtf_min": round(min(per_clip), 4), "clip_rtf_max": round(max(per_clip), 4)}


# ---- bus overhead -------------------------------------------------------------------------

HOP = re.compile(r"p50 (-?[\d.]+) ms, p99 (-?[\d.]+) ms")


def parse_bus(text: str) -> dict:
    """bus_overhead.py's printout -> {"rows": {path: (p50, p99, rate)}, "hop_p50", "hop_p99"}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"-?[\d.]+", cells[1]):
            rows[cells[0]] = (float(cells[1]), float(cells[2]), float(cells[3].replace(",", "")))
    hop = HOP.search(text.split("Per-hop overhead", 1)[-1]) if "Per-hop overhead" in text else None
    if hop is None or not rows:
        raise ValueError(f"not bus_overhead.py output: {text[-500:]!r}")
    return {"rows": rows, "hop_p50": float(hop.group(1)), "hop_p99": float(hop.group(2))}


def run_bus(rounds: int) -> tuple[str, dict]:
    """bus_overhead.py as it is; its table, printed and parsed."""
    done = subprocess.run([sys.executable, str(ROOT / "loadtests/bus_overhead.py"), "--rounds",
                           str(rounds)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"bus_overhead.py failed: {_failure_line(done.stderr)}")
    return done.stdout.strip(), parse_bus(done.stdout)


def _failure_line(stderr: str) -> str:
    """The failing measurement and the exception, from a traceback."""
    lines = [line.strip() for line in stderr.strip().splitlines()]
    where = [line for line in lines if line.startswith("rows.append(await measure(")]
    return " / ".join(where[-1:] + lines[-1:])


def bus_targets(bus: dict) -> list[str]:
    rate = bus["rows"].get("patchwire runner (realtime)", (0, 0, 0.0))[2]
    p50, p99 = bus["hop_p50"], bus["hop_p99"]
    return [f"- per-hop p50 {p50:.3f} ms ≤ {HOP_P50_MS:g} ms: {verdict(p50 <= HOP_P50_MS)}",
            f"- per-hop p99 {p99:.3f} ms ≤ {HOP_P99_MS:g} ms: {verdict(p99 <= HOP_P99_MS)}",
            f"- one hop, one operator process (runner realtime) {rate:,.0f} msg/s ≥ {RATE_TARGET:,}: "
            f"{verdict(rate >= RATE_TARGET)}"]


# ---- report -------------------------------------------------------------------------------

def rtf_section(r: dict) -> list[str]:
    return [
        "| what | audio s | runs | seconds per run | RTF (median) |", "|---|---:|---:|---|---:|",
        f"| pipeline: `transcribe_file` through decode → vad → asr | {r['audio_s']} | {r['repeats']} | "
        f"{', '.join(map(str, r['pipeline_s']))} | {r['pipeline_rtf']} |",
        f"| faster-whisper alone, same model and settings | {r['audio_s']} | {r['repeats']} | "
        f"{', '.join(map(str, r['engine_s']))} | {r['engine_rtf']} |",
        "", f"- pipeline / engine: **{r['ratio']}** (same run; words out: pipeline "
        f"{r['pipeline_words'][0]}, engine {r['engine_words'][0]})",
        f"- per clip over the manifest ({r['clips']} clips, 1.5–12 s each, one job each): RTF median "
        f"{r['clip_rtf_p50']}, p90 {r['clip_rtf_p90']}, min {r['clip_rtf_min']}, max {r['clip_rtf_max']}",
        f"- target RTF ≤ {RTF_TARGET} with {MODEL} (long file, pipeline): "
        f"**{verdict(r['pipeline_rtf'] <= RTF_TARGET)}**; per-clip median: "
        f"{verdict(r['clip_rtf_p50'] <= RTF_TARGET)}"]


def render(sections: dict[str, list[str]], command: str, date: str) -> str:
    head = ["## Transcription and bus", "", f"Date: {date}  ", f"Command: `{command}`  ",
            "Machine: 2 CPU cores, shared and noisy (other jobs running); figures are medians "
            "and ratios within this one run, not absolutes to compare across machines.", ""]
    body = []
    for title, lines in sections.items():
        body += [f"### {title}", "", *lines, ""]
    return "\n".join(head + body)


RTF_ABOUT = ("Real-time factor (processing seconds / audio seconds) of {model} through the whole "
             "topology in one process (`transcribe_file` → object store → decode → Silero VAD → "
             "faster-whisper int8, beam 5, word timestamps, 2 threads), on a {audio_s:.0f} s wav "
             "of manifest clips joined with {gap} s pauses; one warm-up job first. The engine row "
             "runs faster-whisper directly on the same file, alternating with the pipeline runs.")
BUS_ABOUT = ("loadtests/bus_overhead.py: embedded nats-server on loopback; round trips one "
             "message at a time (p50/p99) and throughput with 500 in flight, medians of rounds. "
             "Per-hop overhead = runner realtime minus direct (0 hops).")


def build_inputs(manifest: Path, tmp: Path, long_s: float, memory_minutes: float) -> dict[str, Path]:
    entries = manifest_entries(manifest)
    clips = [decode_16k(manifest.parent / e["audio"]) for e in entries]
    inputs = {"clip": manifest.parent / entries[0]["audio"],
              "long": write_wav(tmp / f"joined-{long_s:.0f}s.wav", looped_pcm(clips, long_s))}
    if memory_minutes:
        inputs["huge"] = write_opus(tmp / f"looped-{memory_minutes:g}min.ogg",
                                    looped_pcm(clips, memory_minutes * 60))
    return inputs


def _label(kind: str, path: Path) -> str:
    seconds = audio_seconds(path)
    return f"{seconds / 60:.1f} min ogg/opus" if kind == "huge" else f"{seconds:.1f} s wav"


def memory_figures(inputs: dict[str, Path], tmp: Path, idle_s: float) -> tuple[list[dict], list[str]]:
    jobs = [(_label(kind, path), path) for kind, path in inputs.items()]
    for label, path in jobs:
        print(f"  memory input {label}: {path.stat().st_size / 1e6:.1f} MB", flush=True)
    return memory.measure(jobs, tmp, idle_s), [label for label, _ in jobs]


def rtf_lines(args, inputs: dict[str, Path], tmp: Path) -> list[str]:
    r = asyncio.run(rtf_figures(inputs["long"], args.manifest, args.repeats, args.clips, tmp / "nats"))
    return [RTF_ABOUT.format(model=MODEL, audio_s=r["audio_s"], gap=GAP_S), "", *rtf_section(r)]


def memory_lines(args, inputs: dict[str, Path], tmp: Path) -> list[str]:
    rows, labels = memory_figures(inputs, tmp, args.idle_s)
    return [memory.ABOUT, "", *memory.section(rows, labels)]


def bus_lines(args, inputs: dict[str, Path], tmp: Path) -> list[str]:
    text, bus = run_bus(args.bus_rounds)
    return [BUS_ABOUT, "", f"`python loadtests/bus_overhead.py --rounds {args.bus_rounds}`:", "",
            text, "", *bus_targets(bus)]


SECTIONS = [("Transcription real-time factor", "skip_rtf", rtf_lines),
            ("Peak memory of `patchwire up`", "skip_memory", memory_lines),
            ("Bus overhead", "skip_bus", bus_lines)]


def run_all(args, tmp: Path, report) -> bool:
    """Each section in turn, reported as it completes; an error is written into its section."""
    inputs = build_inputs(args.manifest, tmp, args.long_s, 0 if args.skip_memory else args.memory_minutes)
    sections: dict[str, list[str]] = {}
    ok = True
    for title, skip, lines in SECTIONS:
        if getattr(args, skip):
            continue
        print(f"{title} ...", flush=True)
        try:
            sections[title] = lines(args, inputs, tmp)
        except Exception as e:  # noqa: BLE001 - a benchmark reports what broke and goes on
            sections[title], ok = [f"**error**: `{type(e).__name__}: {e}`"], False
        report(sections)
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--long-s", type=float, default=150.0, help="length of the joined wav for RTF")
    ap.add_argument("--repeats", type=int, default=3, help="pipeline and engine runs on the long wav")
    ap.add_argument("--clips", type=int, default=None, help="per-clip RTF on the first N clips only")
    ap.add_argument("--memory-minutes", type=float, default=30.0, help="the long memory input")
    ap.add_argument("--idle-s", type=float, default=3.0, help="idle sampling after startup and each job")
    ap.add_argument("--bus-rounds", type=int, default=3, help="bus_overhead.py rounds")
    ap.add_argument("--skip-rtf", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-bus", action="store_true")
    ap.add_argument("--out", type=Path, help="write the markdown report here (e.g. loadtests/RESULTS.md)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    command = "python loadtests/transcribe.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    def report(sections: dict[str, list[str]]) -> None:
        date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        text = render(sections, command.strip(), date)
        text += f"\nWhole run: {time.perf_counter() - started:.0f} s.\n"
        if args.out:
            replace_block(args.out, "transcription", text)
        report.text = text

    with tempfile.TemporaryDirectory(prefix="pw-load-") as tmp:
        ok = run_all(args, Path(tmp), report)
    print(getattr(report, "text", "nothing run"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
