"""Diarization quality on ami_debug: DER of the CAM++ engine, with two kinds of speech regions.

    python -m evals.diarization [--out evals/RESULTS.md] [--tune] [--long-minutes N]

Speech regions come either from the reference (the union of its turns: what the clustering
alone gets wrong) or from our Silero VAD (operators/vad/silero.py, its default config: the
whole pipeline). DER is scored with a 0.25 s collar either side of each reference boundary
(md-eval -c 0.25) and without; overlap is scored in both. `--tune` grid-searches the merge
threshold on train + development; test is never used to choose anything. `--long-minutes`
streams the 60 s ES2004a mixture looped N times through 120 s chunks: the labels must stay
the same four speakers chunk after chunk, with flat memory.
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import shlex
import sys
import time
from pathlib import Path

import msgspec
import numpy as np

from evals.der import DerResult, der
from operators.diarize import Diarizer, DiarizeConfig, Turn, read_rttm, read_uem
from operators.audio_io import load_16k
from operators.diarize.embedder import SpeakerEmbedder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "diarization"
AMI = DATA / "ami_debug"
MIXTURE = DATA / "ami_mixture_es2004a"
RESULTS = ROOT / "evals" / "RESULTS.md"
SPLITS = ("train", "development", "test")
COLLAR = 0.25
SHORT_S = 1.0       # a reference turn shorter than this is a "short turn"
GRID = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.50)
MATCH_GRID = (0.35, 0.45, 0.50, 0.55, 0.60, 0.70)


class Clip(msgspec.Struct):
    name: str
    split: str
    pcm: np.ndarray
    reference: list[Turn]
    uem: list[tuple[float, float]]


def load_split(split: str) -> list[Clip]:
    refs, uems = read_rttm(AMI / f"debug.{split}.rttm"), read_uem(AMI / f"debug.{split}.uem")
    names = (AMI / f"debug.{split}.lst").read_text().split()
    return [Clip(n, split, load_16k(AMI / f"{n}.wav"), refs.get(n, []), uems[n]) for n in names]


def union(turns: list[Turn]) -> list[tuple[float, float]]:
    """Reference speech regions: the turns' union (overlapping turns become one span)."""
    spans: list[list[float]] = []
    for t in sorted(turns, key=lambda t: t.start):
        if spans and t.start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], t.end)
        else:
            spans.append([t.start, t.end])
    return [(a, b) for a, b in spans]


def vad_speech(pcm: np.ndarray) -> list[tuple[float, float]]:
    from operators.vad.silero import SileroVad
    stream = SileroVad().stream()
    spans = stream.feed(pcm) + stream.finish()
    return [(s.start, s.end) for s in spans]


