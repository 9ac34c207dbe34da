"""Grounded answering on MTRAG-UN: the real answer and verify operators, judged independently.

    python -m evals.grounded [--limit N] [--model M] [--judge-model M] [--seed S]
                             [--out evals/RESULTS.md] [--json PATH]

For each task of a stratified, seeded sample (N/2 answerable, N/2 unanswerable; collections
in proportion), the gold passages become Candidates (unanswerable tasks get on-topic
distractors: see evals/grounded_data.py), the last user turn is the question and the turns
before it the history. The Answer operator (embedded LLM, topology/doc_qa.yaml's settings)
writes the draft, the Verify operator checks it, and evals/judge.py (another LLM) says
whether each sentence's cited passage supports it, for the draft and for the final answer.
Each task's record is cached as JSONL under ~/.cache/patchwire/evals, keyed by the settings
and by the source of the QA operators: a rerun resumes, a code change starts afresh.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import platformdirs

from evals import grounded_data as data
from evals.grounded_metrics import answer_claims, draft_claims, summarise
from evals.grounded_prototype import with_rule
from evals.grounded_report import render
from evals.judge import JUDGE_MODEL, SupportJudge, read_jsonl
from operators.base import Context
from operators.qa.answer import Answer, AnswerConfig
from operators.qa.support import support
from operators.qa.verify import Verify, VerifyConfig
from operators.qa.verify_rules import said_not_found
from operators.testing import drive

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "topology/doc_qa.yaml"
RESULTS = ROOT / "evals/RESULTS.md"
BLOCK = "qa-grounded"
CACHE = Path(platformdirs.user_cache_dir("patchwire")) / "evals"
QA_SOURCES = ["answer.py", "assemble.py", "verify.py", "verify_rules.py", "support.py"]


class Metered:
    """The answer engine, keeping the usage of its last generation (a Draft carries none)."""

    def __init__(self, engine):
        self.engine, self.usage = engine, None
        self.model, self.context_tokens = engine.model, engine.context_tokens

    async def load(self) -> None:
        await self.engine.load()

    async def stream(self, prompt):
        async with contextlib.aclosing(self.engine.stream(prompt)) as inner:
            async for delta in inner:
                self.usage = delta.usage or self.usage
                yield delta

    def count_tokens(self, messages) -> int:
        return self.engine.count_tokens(messages)

    async def close(self) -> None:
        await self.engine.close()


def configs(model: str | None, threads: int | None = None) -> tuple[AnswerConfig, VerifyConfig]:
    """The answer and verify configs of topology/doc_qa.yaml, model and threads overridden."""
    from topology.spec import load, override
    topo = load(TOPOLOGY)
    settings = [f"answer.model={model}"] * bool(model) + [f"answer.threads={threads}"] * bool(threads)
    topo = override(topo, settings)
    return (msgspec.convert(topo.operator("answer").config, AnswerConfig),
            msgspec.convert(topo.operator("verify").config, VerifyConfig))


def cache_path(settings: dict) -> Path:
    """One file per settings and QA source: the same run resumes, another starts afresh."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in QA_SOURCES:
        digest.update((ROOT / "operators/qa" / name).read_bytes())
    return CACHE / f"grounded-{settings['answer']['model']}-{digest.hexdigest()[:12]}.jsonl"


async def generate(task: data.Task, passages, answer: Answer, verify: Verify) -> tuple:
    """The draft and the answer, as the pipeline would produce them; milliseconds taken."""
    ctx = Context(operator="answer", scratch=Path(tempfile.gettempdir()))
    started = time.perf_counter()
    draft = (await drive(answer, data.candidates(task, passages), ctx))[-1]
    final = (await drive(verify, draft, ctx))[-1]
    return draft, final, (time.perf_counter() - started) * 1000


def claims_of(draft, final) -> tuple[list[dict], list[dict]]:
    ids = [p.chunk_id for p in draft.passages]
    drafted = [] if said_not_found(draft.text) else draft_claims(draft.text, len(ids))
    for c in drafted:
        c["lexical"] = [round(support(c["sentence"], draft.passages[i].text), 3) for i in c["cited"]]
        c["removed"] = any(r.startswith(c["sentence"] + " — ") for r in final.removed)
    answered = [] if final.outcome != "answered" else answer_claims(
        final.text, {c.n: c.chunk_id for c in final.citations}, ids)
    return drafted, answered


async def judged(judge: SupportJudge, drafted: list[dict], answered: list[dict], passages) -> float:
    """Judge every (sentence, cited passage) pair; then each draft sentence no cited passage
    supports against the other passages, until one does (so "supported anywhere" is known
    for uncited sentences too). Passage by passage, so the judge's prompts share their
    prefix. Verdicts go onto the claims; returns the milliseconds taken."""
    started, verdicts = time.perf_counter(), {}

    async def ask(i: int, sentence: str) -> None:
        if (i, sentence) not in verdicts:
            verdicts[i, sentence] = await judge.supports(sentence, passages[i].text)

    def anywhere(sentence: str) -> bool:
        return any(v for (_, s), v in verdicts.items() if s == sentence)

    for i, sentence in sorted({(i, c["sentence"]) for c in drafted + answered for i in c["cited"]}):
        await ask(i, sentence)
    for i in range(len(passages)):
        for c in drafted:
            if not anywhere(c["sentence"]):
                await ask(i, c["sentence"])
    for c in drafted + answered:
        c["judge"] = [verdicts[i, c["sentence"]] for i in c["cited"]]
    for c in drafted:
        c["judge_any"] = anywhere(c["sentence"])
    return (time.perf_counter() - started) * 1000


