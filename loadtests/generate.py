"""Generation figures per embedded model, on this machine's cores.

    python loadtests/generate.py [--models smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]
                                 [--structured 100] [--out loadtests/RESULTS.md]

Each model runs in its own process (peak RSS is per model):
  - time to first token for a ~1,000-token RAG prompt (SciFact abstracts), cold, and for a
    follow-up turn of the same session with the prefix cached (target: cached ≤ 25 % of cold);
  - tokens/s over a 128-token answer;
  - structured output: share of N prompts whose answer decodes into a msgspec type (target 100 %);
  - cancel-to-stop: tokens generated after the consumer stopped reading (target ≤ 1);
  - peak RSS (VmHWM) of the process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared/data/qa/scifact"

from operators.generate.engine import Prompt  # noqa: E402
from operators.generate.operator import GenerateConfig  # noqa: E402
from operators.generate.schema_check import small_ranges_as_enums  # noqa: E402
from schemas import ChatMessage  # noqa: E402


class Answer(msgspec.Struct):
    # Only what a grammar can enforce: bounded strings and lists (a small model may never close
    # an unbounded string, and an answer cut off at max_tokens does not decode), an enum rather
    # than a bounded float (llama.cpp's grammar has no numeric bounds; the operator checks them
    # after decoding and fails clearly: operators/generate/schema_check.py).
    answer: Annotated[str, msgspec.Meta(max_length=120)]
    confidence: Literal["low", "medium", "high"]
    sources: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=40)]], msgspec.Meta(max_length=5)]


# As the generate operator sends it: small integer ranges become enums the grammar enforces.
SCHEMA = small_ranges_as_enums(msgspec.json.schema(Answer))
# The worst case of the schema, at one token a character, must fit: a cut answer never decodes.
STRUCTURED_MAX_TOKENS = 256


def rag_messages(target_tokens: int = 1000) -> list[ChatMessage]:
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open().readlines()[:40]]
    parts, words = [], 0
    for i, d in enumerate(docs, 1):
        text = f"[{i}] {d['title']}\n{d['text']}"
        parts.append(text)
        words += len(text.split())
        if words * 1.4 >= target_tokens:  # ~1.4 tokens per word in these abstracts
            break
    system = ("Answer from the numbered sources only and cite them as [n]. "
              "If the sources do not hold the answer, say you don't know.")
    return [ChatMessage(role="system", content=system),
            ChatMessage(role="user", content="\n\n".join(parts) + "\n\nWhat do the sources say "
                        "about white matter development in newborns?")]


async def first_token(engine, messages, session: str) -> tuple[float, object, str]:
    t0, ttft, text, usage = time.perf_counter(), None, [], None
    async for d in engine.stream(Prompt(messages=messages, max_tokens=48, session_id=session)):
        if d.text and ttft is None:
            ttft = time.perf_counter() - t0
        text.append(d.text)
        usage = d.usage or usage
    return ttft or 0.0, usage, "".join(text)


async def cancel_tokens(engine, messages) -> int:
    stream = engine.stream(Prompt(messages=messages, max_tokens=256, session_id="cancel"))
    n = 0
    async for d in stream:
        n += bool(d.text)
        if n == 5:
            break
    await stream.aclose()
    await asyncio.sleep(0.2)
    return engine.last_tokens_after_stop


async def structured(engine, n: int) -> tuple[int, int]:
    ok = 0
    for i in range(n):
        q = f"Question {i}: is {i} an even number? Give an answer, a confidence and source ids."
        text = "".join([d.text async for d in engine.stream(Prompt(
            messages=[ChatMessage(role="user", content=q)], json_schema=SCHEMA, max_tokens=STRUCTURED_MAX_TOKENS,
            temperature=0.7, session_id=f"json{i % 4}"))])
        try:
            msgspec.json.decode(text, type=Answer)
            ok += 1
        except msgspec.DecodeError:
            pass
    return ok, n


async def one_model(model: str, n_structured: int) -> dict:
    from operators.generate.llama import LlamaEngine
    engine = LlamaEngine(GenerateConfig(model=model, context_tokens=4096))
    await engine.load()
    rag = rag_messages()
    cold, usage, answer = await first_token(engine, rag, "s1")
    follow = rag + [ChatMessage(role="assistant", content=answer),
                    ChatMessage(role="user", content="And in one sentence?")]
    warm, usage2, _ = await first_token(engine, follow, "s1")
    rate_usage = None
    async for d in engine.stream(Prompt(messages=[ChatMessage(role="user", content="Count from one to fifty in words.")], max_tokens=128)):
        rate_usage = d.usage or rate_usage
    cancels = [await cancel_tokens(engine, rag[:1] + [ChatMessage(role="user", content="Tell a long story.")]) for _ in range(5)]
    ok, n = await structured(engine, n_structured)
    await engine.close()
    return {"model": model, "prompt_tokens": usage.prompt_tokens if usage else 0,
            "ttft_cold_s": cold, "ttft_cached_s": warm,
            "cached_tokens": usage2.cached_tokens if usage2 else 0,
            "tokens_per_s": rate_usage.tokens_per_s if rate_usage else 0.0,
            "cancel_tokens_median": statistics.median(cancels), "cancel_tokens_max": max(cancels),
            "structured_ok": ok, "structured_n": n, "peak_rss_mib": _hwm_mib()}


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def table(rows: list[dict]) -> str:
    lines = ["| model | prompt tokens | TTFT cold s | TTFT cached s | cached/cold | cached tokens | tok/s | "
             "structured valid | cancel→stop tokens (median, max) | peak RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        ratio = r["ttft_cached_s"] / r["ttft_cold_s"] if r["ttft_cold_s"] else float("nan")
        lines.append(f"| {r['model']} | {r['prompt_tokens']} | {r['ttft_cold_s']:.2f} | "
                     f"{r['ttft_cached_s']:.2f} | {ratio:.1%} {'PASS' if ratio <= 0.25 else 'FAIL'} | "
                     f"{r['cached_tokens']} | {r['tokens_per_s']:.1f} | "
                     f"{r['structured_ok']}/{r['structured_n']} "
                     f"{'PASS' if r['structured_ok'] == r['structured_n'] else 'FAIL'} | "
                     f"{r['cancel_tokens_median']:.0f}, {r['cancel_tokens_max']} "
                     f"{'PASS' if r['cancel_tokens_max'] <= 1 else 'FAIL'} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--structured", type=int, default=100)
    ap.add_argument("--out", type=Path, help="also write the table into this RESULTS.md")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # the child process: one model, JSON out
        print(json.dumps(asyncio.run(one_model(args.one, args.structured))))
        return
    rows = []
    for model in args.models.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", model, "--structured",
                               str(args.structured)], capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            print(f"{model}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows))
    if args.out:
        from loadtests.results import replace_block
        command = "python loadtests/generate.py " + " ".join(sys.argv[1:])
        replace_block(args.out, "generation", "\n".join([
            "## Generation (embedded llama.cpp engine)", "",
            f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}  ", f"Command: `{command}`  ",
            "Machine: 2 cores, shared and noisy; each model in its own process, 2 threads.", "",
            __doc__.split("\n\n", 2)[2].strip(), "", table(rows)]))


if __name__ == "__main__":
    main()
