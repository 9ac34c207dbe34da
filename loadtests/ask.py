"""Ask latency through the whole doc_qa topology: time to first token and to the answer.

    python loadtests/ask.py [--docs 300] [--questions 20] [--model qwen2.5-coder-0.5b]
                            [--out loadtests/RESULTS.md]

Ingests the SciFact abstracts judged for the first `--questions` claims plus others up to
`--docs`, then asks each claim as a question, one at a time, through the bus exactly as
`patchwire ask` or the gateway does (rewrite → retrieve → rerank → answer → verify). Per
question: time to the first streamed token at the client, time to the verified answer, and
the stages each operator timed (carried in Answer.timings); "bus and queues" is the rest.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests.ingest import ingest_all  # noqa: E402
from loadtests.results import replace_block  # noqa: E402
from schemas.documents import Answer, AnswerDelta, AskRequest  # noqa: E402
from topology import spec as topo_spec  # noqa: E402
from topology.app import Deployment  # noqa: E402
from topology.qa import QaClient, new_request_id  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "data" / "qa" / "scifact"
STAGES = ["rewrite_ms", "embed_query_ms", "search_ms", "rerank_ms", "first_token_ms",
          "generate_ms", "verify_ms"]


def corpus(folder: Path, docs: int, questions: int) -> list[str]:
    """Write the judged abstracts of the first claims, then fill up; return the claims."""
    qrels = [line.split("\t") for line in (SCIFACT / "qrels/test.tsv").read_text().splitlines()[1:]]
    claims = {json.loads(x)["_id"]: json.loads(x)["text"] for x in open(SCIFACT / "queries.jsonl")}
    chosen = list(dict.fromkeys(q for q, _, _ in qrels))[:questions]
    wanted = {d for q, d, _ in qrels if q in chosen}
    written = 0
    for line in open(SCIFACT / "corpus.jsonl"):
        doc = json.loads(line)
        if doc["_id"] in wanted or written < docs - len(wanted):
            (folder / f"{doc['_id']}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n")
            written += 1
    return [claims[q] for q in chosen]


async def ask_one(client: QaClient, question: str) -> dict:
    started = time.perf_counter()
    first = None
    async for event in client.ask(AskRequest(request_id=new_request_id(), question=question)):
        if isinstance(event, AnswerDelta) and first is None:
            first = time.perf_counter() - started
        if isinstance(event, Answer):
            total = time.perf_counter() - started
            return {"ttft": first, "total": total, "outcome": event.outcome,
                    "timings": event.timings}
    raise RuntimeError("no answer")


async def measure(args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="pw-ask-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        questions = corpus(folder, args.docs, args.questions)
        settings = [f"{op}.store={Path(tmp) / 'store.sqlite'}" for op in ("chunk", "index", "retrieve")]
        settings += [f"answer.model={args.model}", f"rewrite.model={args.model}"]
        topo = topo_spec.override(topo_spec.load(ROOT / "topology/doc_qa.yaml"), settings)
        dep = await Deployment.open(topo, None, "pwask", store_dir=Path(tmp) / "nats")
        try:
            await dep.start_operators()
            client = QaClient(dep.bus, dep.blobs)
            await ingest_all(client, sorted(folder.iterdir()))
            await ask_one(client, "warm-up: what are the documents about?")
            return [await ask_one(client, q) for q in questions]
        finally:
            await dep.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def report(rows: list[dict], args) -> str:
    ttft = [r["ttft"] for r in rows if r["ttft"] is not None]
    total = [r["total"] for r in rows]
    outcomes = {o: sum(r["outcome"] == o for r in rows) for o in {r["outcome"] for r in rows}}
    lines = [f"## Ask latency ({datetime.date.today()}, `python loadtests/ask.py --docs {args.docs} "
             f"--questions {args.questions} --model {args.model}`)", "",
             "| | p50 | p95 |", "|---|---|---|"]
    if ttft:
        lines.append(f"| time to first token (client) | {statistics.median(ttft):.2f} s | "
                     f"{pct(ttft, 0.95):.2f} s |")
    lines.append(f"| time to verified answer | {statistics.median(total):.2f} s | "
                 f"{pct(total, 0.95):.2f} s |")
    lines += ["", "Where the time goes (medians over the questions, from the operators' timings):", "",
              "| stage | median |", "|---|---|"]
    for stage in STAGES:
        values = [r["timings"][stage] for r in rows if stage in r["timings"]]
        if values:
            lines.append(f"| {stage[:-3].replace('_', ' ')} | {statistics.median(values):.0f} ms |")
    rest = [r["total"] * 1000 - sum(r["timings"].get(s, 0) for s in STAGES if s != "first_token_ms")
            for r in rows]
    lines.append(f"| bus, queues, client | {statistics.median(rest):.0f} ms |")
    lines += ["", f"Outcomes: {outcomes}. One question at a time, {args.docs} abstracts indexed, "
              "2 shared cores; generation is prompt evaluation of ~900 tokens of passages "
              "plus the answer, on the CPU."]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--questions", type=int, default=20)
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    text = report(asyncio.run(measure(args)), args)
    print(text)
    if args.out:
        replace_block(args.out, "ask", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
