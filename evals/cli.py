"""`patchwire eval qa`: the SciFact retrieval figures, printed and optionally written to a
RESULTS.md block ("qa-retrieval", through loadtests/results.py replace_block).

    add_retrieval_arguments(subparser)      the options, shared with `python -m evals.scifact`
    run_retrieval(args) -> dict             index (cached), search every mode, print, write
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import shlex
from pathlib import Path
from typing import Any

BLOCK = "qa-retrieval"
METHOD = ("Method: each abstract indexed as `# title` + text through our parse, chunk (200 "
          "tokens) and title_prefixed MiniLM embedding into a SqliteStore; each claim embedded "
          "and searched one at a time with the retrieve operator's settings (candidates 100, "
          "rrf_k 60); documents ranked by their best chunk. The rerank modes reorder the 20 "
          "passages retrieve hands on (operators/qa/rerankers.py: SCORES for hybrid+rerank, "
          "SENTENCES for hybrid+sentences). Halves: by a hash of the claim id. Machine: 2 "
          "shared, busy cores; latencies are medians.  ")


def add_retrieval_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from evals.scifact import MODES, SCIFACT
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated (default {','.join(MODES)})")
    ap.add_argument("--limit", type=int, help="only the first N claims")
    ap.add_argument("--data", type=Path, default=SCIFACT, help="the SciFact folder (BEIR layout)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenBLAS threads of the embedder (default 1: on a shared 2-core machine "
                         "2 threads ran 8x slower, spinning)")
    ap.add_argument("--out", type=Path, help="also write the figures into this RESULTS.md")
    return ap


def run_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by `args` (see add_retrieval_arguments); print the table.

    Returns {"results": {mode: figures}, "gains": lines, "index": build stats, "store": path,
    "default": the default pipeline's mode, "target": nDCG@10, "pass": whether the default
    mode reached the target (None when it was not among the modes run)}."""
    report = asyncio.run(_run(args))
    text = render(report, _command(args))
    print(text)
    if args.out:
        from loadtests.results import replace_block
        replace_block(args.out, BLOCK, text)
    return report


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from evals.ir import load_qrels
    from evals.scifact import (DEFAULT_MODE, TARGET_NDCG, evaluate, gain_lines, make_reranker,
                                open_index, read_claims, summary)
    from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    qrels = load_qrels(args.data / "qrels" / "test.tsv")
    claims = read_claims(args.data / "queries.jsonl", qrels)[:args.limit]
    embedder = MiniLmEmbedder(MiniLmConfig(threads=args.threads))
    store = None
    try:
        store, stats = await open_index(embedder, args.data / "corpus.jsonl")
        rerank = make_reranker(embedder)
        rows = await evaluate(store, embedder, claims, qrels, modes, rerank)
    finally:
        if store is not None:
            await store.close()
        await embedder.close()
    results = {mode: summary(r) for mode, r in rows.items()}
    default = results[DEFAULT_MODE]["ndcg@10"] if DEFAULT_MODE in results else None
    return {"results": results, "gains": gain_lines(rows), "index": stats, "store": str(store.path),
            "default": DEFAULT_MODE, "target": TARGET_NDCG,
            "pass": None if default is None else default >= TARGET_NDCG}


def render(report: dict[str, Any], command: str) -> str:
    from evals.scifact import index_line, table
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    claims = max((r["queries"] for r in report["results"].values()), default=0)
    default = report["results"].get(report["default"])
    verdict = ("not run" if default is None else f"nDCG@10 {default['ndcg@10']:.4f}, target ≥ "
               f"{report['target']:.2f}: {'PASS' if report['pass'] else 'FAIL'}")
    return "\n".join([
        f"## Retrieval: SciFact (BEIR test split, {claims} claims)", "",
        f"Date: {date}  ", f"Command: `{command}`  ",
        index_line(report["index"], Path(report["store"])) + "  ",
        METHOD, f"Default pipeline ({report['default']}): {verdict}", "",
        *table(report["results"]), "", *report["gains"], ""])


def _command(args: argparse.Namespace) -> str:
    """The standalone command that reproduces this run (also when `patchwire eval qa` ran it)."""
    from evals.scifact import MODES, SCIFACT
    parts = ["python", "-m", "evals.scifact"]
    for flag, value, default in (("--modes", args.modes, ",".join(MODES)),
                                 ("--limit", args.limit, None), ("--data", args.data, SCIFACT),
                                 ("--threads", args.threads, 1), ("--out", args.out, None)):
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts)
