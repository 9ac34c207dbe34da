"""ASR quality through the real pipeline: WER of each model on the shared manifest.

    python -m evals.asr [--models whisper-tiny.en,whisper-base] [--limit N] [--manifest PATH]
                        [--no-baseline] [--json PATH] [--out PATH]

For each model, one deployment of topology/transcribe.yaml (embedded nats-server in a temp dir,
every operator in this process, `asr.model` overridden) transcribes every utterance with
`transcribe_file`, as `patchwire transcribe` would; evals.wer scores it. Then, for comparison,
the operator's engine alone on each whole clip (no VAD, no windows, no bus). Writes
evals/RESULTS.md and exits 1 when a model misses its WER target (from the issue).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Callable

from evals.wer import score_manifest
from loadtests.results import replace_block

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT.parent / "shared/data/asr/manifest.jsonl"
RESULTS = ROOT / "evals/RESULTS.md"
TARGETS = {"whisper-tiny.en": 0.12, "whisper-base": 0.08}  # total normalised WER, at most
DEFAULT_MODELS = ",".join(TARGETS)


def transcript_text(transcript) -> str:
    """The hypothesis scored: segment texts joined by spaces."""
    return " ".join(s.text.strip() for s in transcript.segments if s.text.strip())


def verdict(model: str, wer: float) -> str:
    target = TARGETS.get(model)
    if target is None:
        return "no target"
    return f"{'PASS' if wer <= target else 'FAIL'} (target ≤ {target * 100:.0f} %)"


def failed(reports: dict[str, dict]) -> list[str]:
    """Models whose total WER is over their target."""
    return [m for m, r in reports.items() if verdict(m, r["total"]["wer"]).startswith("FAIL")]


def worst(rows: list[dict], n: int = 5) -> list[dict]:
    """The n utterances with the highest WER (more errors first among equals), errors only."""
    wrong = [r for r in rows if r["errors"]]
    return sorted(wrong, key=lambda r: (r["wer"], r["errors"]), reverse=True)[:n]


async def _score_model(model: str, manifest: Path, limit: int | None, timeout: float) -> dict:
    """One deployment for the model; score_manifest runs in a thread and submits jobs here."""
    from topology.app import Deployment
    from topology.cli import TRANSCRIBE_YAML
    from topology.jobs import transcribe_file
    from topology.spec import load, override

    topo = override(load(TRANSCRIBE_YAML), [f"asr.model={model}"])
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="pw-eval-") as store:
        dep = await Deployment.open(topo, None, "eval", store_dir=Path(store))
        try:
            await dep.start_operators()

            def transcribe(path: Path) -> str:
                job = transcribe_file(dep.bus, dep.blobs, path, timeout=timeout)
                return transcript_text(asyncio.run_coroutine_threadsafe(job, loop).result())

            await asyncio.to_thread(transcribe, _first_audio(manifest))  # warm-up, not scored
            return await asyncio.to_thread(score_manifest, transcribe, manifest, limit)
        finally:
            await dep.close()


def engine_transcriber(model: str) -> Callable[[Path], str]:
    """The operator's own WhisperEngine on the whole clip: no VAD, no windows, no bus."""
    from faster_whisper import decode_audio

    from operators.asr.operator import AsrConfig
    from operators.asr.whisper import WhisperEngine
    engine = WhisperEngine(AsrConfig(model=model))
    engine.load()

    def transcribe(path: Path) -> str:
        segments = engine.transcribe(decode_audio(str(path), sampling_rate=16_000), "", "en")
        return " ".join(s.text.strip() for s in segments if s.text.strip())
    return transcribe


def pipeline_losses(report: dict, baseline: dict) -> list[tuple[dict, dict]]:
    """Utterances where the pipeline made more errors than the engine alone on the whole clip."""
    pairs = zip(report["utterances"], baseline["utterances"])
    return [(r, b) for r, b in pairs if r["audio"] == b["audio"] and r["errors"] > b["errors"]]


def _first_audio(manifest: Path) -> Path:
    first = next(line for line in manifest.read_text().splitlines() if line.strip())
    return manifest.parent / json.loads(first)["audio"]


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f} %"