async def run_task(task: data.Task, pool: data.DistractorPool, answer: Answer, verify: Verify,
                   judge: SupportJudge, k: int) -> dict:
    passages = data.gold_passages(task) if task.contexts else await pool.nearest(task, k)
    answer.engine.usage = None
    draft, final, task_ms = await generate(task, passages, answer, verify)
    drafted, answered = claims_of(draft, final)
    judge_ms = await judged(judge, drafted, answered, draft.passages)
    usage = answer.engine.usage
    return {
        "task_id": task.task_id, "label": task.label, "collection": task.collection,
        "question": task.question, "target": task.target,
        "passages": [p.chunk_id for p in passages], "relevance": [p.relevance for p in passages],
        "draft": draft.text, "draft_not_found": said_not_found(draft.text) or not draft.text,
        "draft_claims": drafted, "outcome": final.outcome, "answer": final.text,
        "answer_claims": answered, "removed": final.removed,
        "ms": {"task": task_ms, "judge": judge_ms, "verify": final.timings.get("verify_ms"),
               "generate": draft.timings.get("generate_ms"),
               "first_token": draft.timings.get("first_token_ms")},
        "tokens": {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens}
                  if usage else {},
    }


def settings_of(args, answer_cfg: AnswerConfig, verify_cfg: VerifyConfig) -> dict:
    return {"answer": msgspec.to_builtins(answer_cfg), "verify": msgspec.to_builtins(verify_cfg),
            "judge": args.judge_model, "distractors": args.distractors, "data": str(data.DATA)}


async def evaluate(args) -> tuple[list[dict], dict]:
    answer_cfg, verify_cfg = configs(args.model, args.threads)
    settings = settings_of(args, answer_cfg, verify_cfg)
    path = cache_path(settings)
    all_tasks = data.load_tasks()
    tasks = data.sample(all_tasks, args.limit - args.limit // 2, args.limit // 2, args.seed)
    done = {r["task_id"]: r for r in read_jsonl(path)}
    todo = [t for t in tasks if t.task_id not in done]
    print(f"{len(tasks)} tasks, {len(tasks) - len(todo)} cached in {path}", file=sys.stderr)
    if todo:
        await _run(todo, all_tasks, answer_cfg, verify_cfg, args, path, done)
    return [done[t.task_id] for t in tasks], {**settings, "cache": str(path)}


async def _run(todo, all_tasks, answer_cfg, verify_cfg, args, path: Path, done: dict) -> None:
    from operators.generate.shared import shared_llama
    answer = Answer("answer", answer_cfg, engine=Metered(shared_llama(answer_cfg)))
    verify = Verify("verify", verify_cfg)
    judge = SupportJudge(CACHE, args.judge_model, args.judge_threads)
    pool = data.DistractorPool(all_tasks, CACHE)
    await answer.start()
    await asyncio.gather(judge.open(), pool.open())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        for n, task in enumerate(todo, 1):
            record = await run_task(task, pool, answer, verify, judge, args.distractors)
            done[task.task_id] = record
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"[{n}/{len(todo)}] {task.label[:5]} {record['outcome']:9s} "
                  f"{record['ms']['task'] / 1000:.1f} s + judge {record['ms']['judge'] / 1000:.1f} s",
                  file=sys.stderr)
    finally:
        await asyncio.gather(answer.stop(), judge.close(), pool.close())


def run_grounded(args) -> dict:
    """The eval as `patchwire eval qa` runs it: the summary, the settings, the records, and
    the summary with a proposed verifier rule (evals/grounded_prototype.py) applied."""
    records, settings = asyncio.run(evaluate(args))
    return {"summary": summarise(records), "settings": settings, "records": records,
            "prototype": summarise([with_rule(r) for r in records])}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m evals.grounded", description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=80, help="tasks: half answerable, half not (80)")
    ap.add_argument("--model", help="answer model (default: topology/doc_qa.yaml's)")
    ap.add_argument("--judge-model", default=JUDGE_MODEL)
    ap.add_argument("--seed", type=int, default=0)
    # On a busy 2-core machine 2 llama.cpp threads wait on each other at every barrier: one
    # thread was 1.5-15x faster here. The text is the same (greedy; 4 drafts compared).
    ap.add_argument("--threads", type=int, help="answer LLM threads (default: the topology's)")
    ap.add_argument("--judge-threads", type=int, default=1)
    ap.add_argument("--distractors", type=int, default=3, help="passages per unanswerable task")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"report; block {BLOCK!r}")
    ap.add_argument("--json", type=Path, help="also write summary and records as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    from loadtests.results import replace_block
    args = parser().parse_args(argv)
    result = run_grounded(args)
    command = "python -m evals.grounded " + shlex.join(sys.argv[1:] if argv is None else argv)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    text = render(result, command.strip(), date)
    # Another answer model gets its own block, so a comparison does not replace the default.
    replace_block(args.out, f"{BLOCK}-{args.model}" if args.model else BLOCK, text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
