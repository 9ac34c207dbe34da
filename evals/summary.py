"""Meeting summaries on QMSum product meetings: ROUGE, JSON validity, grounding.

    python -m evals.summary [--limit N] [--model qwen2.5-coder-1.5b|qwen2.5-coder-0.5b]
                            [--judge-model M|none] [--out evals/RESULTS.md]

Each meeting of ../shared/data/meetings/qmsum/Product_test (AMI product-design meetings) is
read from its reference transcript: one segment per speaker turn, the corpus's {vocalsound},
{disfmarker} and {gap} marks removed. QMSum has no times, so segment times are estimated at
2.5 words per second (they only label the lines the model reads). The summary comes from
operators/meeting/summary.py as the meeting operator runs it and is scored against the
reference "Summarize the whole meeting." answer:

- ROUGE-1/2/L F1 (lower-cased alphanumeric tokens, no stemming, no stopword removal; L is
  the longest common subsequence of the whole texts), items in the order they were said;
- JSON validity: the summary's JSON against its published schema (jsonschema when
  installed, msgspec's decoder always), and the map steps whose JSON decoded;
- grounding: the share of merged items whose cited segments lexically support them (before
  the summary drops the others: after it, 100 % by construction), and the share of the
  final items an LLM judge (evals/judge.py, a yes/no entailment prompt) says their cited
  segments support.

Meetings go in a fixed order that mixes series and phases (ES2004a, ES2011b, IS1003c,
TS3004d, TS3011a, ES2004b, …), so a small --limit is not only kick-off meetings and is a
prefix of a larger one. Every LLM generation is cached under ~/.cache/patchwire/evals, keyed
by the model and the whole prompt: a rerun resumes where it stopped, a change to the
grounding or the reduce is re-scored at no model cost, a change to a prompt reruns it.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import re
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import platformdirs

from evals.judge import read_jsonl
from operators.generate.engine import Delta, Prompt
from operators.generate.shared import complete
from operators.meeting import summary as sm
from schemas import Transcript, TranscriptSegment
from schemas.meeting import MeetingSummary, summary_json_schema

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/meetings/qmsum/Product_test"
RESULTS = ROOT / "evals/RESULTS.md"
BLOCK = "summary"
CACHE = Path(platformdirs.user_cache_dir("patchwire")) / "evals"
WORDS_PER_S = 2.5
MARK = re.compile(r"\{(?:vocalsound|disfmarker|gap|pause|nonvocalsound)\}")


class CachedLlm:
    """The engine, every generation kept on disk under a hash of the model and the whole
    prompt: a rerun, or a change after the map step, costs no model time, and a change to
    any prompt misses the cache by itself. `seconds` adds up each generation's model time,
    as measured when it ran."""

    def __init__(self, engine, path: Path):
        self.engine, self.path, self.seconds = engine, path, 0.0
        self.model, self.context_tokens = engine.model, engine.context_tokens
        self.rows = {r["key"]: r for r in read_jsonl(path)}

    async def load(self) -> None:
        await self.engine.load()

    def count_tokens(self, messages) -> int:
        return self.engine.count_tokens(messages)

    async def close(self) -> None:
        await self.engine.close()

    def key(self, prompt: Prompt) -> str:
        return hashlib.sha256(self.model.encode() + msgspec.json.encode(prompt)).hexdigest()

    async def stream(self, prompt: Prompt):
        key = self.key(prompt)
        if key not in self.rows:
            started = time.perf_counter()
            text, last = await complete(self.engine, prompt)
            self.rows[key] = {"key": key, "text": text, "finish": last.finish_reason,
                              "seconds": time.perf_counter() - started}
            with self.path.open("a") as f:
                f.write(json.dumps(self.rows[key]) + "\n")
        row = self.rows[key]
        self.seconds += row["seconds"]
        yield Delta(text=row["text"], finish_reason=row["finish"])


# ---- data --------------------------------------------------------------------------------

def clean(text: str) -> str:
    """QMSum's annotation marks out, its spaced punctuation ("okay , yeah .") closed up."""
    text = " ".join(MARK.sub(" ", text).split())
    return re.sub(r"\s+([,.?!;:])", r"\1", text)