class CachingEmbedder:
    """Wraps the embedder so a threshold grid embeds each clip's windows only once."""

    def __init__(self, inner: SpeakerEmbedder):
        self.inner, self.dim, self.min_window = inner, inner.dim, inner.min_window
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, pcm: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
        key = hashlib.sha1(pcm.tobytes() + repr(windows).encode()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.inner.embed(pcm, windows)
        return self._cache[key]


# --- scoring ---------------------------------------------------------------------------

class Run(msgspec.Struct):
    """One split with one kind of speech regions."""

    split: str
    speech: str
    collar: DerResult
    no_collar: DerResult
    short: DerResult                    # no collar, inside reference turns under SHORT_S
    speakers: list[tuple[int, int]]     # (reference, found) per clip
    audio_s: float
    cpu_s: float                        # diarization: windows, embeddings, clustering
    vad_cpu_s: float = 0.0


def score(diarizer: Diarizer, clips: list[Clip], speech: dict[str, list]) -> Run:
    collar = no_collar = short = DerResult()
    found, cpu = [], 0.0
    for clip in clips:
        start = time.process_time()
        hyp = diarizer.diarize(clip.pcm, speech[clip.name])
        cpu += time.process_time() - start
        collar += der(clip.reference, hyp, clip.uem, collar=COLLAR)
        no_collar += der(clip.reference, hyp, clip.uem)
        short += der(clip.reference, hyp, clip.uem, focus=[
            (t.start, t.end) for t in clip.reference if t.duration < SHORT_S])
        found.append((len({t.speaker for t in clip.reference}), len({t.speaker for t in hyp})))
    return Run(clips[0].split if clips else "", "", collar, no_collar, short, found,
               sum(len(c.pcm) for c in clips) / 16_000, cpu)


def components(r: DerResult) -> str:
    pct = lambda x: f"{100 * x / r.total:.1f}" if r.total else "-"   # noqa: E731
    return (f"{100 * r.der:.1f} | {pct(r.miss)} | {pct(r.false_alarm)} | {pct(r.confusion)} | "
            f"{pct(r.overlap_miss)}")


def table(runs: list[Run]) -> list[str]:
    lines = ["| split | speech regions | collar | DER % | miss % | false alarm % | confusion % "
             "| miss in overlap % | speakers ref→found | CPU s per audio s (+ VAD) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        counts = " ".join(f"{a}→{b}" for a, b in r.speakers)
        for name, result in ((f"{COLLAR} s", r.collar), ("none", r.no_collar),
                             (f"none, turns < {SHORT_S:g} s only", r.short)):
            lines.append(f"| {r.split} | {r.speech} | {name} | {components(result)} | {counts} "
                         f"| {r.cpu_s / r.audio_s:.3f} (+ {r.vad_cpu_s / r.audio_s:.3f}) |")
    return lines


# --- tuning, long meetings, report ---------------------------------------------------------

def tune(embedder: CachingEmbedder, clips: list[Clip]) -> dict[str, list[tuple]]:
    """DER with collar on the given clips (reference speech) over a grid: the merge threshold
    with the smallest cluster kept, each clip alone; then the cross-chunk match threshold,
    the clips end to end, one chunk each."""
    speech = {c.name: union(c.reference) for c in clips}
    merge, match = [], []
    for threshold in GRID:
        for min_windows in (1, 3, 5):
            config = DiarizeConfig(threshold=threshold, min_cluster_windows=min_windows)
            merge.append((threshold, min_windows,
                          score(Diarizer(config, embedder), clips, speech).collar.der))
    for threshold in MATCH_GRID:
        config = DiarizeConfig(match_threshold=threshold)
        match.append((threshold, concatenated(Diarizer(config, embedder), clips)[0].der))
    return {"merge": merge, "match": match}


def concatenated(diarizer: Diarizer, clips: list[Clip]) -> tuple[DerResult, DerResult, tuple]:
    """All clips end to end as one recording, one clip per chunk, scored with the AMI
    participant ids (several take part in more than one clip): a label that changes between
    chunks is confusion here. Returns (the concatenation's DER, the clips' own DER summed,
    (participants, speakers found))."""
    config = msgspec.structs.replace(diarizer.config, chunk_s=30.0)
    stream = Diarizer(config, diarizer.embedder).stream()
    reference, uem, hyp, own, offset = [], [], [], DerResult(), 0.0
    for clip in clips:
        spans = [(a + offset, b + offset) for a, b in union(clip.reference)]
        hyp += stream.feed(clip.pcm, spans)
        reference += [Turn(t.start + offset, t.end + offset, t.speaker) for t in clip.reference]
        uem += [(a + offset, b + offset) for a, b in clip.uem]
        own += der(clip.reference, diarizer.diarize(clip.pcm, union(clip.reference)), clip.uem,
                   collar=COLLAR)
        offset += len(clip.pcm) / 16_000
    hyp += stream.finish()
    speakers = (len({t.speaker for t in reference}), len({t.speaker for t in hyp}))
    return der(reference, hyp, uem, collar=COLLAR), own, speakers


def rss_mb() -> float:
    """Resident memory now (not the process's peak, which earlier stages set)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def long_meeting(diarizer: Diarizer, clips: list[Clip], minutes: float) -> dict:
    """The clips looped to `minutes`, fed 10 s at a time with reference speech, scored
    against the looped reference with participant ids: a label that drifts in a later loop
    is confusion. Resident memory after each loop shows whether it grows with length."""
    stream = diarizer.stream()
    block, fed, rss, hyp, reference = 160_000, 0, [], [], []
    start = time.process_time()
    while fed < minutes * 60 * 16_000:
        for clip in clips:
            offset = fed / 16_000
            spans = [(a + offset, b + offset) for a, b in union(clip.reference)]
            for i in range(0, len(clip.pcm), block):
                hyp += stream.feed(clip.pcm[i:i + block], spans if i == 0 else ())
            reference += [Turn(t.start + offset, t.end + offset, t.speaker)
                          for t in clip.reference]
            fed += len(clip.pcm)
        rss.append(rss_mb())
    hyp += stream.finish()
    scored = der(reference, hyp, [(0.0, fed / 16_000)], collar=COLLAR)
    return {"audio_min": fed / 16_000 / 60, "loops": len(rss), "speakers": stream.speakers,
            "cpu_s": time.process_time() - start, "rss_first_mb": rss[0],
            "rss_max_mb": max(rss), "rss_end_mb": rss[-1], "der": 100 * scored.der,
            "confusion": 100 * scored.confusion / scored.total}


def report(command: str, runs: list[Run], concat: tuple, config: DiarizeConfig,
           long: dict | None, tuning: dict | None) -> str:
    lines = ["## Diarization (ami_debug)", "",
             f"`{command}` — CAM++ (3D-Speaker zh-en common advanced, numpy port) + average-linkage "
             f"clustering, threshold {config.threshold}, windows {config.window_s} s every "
             f"{config.step_s} s. Collar is either side of each reference boundary (md-eval "
             f"-c {COLLAR}); overlapped speech is scored; components are % of reference "
             f"speech. One speaker per instant: the overlap column is missed speech no "
             f"single-speaker output can avoid.", ""] + table(runs)
    scored, own, found = concat
    lines += ["", f"All 14 clips as one recording, one 30 s chunk each, scored with the AMI "
              f"participant ids (labels must carry across chunks): DER {100 * scored.der:.1f} % "
              f"(confusion {100 * scored.confusion / scored.total:.1f} %), {found[1]} speakers "
              f"found for {found[0]} participants; the clips scored one by one: "
              f"DER {100 * own.der:.1f} %."]
    if long:
        lines += ["", "Long meeting: the 14 clips looped to {audio_min:.0f} min, streamed in 10 s "
                  "blocks through 120 s chunks: DER {der:.1f} % with the participant ids "
                  "(confusion {confusion:.1f} %), {speakers} speakers, {cpu_s:.0f} CPU s; "
                  "resident memory {rss_first_mb:.0f} MB after the first loop, at most "
                  "{rss_max_mb:.0f} MB, {rss_end_mb:.0f} MB after loop {loops}.".format(**long)]
    if tuning:
        lines += ["", "Tuning on train + development only (reference speech, DER with collar):",
                  "merge threshold / smallest cluster kept (windows): " + ", ".join(
                      f"{t}/{m}: {100 * d:.1f} %" for t, m, d in tuning["merge"]),
                  "", "cross-chunk match threshold (clips end to end, one chunk each): "
                  + ", ".join(f"{t}: {100 * d:.1f} %" for t, d in tuning["match"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the block into this results file")
    parser.add_argument("--tune", action="store_true", help="grid-search on train + dev")
    parser.add_argument("--long-minutes", type=float, default=0.0)
    args = parser.parse_args(argv)
    clips = {s: load_split(s) for s in SPLITS}
    embedder = CachingEmbedder(SpeakerEmbedder())
    tuning = tune(embedder, clips["train"] + clips["development"]) if args.tune else None
    diarizer = Diarizer(DiarizeConfig(), embedder)
    runs = []
    for split in ("development", "test"):
        vad_cpu = time.process_time()
        vad = {c.name: vad_speech(c.pcm) for c in clips[split]}
        vad_cpu = time.process_time() - vad_cpu
        for kind, speech in (("reference", {c.name: union(c.reference) for c in clips[split]}),
                             ("silero VAD", vad)):
            embedder._cache.clear()   # the timings include the embeddings
            run = score(diarizer, clips[split], speech)
            run.speech = kind
            run.vad_cpu_s = vad_cpu if kind != "reference" else 0.0
            runs.append(run)
    everything = [c for s in SPLITS for c in clips[s]]
    concat = concatenated(diarizer, everything)
    long = long_meeting(Diarizer(DiarizeConfig(chunk_s=120.0)), everything,
                        args.long_minutes) if args.long_minutes else None
    command = " ".join(["python -m evals.diarization",
                        shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    text = report(command, runs, concat, diarizer.config, long, tuning)
    print(text)
    if args.out:
        from loadtests.results import replace_block
        replace_block(args.out, "diarization", text)


if __name__ == "__main__":
    main()
