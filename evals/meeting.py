"""Meeting transcriber quality, part by part: `patchwire eval meeting [--parts ...]`.

    python -m evals.meeting [--parts wer,sawer,der,summary] [--model whisper-base]
                            [--limit 3] [--out evals/RESULTS.md]

- wer: evals.asr for one model (default whisper-base; target ≤ 8 %) on the ASR manifest.
- sawer: speaker-attributed WER (evals/cpwer.py) of the real meeting topology, run in this
  process, on the 60 s, 4-speaker AMI ES2004a mixture; beside it the WER with speakers
  ignored and with the reference turns' speakers, so the cost of attribution shows.
- der: evals.diarization's DER on ami_debug development + test (0.25 s collar and none;
  reference speech, Silero VAD at its default and at the meeting's threshold), and the
  meeting topology's own output (its segments as speaker turns) on the same clips.
- summary: evals.summary as it is (QMSum; slow, ~8 min a meeting).
Each part writes its own block into --out, with the command that reproduces it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

from evals.cpwer import ami_reference, by_speaker, cpwer, speaker_free
from evals.der import DerResult, der

ROOT = Path(__file__).resolve().parents[1]
DIARIZATION = ROOT.parent / "shared/data/diarization"
MIXTURE = DIARIZATION / "ami_mixture_es2004a"
PARTS = ("wer", "sawer", "der", "summary")
MODEL = "whisper-base"
COLLAR = 0.25
MEETING_VAD = 0.25       # topology/meeting_transcriber.yaml: vad.threshold


@contextlib.asynccontextmanager
async def meeting_deployment(settings: list[str]):
    """topology/meeting_transcriber.yaml in this process on an embedded nats-server, every
    operator started; the QA store is a temp file, never the user's."""
    from topology.app import Deployment
    from topology.cli_meeting import MEETING_YAML
    from topology.spec import load, override
    topo = override(load(MEETING_YAML), settings)
    saved = os.environ.get("PATCHWIRE_STORE")
    with tempfile.TemporaryDirectory(prefix="pw-meeting-eval-") as tmp:
        os.environ["PATCHWIRE_STORE"] = str(Path(tmp) / "qa.sqlite")
        dep = await Deployment.open(topo, None, "eval", store_dir=Path(tmp))
        try:
            await dep.start_operators()
            yield dep
        finally:
            await dep.close()
            if saved is None:
                del os.environ["PATCHWIRE_STORE"]
            else:
                os.environ["PATCHWIRE_STORE"] = saved


async def _transcribe_all(paths: list[Path], model: str, timeout: float) -> list:
    from topology.meeting import meeting_info, transcribe_meeting
    info = meeting_info(summarize=False, index=False)
    async with meeting_deployment([f"asr.model={model}"]) as dep:
        return [(await transcribe_meeting(dep.bus, dep.blobs, p, info, timeout=timeout))[0]
                for p in paths]


def transcribe_all(paths: list[Path], model: str, timeout: float = 900.0) -> list:
    """The meeting minutes (no summary, not indexed) of each recording, in order."""
    return asyncio.run(_transcribe_all(paths, model, timeout))


def hyp_turns(minutes) -> list:
    """The pipeline's segments as speaker turns (time where it wrote no words is silence)."""
    from operators.diarize import Turn
    return [Turn(s.start, s.end, s.speaker) for s in minutes.transcript.segments if s.end > s.start]


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def _header(title: str, command: str) -> list[str]:
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return [f"## {title}", "", f"Date: {date}  ", f"Command: `{command}`  "]


# --- wer ---------------------------------------------------------------------------------

def part_wer(model: str, command: str) -> tuple[str, bool]:
    from evals.asr import MANIFEST, _score_model, model_section, summary_table, verdict
    report = asyncio.run(_score_model(model, MANIFEST, None, 600.0))
    ok = not verdict(model, report["total"]["wer"]).startswith("FAIL")
    lines = _header("Meeting transcriber: ASR word error rate", command) + [
        f"Pipeline: evals.asr (topology/transcribe.yaml, every utterance of `{MANIFEST}`), "
        "without its engine-alone comparison (see the `asr` block). The meeting topology "
        "differs only in its VAD threshold (0.25) and in passing the audio on.", "",
        *summary_table({model: report}, {}), "", *model_section(model, report)]
    return "\n".join(lines), ok


# --- sawer -------------------------------------------------------------------------------