def load_meeting(path: Path) -> tuple[Transcript, str]:
    """The reference transcript as a Transcript, and the reference general summary."""
    row = json.loads(path.read_text())
    segments, t = [], 0.0
    for turn in row["meeting_transcripts"]:
        text = clean(turn["content"])
        length = max(1.0, len(text.split()) / WORDS_PER_S)
        segments.append(TranscriptSegment(start=round(t, 2), end=round(t + length, 2), text=text,
                                          speaker=turn["speaker"]))
        t += length
    reference = row["general_query_list"][0]["answer"]
    return Transcript(job_id=path.stem, segments=segments, duration_s=round(t, 2)), reference


def ordered(paths: list[Path]) -> list[Path]:
    """Series i's meeting of phase i (mod 4) first, then the next phase, and so on."""
    series = sorted({p.stem[:-1] for p in paths})
    return sorted(paths, key=lambda p: (("abcd".index(p.stem[-1]) - series.index(p.stem[:-1])) % 4,
                                        series.index(p.stem[:-1])))


# ---- ROUGE -------------------------------------------------------------------------------

def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def f1(overlap: int, produced: int, wanted: int) -> dict[str, float]:
    p = overlap / produced if produced else 0.0
    r = overlap / wanted if wanted else 0.0
    return {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}


def rouge_n(candidate: str, reference: str, n: int) -> dict[str, float]:
    """Clipped n-gram overlap: each reference n-gram matches at most as often as it occurs."""
    def grams(ts: list[str]) -> Counter:
        return Counter(tuple(ts[i:i + n]) for i in range(len(ts) - n + 1))
    c, r = grams(tokens(candidate)), grams(tokens(reference))
    return f1(sum((c & r).values()), sum(c.values()), sum(r.values()))


def lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        diag = 0
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidate: str, reference: str) -> dict[str, float]:
    c, r = tokens(candidate), tokens(reference)
    return f1(lcs(c, r), len(c), len(r))


def rouge(candidate: str, reference: str) -> dict[str, dict[str, float]]:
    return {"rouge1": rouge_n(candidate, reference, 1), "rouge2": rouge_n(candidate, reference, 2),
            "rougeL": rouge_l(candidate, reference)}


# ---- one meeting -------------------------------------------------------------------------

def items(summary: MeetingSummary) -> list[tuple[str, object]]:
    """(category, item) for every item, in the order the meeting said them."""
    found = [(c, item) for c in sm.CATEGORIES for item in getattr(summary, c)]
    return sorted(found, key=lambda ci: ci[1].span.segments[0])


def schema_valid(data: bytes) -> bool:
    try:
        msgspec.json.decode(data, type=MeetingSummary)
    except msgspec.ValidationError:
        return False
    try:
        import jsonschema
    except ImportError:
        return True
    return jsonschema.Draft202012Validator(summary_json_schema()).is_valid(json.loads(data))


async def summarize_meeting(path: Path, engine: CachedLlm, config: sm.SummaryConfig) -> dict:
    transcript, reference = load_meeting(path)
    engine.seconds = 0.0
    parts, drafts, warnings = await sm.map_sections(transcript, engine, config)
    final = await sm.reduce(transcript, engine, drafts, config)
    summary = sm.to_summary(transcript, final.draft, model=engine.model, sections=len(parts),
                            removed=final.removed, warnings=warnings)
    return {"meeting": path.stem, "reference": reference, "segments": len(transcript.segments),
            "seconds": engine.seconds, "sections": len(parts), "map_failed": len(warnings),
            "widened": final.widened, "drafts": [msgspec.to_builtins(d) for d in drafts],
            "raw_items": sum(len(getattr(d, c)) for d in drafts for c in sm.CATEGORIES),
            "summary": json.loads(msgspec.json.encode(summary))}


