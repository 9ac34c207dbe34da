"""How far to trust the support judge: its verdicts on pairs whose answer we know.

    python -m evals.judge_check [--n 10] [--seed 0] [--judge-model M]

From answerable MTRAG-UN tasks, four kinds of (sentence, passage) pairs, n of each:
  verbatim   a sentence of the passage itself                        → should be "yes"
  negated    that sentence with its first is/are/can/was/will negated → should be "no"
             (the lexical test cannot see this: "not" is a stopword to it)
  reference  the reference answer's first sentence, its first gold passage → mostly "yes"
             (references may draw on several passages: an upper bound is not 100 %)
  swapped    that reference sentence against another task's passage  → should be "no"
Prints the share of "yes" per kind, and the lexical test's share beside it.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import shlex
import sys
from pathlib import Path

from evals.grounded import CACHE
from evals.grounded_data import ANSWERABLE, load_tasks
from evals.grounded_metrics import LEXICAL_THRESHOLD
from evals.judge import JUDGE_MODEL, SupportJudge
from loadtests.results import replace_block
from operators.qa.support import sentences, support

BLOCK = "qa-judge-check"
VERB = re.compile(r"\b(is|are|can|was|will)\b")


def negate(sentence: str) -> str | None:
    m = VERB.search(sentence)
    return None if m is None else f"{sentence[:m.end()]} not{sentence[m.end():]}"


def plain_sentences(text: str) -> list[str]:
    """Prose sentences of 8 to 40 words (no markup lines, lists or code)."""
    return [s for s in sentences(text) if 8 <= len(s.split()) <= 40 and s[-1] in ".!?"
            and not re.search(r"[<>{}|*#\[\]]", s)]


def pairs(n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    tasks = [t for t in load_tasks() if t.label == ANSWERABLE and t.contexts]
    rng.shuffle(tasks)
    kinds: dict[str, list[tuple[str, str]]] = {k: [] for k in
                                               ("verbatim", "negated", "reference", "swapped")}
    for t, other in zip(tasks, tasks[1:] + tasks[:1]):
        passage = t.contexts[0].text
        own = [(s, negate(s)) for s in plain_sentences(passage) if negate(s)]
        ref = sentences(t.target)
        if not own or not ref or len(kinds["verbatim"]) >= n:
            continue
        s, neg = rng.choice(own)
        kinds["verbatim"].append((s, passage))
        kinds["negated"].append((neg, passage))
        kinds["reference"].append((ref[0], passage))
        kinds["swapped"].append((ref[0], other.contexts[0].text))
    return kinds


async def check(n: int, seed: int, model: str) -> dict[str, tuple[float, float, int]]:
    judge = SupportJudge(CACHE, model)     # loads its model on the first uncached verdict
    try:
        out = {}
        for kind, items in pairs(n, seed).items():
            yes = [await judge.supports(s, p) for s, p in items]
            lexical = [support(s, p) >= LEXICAL_THRESHOLD for s, p in items]
            out[kind] = (sum(yes) / len(items), sum(lexical) / len(items), len(items))
        return out
    finally:
        await judge.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.judge_check", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge-model", default=JUDGE_MODEL)
    ap.add_argument("--out", type=Path, help="also write the table to this report (block "
                    f"{BLOCK!r}), e.g. evals/RESULTS.md")
    args = ap.parse_args(argv)
    result = asyncio.run(check(args.n, args.seed, args.judge_model))
    command = "python -m evals.judge_check " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = render(result, args.judge_model, command.strip())
    if args.out:
        replace_block(args.out, BLOCK, text)
    print(text)
    return 0


def render(result: dict[str, tuple[float, float, int]], model: str, command: str) -> str:
    expected = {"verbatim": "yes", "negated": "no", "reference": "mostly yes", "swapped": "no"}
    lines = ["### How far to trust the support judge", "", f"Command: `{command}`  ",
             f"Judge `{model}` on (sentence, passage) pairs whose answer is known (see "
             "evals/judge_check.py); the lexical test (support ≥ 0.6) beside it.", "",
             "| pairs | expected | n | judge says yes | lexical test says yes |",
             "|---|---|---:|---:|---:|"]
    for kind, (judge, lexical, count) in result.items():
        lines.append(f"| {kind} | {expected[kind]} | {count} | {judge * 100:.0f} % | "
                     f"{lexical * 100:.0f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