SAWER_ABOUT = [
    "References: `text/mixture.{A,B,C,D}.words_joined.txt`, with AMI's spelled acronyms "
    "joined (L_C_D_ → LCD) and the single-letter stubs of cut-off words dropped (b, h, s; "
    "the two-letter stub \"di\" stays), then evals/normalize.py on both sides (lower case, "
    "punctuation, numbers to words, contractions; hesitations mm, hmm, uh, um dropped: "
    "\"Mm-hmm\" and C's whole \"Mm.\" vanish).  ",
    "Rows: cpWER with the pipeline's speakers; cpWER with `mixture.rttm`'s turns laid over "
    "the same words by the pipeline's aligner (operators/diarize/align.py: perfect turns, "
    "so what is left is ASR and word-timing error; a word inside two overlapping turns "
    "goes to one); and speakers ignored: each segment given whichever reference speaker "
    "lowers the total (evals/cpwer.py `speaker_free`, a local search: an upper bound). "
    "cpWER minus the last row is what attribution costs."]


def sawer_scores(refs: dict[str, str], segments: list, turns: list) -> dict:
    """The three rows of the table: the pipeline's speakers, the reference turns' speakers
    over the same words, and speakers ignored."""
    from operators.diarize.align import attribute
    oracle_segments = attribute(segments, turns)
    oracle = cpwer(refs, by_speaker(oracle_segments))
    own = cpwer(refs, by_speaker(segments))
    # two starting points for the search: the finer pieces with the reference's labels,
    # the pipeline's own segments with its labels; the lower total is kept
    free = min(speaker_free(refs, [(oracle.mapping.get(s.speaker, ""), s.text)
                                   for s in oracle_segments]),
               speaker_free(refs, [(own.mapping.get(s.speaker, ""), s.text) for s in segments]),
               key=lambda r: r.errors)
    return {"pipeline speakers (cpWER)": own,
            "reference turns' speakers over the same words (cpWER)": oracle,
            "speakers ignored (best speaker per segment)": free}


def part_sawer(model: str, command: str) -> str:
    from operators.diarize import read_rttm
    minutes = transcribe_all([MIXTURE / "mixture.wav"], model)[0]
    refs = {s: ami_reference((MIXTURE / f"text/mixture.{s}.words_joined.txt").read_text())
            for s in "ABCD"}
    segments, turns = minutes.transcript.segments, read_rttm(MIXTURE / "mixture.rttm")["mixture"]
    scores = sawer_scores(refs, segments, turns)
    own = scores["pipeline speakers (cpWER)"]
    diar = [der(turns, hyp_turns(minutes), [(0.0, 60.0)], collar=c) for c in (COLLAR, 0.0)]
    return "\n".join(_header(
        "Meeting transcriber: speaker-attributed WER (AMI ES2004a, 60 s, 4 speakers)", command) + [
        f"Pipeline: topology/meeting_transcriber.yaml in this process ({model}, summarize and "
        "index off), `transcribe_meeting` on `ami_mixture_es2004a/mixture.wav`.  ",
        *SAWER_ABOUT, "",
        "| speakers | reference words | S | D | I | WER |", "|---|---:|---:|---:|---:|---:|",
        *[f"| {name} | {r.words} | {r.substitutions} | {r.deletions} | {r.insertions} | "
          f"**{_pct(r.wer)}** |" for name, r in scores.items()], "",
        f"Speakers: 4 in the reference, {len(by_speaker(segments))} found; mapping "
        f"(pipeline → reference) {own.mapping}. The same output as diarization: DER "
        f"{_pct(diar[0].der)} with a {COLLAR} s collar, {_pct(diar[1].der)} without "
        f"({_components(diar[1])}, no collar).", "", "Pipeline transcript:", "",
        *[f"- {s.start:.1f}–{s.end:.1f} s {s.speaker}: {s.text.strip()}" for s in segments]])


def _components(r: DerResult) -> str:
    share = (lambda x: 100 * x / r.total) if r.total else (lambda x: 0.0)
    return (f"miss {share(r.miss):.1f} %, false alarm {share(r.false_alarm):.1f} %, "
            f"confusion {share(r.confusion):.1f} %")


# --- der ---------------------------------------------------------------------------------