async def judge_items(judge, record: dict, transcript: Transcript) -> list[bool]:
    summary = msgspec.convert(record["summary"], MeetingSummary)
    return [await judge.supports(item.text, sm.passage(transcript, item.span.segments))
            for _, item in items(summary)]


def score(record: dict) -> dict:
    summary = msgspec.convert(record["summary"], MeetingSummary)
    text = " ".join(item.text.rstrip(".") + "." for _, item in items(summary))
    removed = len(summary.removed)
    said = sm.merge(msgspec.convert(record["drafts"], list[sm.Draft]))     # before grounding
    said_text = " ".join(c.text.rstrip(".") + "." for cat in sm.CATEGORIES for c in getattr(said, cat))
    return {"rouge": rouge(text, record["reference"]), "words": len(tokens(text)),
            "rouge_ungrounded": rouge(said_text, record["reference"]),
            "valid": schema_valid(json.dumps(record["summary"]).encode()),
            "items": len(items(summary)), "removed": removed,
            "lexical": (record["raw_items"] - removed, record["raw_items"]),
            "judge": (sum(record.get("judge", [])), len(record.get("judge", [])))}


# ---- the run -----------------------------------------------------------------------------

async def evaluate(args) -> tuple[list[dict], dict]:
    from evals.judge import SupportJudge
    from operators.generate.shared import shared_llama
    config = sm.SummaryConfig()
    settings = {"model": args.model, "threads": args.threads, "context": args.context,
                "config": msgspec.to_builtins(config), "judge": args.judge_model}
    meetings = ordered(sorted(DATA.glob("*.json")))[:args.limit]
    CACHE.mkdir(parents=True, exist_ok=True)
    engine = CachedLlm(shared_llama(argparse.Namespace(
        model=args.model, threads=args.threads, context_tokens=args.context)),
        CACHE / f"summary-llm-{args.model}.jsonl")
    judge = None if args.judge_model == "none" else SupportJudge(CACHE, args.judge_model, args.threads)
    records = []
    try:
        for m in meetings:
            records.append(await summarize_meeting(m, engine, config))
            print(f"{m.stem}: {records[-1]['sections']} sections, model time "
                  f"{records[-1]['seconds']:.0f} s", file=sys.stderr)
        if judge is not None:
            await judge.open()
            for m, record in zip(meetings, records):
                record["judge"] = await judge_items(judge, record, load_meeting(m)[0])
    finally:
        await engine.close()
        if judge is not None:
            await judge.close()
    return records, {**settings, "cache": str(engine.path)}


# ---- the report --------------------------------------------------------------------------

def share(pair: tuple[int, int]) -> str:
    return f"{pair[0]}/{pair[1]} ({pair[0] / pair[1]:.0%})" if pair[1] else "–"