def summary_table(reports: dict[str, dict], baselines: dict[str, dict]) -> list[str]:
    lines = ["| model | utterances | audio s | words | WER (normalised) | target | RTF | "
             "engine alone: WER | engine alone: RTF |", "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for model, r in reports.items():
        t, b = r["total"], baselines.get(model, {}).get("total")
        alone = f"{_pct(b['wer'])} | {b['rtf']}" if b else "– | –"
        lines.append(f"| {model} | {t['utterances']} | {t['audio_s']:.1f} | {t['words']} | "
                     f"{_pct(t['wer'])} | {verdict(model, t['wer'])} | {t['rtf']} | {alone} |")
    return lines


def model_section(model: str, report: dict) -> list[str]:
    lines = [f"## {model}", "", "| corpus | utterances | words | S | D | I | WER | RTF |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in [*report["corpora"].items(), ("**total**", report["total"])]:
        lines.append(f"| {name} | {t['utterances']} | {t['words']} | {t['substitutions']} | "
                     f"{t['deletions']} | {t['insertions']} | {_pct(t['wer'])} | {t['rtf']} |")
    lines += ["", "Worst 5 utterances (normalised text):", ""]
    for r in worst(report["utterances"]) or []:
        lines += [f"- `{r['audio']}`: {r['errors']} errors / {r['words']} words ({_pct(r['wer'])})",
                  f"  - ref: {r['ref_norm']}", f"  - hyp: {r['hyp_norm']}"]
    return lines + [""]


def losses_section(report: dict, baseline: dict | None) -> list[str]:
    if baseline is None:
        return []
    losses = pipeline_losses(report, baseline)
    lines = [f"Utterances where the pipeline made more errors than the engine alone: {len(losses)}", ""]
    for r, b in losses:
        lines += [f"- `{r['audio']}`: pipeline {r['errors']}, engine alone {b['errors']}",
                  f"  - pipeline: {r['hyp_norm']}", f"  - engine:   {b['hyp_norm']}"]
    return lines + [""]


def render(reports: dict[str, dict], baselines: dict[str, dict], command: str, date: str,
           manifest: Path, limit: int | None) -> str:
    scope = f"first {limit} utterances of" if limit else "every utterance of"
    lines = ["## ASR evaluation: WER through the transcribe topology", "",
             f"Date: {date}  ", f"Command: `{command}`  ", f"Manifest: {scope} `{manifest}`  ",
             "Pipeline: topology/transcribe.yaml (decode → Silero VAD → faster-whisper int8, "
             "beam 5, 2 CPU threads), one deployment per model, embedded nats-server, "
             "jobs sent with `transcribe_file`. One warm-up job per model is not scored.  ",
             "RTF: wall time per job (upload, decode, VAD, ASR, bus) / audio duration, summed "
             "over the manifest; machine: 2 cores, shared and noisy.  ",
             "Engine alone: the operator's WhisperEngine (same model and settings) on each whole "
             "clip, without VAD, windows or bus: what the pipeline's own steps add or lose.", "",
             *summary_table(reports, baselines), ""]
    for model, report in reports.items():
        lines += model_section(model, report) + losses_section(report, baselines.get(model))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.asr", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default {DEFAULT_MODELS})")
    ap.add_argument("--limit", type=int, help="only the first N utterances")
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--out", type=Path, default=RESULTS, help="markdown report (default evals/RESULTS.md)")
    ap.add_argument("--json", type=Path, help="also write the full reports as JSON")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per utterance")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the engine-alone comparison (faster-whisper on whole clips)")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    reports = {m: asyncio.run(_score_model(m, args.manifest, args.limit, args.timeout)) for m in models}
    baselines = {} if args.no_baseline else {
        m: score_manifest(engine_transcriber(m), args.manifest, args.limit) for m in models}
    command = "python -m evals.asr " + shlex.join(sys.argv[1:] if argv is None else argv)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = render(reports, baselines, command.strip(), date, args.manifest, args.limit)
    replace_block(args.out, "asr", text)   # other evals keep their blocks in the same file
    if args.json:
        args.json.write_text(json.dumps({"pipeline": reports, "engine_alone": baselines}, indent=2))
    print(text)
    for model, report in reports.items():
        print(f"{model}: WER {_pct(report['total']['wer'])} {verdict(model, report['total']['wer'])}")
    return 1 if failed(reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