def part_der(model: str, command: str) -> str:
    from evals import diarization as dz
    from operators.diarize import Diarizer, DiarizeConfig
    diarizer, runs, own = Diarizer(DiarizeConfig()), [], {}
    clips = {split: dz.load_split(split) for split in ("development", "test")}
    for split, chosen in clips.items():
        speech = {"reference": lambda c: dz.union(c.reference),
                  "silero VAD (0.5)": lambda c: dz.vad_speech(c.pcm),
                  f"silero VAD ({MEETING_VAD}, the meeting's)": lambda c: _meeting_vad(c.pcm)}
        for kind, find in speech.items():
            cpu = time.process_time()
            spans = {c.name: find(c) for c in chosen}
            cpu = time.process_time() - cpu
            run = dz.score(diarizer, chosen, spans)
            run.speech, run.vad_cpu_s = kind, cpu if kind != "reference" else 0.0
            runs.append(run)
        own[split] = _pipeline_der(chosen, model)
    lines = _header("Meeting transcriber: diarization error rate (ami_debug)", command) + [
        "Diarizer: CAM++ + clustering at its defaults, as the meeting topology runs it, fed "
        "the speech regions named; scored as evals.diarization does (overlap scored, "
        "components in % of reference speech; the turns < 1 s rows count only inside short "
        "reference turns). CPU s are the diarizer's alone.", "", *dz.table(runs), "",
        f"The meeting topology end to end ({model}, `transcribe_meeting` per clip), its "
        "segments taken as speaker turns, as its RTTM output writes them: speech without "
        "ASR words is missed, pauses inside a segment are false alarm.", "",
        "| split | collar | DER % | miss % | false alarm % | confusion % | miss in overlap % "
        "| speakers ref→found |", "|---|---|---|---|---|---|---|---|"]
    for split, (scores, counts) in own.items():
        for name, result in zip((f"{COLLAR} s", "none"), scores):
            lines.append(f"| {split} | {name} | {dz.components(result)} | {counts} |")
    return "\n".join(lines)


def _meeting_vad(pcm) -> list[tuple[float, float]]:
    from operators.vad.operator import VadConfig
    from operators.vad.silero import SileroVad
    stream = SileroVad(VadConfig(threshold=MEETING_VAD)).stream()
    return [(s.start, s.end) for s in stream.feed(pcm) + stream.finish()]


def _pipeline_der(clips: list, model: str) -> tuple[tuple[DerResult, DerResult], str]:
    from evals.diarization import AMI
    minutes = transcribe_all([AMI / f"{c.name}.wav" for c in clips], model)
    collar = none = DerResult()
    counts = []
    for clip, m in zip(clips, minutes):
        hyp = hyp_turns(m)
        collar += der(clip.reference, hyp, clip.uem, collar=COLLAR)
        none += der(clip.reference, hyp, clip.uem)
        counts.append(f"{len({t.speaker for t in clip.reference})}→{len({t.speaker for t in hyp})}")
    return (collar, none), " ".join(counts)


# --- entry point -------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.meeting", description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="wer,sawer,der", help=f"comma-separated: {', '.join(PARTS)}")
    ap.add_argument("--model", default=MODEL, help=f"ASR model (default {MODEL})")
    ap.add_argument("--limit", type=int, default=3, help="summary: QMSum meetings (3)")
    ap.add_argument("--out", type=Path, help="write each part's block into this RESULTS.md")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if set(parts) - set(PARTS):
        ap.error(f"unknown part(s) {sorted(set(parts) - set(PARTS))}; known: {', '.join(PARTS)}")
    failed = False
    for part in parts:
        command = _command(part, args)
        if part == "summary":
            from evals.summary import main as summary
            failed |= summary(["--limit", str(args.limit)] + _out(args)) != 0
            continue
        if part == "wer":
            text, ok = part_wer(args.model, command)
            failed |= not ok
        else:
            text = (part_sawer if part == "sawer" else part_der)(args.model, command)
        print(text, flush=True)
        if args.out:
            from loadtests.results import replace_block
            replace_block(args.out, f"meeting-{part}", text)
    return 1 if failed else 0


def _out(args) -> list[str]:
    return ["--out", str(args.out)] if args.out else []


def _command(part: str, args) -> str:
    model = f" --model {args.model}" if args.model != MODEL else ""
    out = f" --out {args.out}" if args.out else ""
    return f"patchwire eval meeting --parts {part}{model}{out}"


if __name__ == "__main__":
    sys.exit(main())