def total(pairs: list[tuple[int, int]]) -> tuple[int, int]:
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def table(records: list[dict], scores: list[dict]) -> list[str]:
    rows = ["| meeting | segments | sections (map JSON ok) | items | removed | widened | words "
            "| ROUGE-1 | ROUGE-2 | ROUGE-L | schema-valid | lexical support | judge support | model s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r, s in zip(records, scores):
        g = s["rouge"]
        rows.append(f"| {r['meeting']} | {r['segments']} | {r['sections']} "
                    f"({r['sections'] - r['map_failed']}) | {s['items']} | {s['removed']} | "
                    f"{r['widened']} | {s['words']} | {g['rouge1']['f']:.3f} | "
                    f"{g['rouge2']['f']:.3f} | {g['rougeL']['f']:.3f} | "
                    f"{'yes' if s['valid'] else 'NO'} | {share(s['lexical'])} | "
                    f"{share(s['judge'])} | {r['seconds']:.0f} |")
    return rows


def headline(records: list[dict], scores: list[dict]) -> list[str]:
    def mean(key: str, which: str = "rouge") -> float:
        return sum(s[which][key]["f"] for s in scores) / len(scores)
    sections = sum(r["sections"] for r in records)
    failed = sum(r["map_failed"] for r in records)
    return ["| figure | value |", "|---|---:|",
            f"| meetings | {len(records)} |",
            f"| ROUGE-1 / ROUGE-2 / ROUGE-L F1 (mean over meetings) | {mean('rouge1'):.3f} / "
            f"{mean('rouge2'):.3f} / {mean('rougeL'):.3f} |",
            f"| the same, the map steps' items before grounding (merged, uncapped) | "
            f"{mean('rouge1', 'rouge_ungrounded'):.3f} / {mean('rouge2', 'rouge_ungrounded'):.3f} "
            f"/ {mean('rougeL', 'rouge_ungrounded'):.3f} |",
            f"| summary JSON valid against the published schema | "
            f"{share((sum(s['valid'] for s in scores), len(scores)))} |",
            f"| map steps whose JSON decoded | {share((sections - failed, sections))} |",
            f"| items of the map steps whose cited segments support them (lexical, before removal) | "
            f"{share(total([s['lexical'] for s in scores]))} |",
            f"| final items whose cited segments support them (LLM judge) | "
            f"{share(total([s['judge'] for s in scores]))} |"]


def examples(record: dict, n: int = 4) -> list[str]:
    summary = msgspec.convert(record["summary"], MeetingSummary)
    lines = [f"Items of {record['meeting']} (category, cited segments: text):", ""]
    lines += [f"- {c} {item.span.segments}: {item.text}" for c, item in items(summary)[:n]]
    lines += ["", f"Removed from {record['meeting']} (first {n}):", ""]
    return lines + [f"- {why}" for why in summary.removed[:n]]


def render(records: list[dict], settings: dict, command: str, date: str) -> str:
    scores = [score(r) for r in records]
    return "\n".join([
        "# Meeting summary: QMSum product meetings", "",
        f"Date: {date}  ", f"Command: `{command}`  ",
        f"Model: {settings['model']} ({settings['threads']} thread(s), context "
        f"{settings['context']}); judge: {settings['judge']}  ",
        f"Settings: `{json.dumps(settings['config'])}`  ",
        "Data: QMSum `Product_test` reference transcripts (speaker turns, annotation marks "
        "removed, times estimated); reference: the general \"Summarize the whole meeting.\" "
        "answer. ROUGE on lower-cased alphanumeric tokens, no stemming. Lexical support is the "
        "summariser's own test, so the final items pass it by construction; the judge "
        "(evals/judge.py) asks an LLM a yes/no entailment question about each final item and "
        "its cited segments: a different test, but when it is the summariser's own model it is "
        "not an independent one. Seconds are the model's time per meeting, each generation measured when it "
        "ran (cached generations keep their time), on a shared 2-core machine.", "",
        *headline(records, scores), "", *table(records, scores), "", *examples(records[0])])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals.summary", description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=2, help="meetings, in the fixed mixed order (2)")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b",
                    choices=["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"])
    ap.add_argument("--judge-model", default="qwen2.5-coder-1.5b", help="or none")
    # On a busy 2-core machine two llama.cpp threads spin at their barriers; one is faster.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=4096, help="LLM context tokens")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"report; block {BLOCK!r}")
    return ap


def main(argv: list[str] | None = None) -> int:
    from loadtests.results import replace_block
    args = parser().parse_args(argv)
    records, settings = asyncio.run(evaluate(args))
    command = "python -m evals.summary " + shlex.join(sys.argv[1:] if argv is None else argv)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = render(records, settings, command.strip(), date)
    replace_block(args.out, BLOCK, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
