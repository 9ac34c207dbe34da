"""Word error rate: Levenshtein alignment over normalised words, totals per corpus, and a
markdown report. Running the ASR itself is the caller's part: `score_manifest` takes any
`transcribe(path) -> text`. From the command line, precomputed hypotheses can be scored:

    python -m evals.wer ../shared/data/asr/manifest.jsonl --hyps hyps.jsonl [--json report.json]

where hyps.jsonl holds lines {"audio": <manifest audio path>, "text": <hypothesis>}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

from evals.normalize import normalize


class WerResult(NamedTuple):
    errors: int
    words: int          # reference words
    wer: float          # errors / words; 0.0 when both are empty, inf for errors against nothing
    substitutions: int
    deletions: int
    insertions: int


def align(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit alignment of hyp to ref."""
    # each cell: (edits, substitutions, deletions, insertions); one row kept at a time
    row = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, 1):
        new = [(i, 0, i, 0)]
        for j, h in enumerate(hyp, 1):
            diag, up, left = row[j - 1], row[j], new[j - 1]
            if r == h:
                best = diag
            else:
                best = min((diag[0] + 1, diag[1] + 1, diag[2], diag[3]),
                           (up[0] + 1, up[1], up[2] + 1, up[3]),
                           (left[0] + 1, left[1], left[2], left[3] + 1))
            new.append(best)
        row = new
    return row[-1][1:]


def _result(s: int, d: int, i: int, words: int) -> WerResult:
    errors = s + d + i
    rate = errors / words if words else (0.0 if errors == 0 else float("inf"))
    return WerResult(errors, words, rate, s, d, i)


def wer(refs: list[str], hyps: list[str],
        normalizer: Callable[[str], str] | None = normalize) -> WerResult:
    """Corpus WER: edits summed over utterance pairs, divided by all reference words."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm = normalizer or (lambda text: text)
    s = d = i = words = 0
    for ref, hyp in zip(refs, hyps):
        ref_words, hyp_words = norm(ref).split(), norm(hyp).split()
        ds, dd, di = align(ref_words, hyp_words)
        s, d, i, words = s + ds, d + dd, i + di, words + len(ref_words)
    return _result(s, d, i, words)


def _totals(rows: list[dict]) -> dict:
    result = _result(*(sum(r[k] for r in rows) for k in ("substitutions", "deletions", "insertions", "words")))
    audio_s = sum(r["duration_s"] for r in rows)
    return {**result._asdict(), "utterances": len(rows), "audio_s": round(audio_s, 3),
            "rtf": round(sum(r["transcribe_s"] for r in rows) / audio_s, 4) if audio_s else None}


def score_manifest(transcribe: Callable[[Path], str], manifest: Path, limit: int | None = None) -> dict:
    """Transcribe every utterance of a JSONL manifest ({"audio", "text", "duration_s", "corpus"};
    audio relative to the manifest) and score it: per utterance, per corpus and in total."""
    manifest = Path(manifest)
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = []
    for entry in entries[:limit]:
        started = time.perf_counter()
        hyp = transcribe(manifest.parent / entry["audio"])
        elapsed = time.perf_counter() - started
        ref_norm, hyp_norm = normalize(entry["text"]), normalize(hyp)
        result = _result(*align(ref_norm.split(), hyp_norm.split()), len(ref_norm.split()))
        rows.append({"audio": entry["audio"], "corpus": entry.get("corpus", ""), "ref": entry["text"],
                     "hyp": hyp, "ref_norm": ref_norm, "hyp_norm": hyp_norm, **result._asdict(),
                     "duration_s": entry.get("duration_s", 0.0), "transcribe_s": round(elapsed, 4)})
    corpora = sorted({r["corpus"] for r in rows})
    return {"manifest": str(manifest), "utterances": rows, "total": _totals(rows),
            "corpora": {c: _totals([r for r in rows if r["corpus"] == c]) for c in corpora}}


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def format_report(report: dict, title: str = "WER") -> str:
    """Markdown: totals per corpus, one row per utterance, then the utterances with errors."""
    total = report["total"]
    lines = [f"# {title}", "", f"manifest: `{report['manifest']}`; {total['utterances']} utterances, "
             f"{total['audio_s']:.1f} s of audio, RTF {total['rtf']}", "",
             "| corpus | utterances | words | S | D | I | WER |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, t in [*report["corpora"].items(), ("**total**", total)]:
        lines.append(f"| {name} | {t['utterances']} | {t['words']} | {t['substitutions']} | "
                     f"{t['deletions']} | {t['insertions']} | {_pct(t['wer'])} |")
    lines += ["", "| audio | words | S | D | I | WER |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['audio']} | {r['words']} | {r['substitutions']} | {r['deletions']} | "
              f"{r['insertions']} | {_pct(r['wer'])} |" for r in report["utterances"]]
    wrong = [r for r in report["utterances"] if r["errors"]]
    if wrong:
        lines += ["", "## Utterances with errors (normalised)", ""]
        for r in wrong:
            lines += [f"- `{r['audio']}` ({r['errors']} errors)", f"  - ref: {r['ref_norm']}",
                      f"  - hyp: {r['hyp_norm']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.wer", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--hyps", type=Path, required=True,
                        help='JSONL of {"audio", "text"} hypotheses (ASR is not run here)')
    parser.add_argument("--json", type=Path, help="also write the full report as JSON")
    args = parser.parse_args(argv)
    hyps = {}
    for line in args.hyps.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            hyps[entry["audio"]] = entry["text"]
    base = args.manifest.parent

    def lookup(path: Path) -> str:
        key = path.relative_to(base).as_posix()
        if key not in hyps:
            raise SystemExit(f"{args.hyps}: no hypothesis for {key}")
        return hyps[key]

    report = score_manifest(lookup, args.manifest)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    sys.stdout.write(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
