"""Search latency, build rate and memory of the embedded store (SQLite FTS5 + numpy).

    python loadtests/retrieval.py [--sizes 5000,100000] [--rounds 3] [--out loadtests/RESULTS.md]

For each size a store is built in a temp dir through the store's own API (put_chunks +
commit per document, 10 chunks a document) and then searched by a separate process, as the
retrieve operator would search the file the index operator writes. That process's first
search loads the vectors (timed apart); then every round runs the SciFact test queries once
per mode with one principal, one search at a time, and the figures are medians over rounds
of each round's p50/p99. Its VmRSS after the searches is the memory of a store serving that
many chunks (the interpreter and numpy included; the "empty" row is the same process with
no store).

Text is real: SciFact abstracts cut into sentences, three sentences a chunk, drawn at random
(seeded) until the size is reached; titles are SciFact titles. Vectors are NOT embeddings:
random unit 384-dim float32 rows and queries, which cost exactly what real ones cost in an
exact search (every row is multiplied either way) but say nothing about retrieval quality.
Documents are spread over 2 tenants, 2 collections and 4 ACL groups; a quarter are readable
by everyone in their tenant. The principal (tenant t0, group g1) may read about half of its
tenant's chunks, so the vector mask and the SQL permission check are both at work.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtests.results import replace_block  # noqa: E402
from operators.store.engine import SearchQuery  # noqa: E402
from operators.store.sqlite import SqliteStore  # noqa: E402
from schemas.documents import ChunkRecord, DocumentInfo, DocumentKey, Principal  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "data" / "qa" / "scifact"
DIM, MODEL = 384, "random-384"
PER_DOC = 10
GROUPS = ["g0", "g1", "g2", "g3"]
PRINCIPAL = Principal(user="u1", tenant="t0", groups=["g1"])
MODES = ("vector", "keyword", "hybrid")
TARGET_P99_MS = 50.0
_SENTENCE = re.compile(r"(?<=[.!?])\s*(?=[A-Z])")


def corpus() -> tuple[list[str], list[str]]:
    """(sentences, titles) of the SciFact abstracts."""
    sentences, titles = [], []
    with open(SCIFACT / "corpus.jsonl") as lines:
        for line in lines:
            row = json.loads(line)
            titles.append(row["title"])
            sentences += [s.strip() for s in _SENTENCE.split(row["text"]) if len(s.strip()) > 20]
    return sentences, titles


def queries() -> list[str]:
    with open(SCIFACT / "queries.jsonl") as lines:
        return [json.loads(line)["text"] for line in lines]


def documents(chunks: int, seed: int = 7):
    """(DocumentInfo, chunk records, vectors) until `chunks` chunks are made."""
    rng = np.random.default_rng(seed)
    sentences, titles = corpus()
    for d in range(-(-chunks // PER_DOC)):
        count = min(PER_DOC, chunks - d * PER_DOC)
        records, pos = [], 0
        for i in range(count):
            text = " ".join(sentences[j] for j in rng.integers(0, len(sentences), 3))
            records.append(ChunkRecord(index=i, text=text, start=pos, end=pos + len(text)))
            pos += len(text) + 1
        vectors = rng.standard_normal((count, DIM)).astype(np.float32)
        yield _info(d, count, titles[d % len(titles)], rng), records, vectors


def _info(d: int, count: int, title: str, rng: np.random.Generator) -> DocumentInfo:
    acl = ["*"] if rng.random() < 0.25 else sorted(rng.choice(GROUPS, rng.integers(1, 3), False))
    key = DocumentKey(tenant=f"t{d % 2}", collection=("papers", "reviews")[d % 3 == 0],
                      doc_id=f"doc-{d}")
    return DocumentInfo(key=key, version=f"v{d}", title=title, acl=list(acl), chunks=count,
                        metadata={"year": str(2000 + d % 20)})


async def build(path: Path, chunks: int) -> float:
    """Build the store; seconds spent in put_chunks + commit (text generation excluded)."""
    store = SqliteStore(path)
    await store.open(MODEL, DIM)
    spent = 0.0
    for doc, records, vectors in documents(chunks):
        started = time.perf_counter()
        await store.put_chunks(doc, records, vectors)
        if await store.commit(doc) is None:
            raise RuntimeError(f"{doc.key.doc_id} did not commit")
        spent += time.perf_counter() - started
    await store.close()
    return spent


# --- the searching process -------------------------------------------------------------

async def serve(path: Path, rounds: int) -> dict:
    """Open the built store, search it; runs in its own process (see main)."""
    texts = queries()
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((len(texts), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    empty_rss = rss_mib()
    store = SqliteStore(path)
    await store.open(MODEL, DIM)
    started = time.perf_counter()
    await store.search(_query(texts[0], vectors[0], "vector"))
    load_s = time.perf_counter() - started
    per_mode: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            per_mode[mode].append(await _round(store, texts, vectors, mode))
    counts = await store.count(PRINCIPAL.tenant)
    await store.close()
    return {"load_s": load_s, "rss_mib": rss_mib(), "empty_rss_mib": empty_rss,
            "tenant_chunks": counts["chunks"],
            "modes": {m: [statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)]
                      for m, rs in per_mode.items()}}


async def _round(store: SqliteStore, texts: list[str], vectors: np.ndarray,
                 mode: str) -> tuple[float, float]:
    times = []
    for text, vector in zip(texts, vectors):
        started = time.perf_counter()
        hits = await store.search(_query(text, vector, mode))
        times.append((time.perf_counter() - started) * 1000)
        if any(h.chunk.key.tenant != PRINCIPAL.tenant for h in hits):
            raise RuntimeError("a foreign tenant's chunk was returned")
    return pct(times, 0.5), pct(times, 0.99)


def _query(text: str, vector: np.ndarray, mode: str) -> SearchQuery:
    return SearchQuery(principal=PRINCIPAL, text=text, vector=vector.tolist(), mode=mode,
                       k=20, candidates=100)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the driver ------------------------------------------------------------------------

def measure(size: int, rounds: int, workdir: Path) -> dict:
    path = workdir / f"store-{size}.db"
    build_s = asyncio.run(build(path, size))
    child = subprocess.run([sys.executable, __file__, "--serve", str(path), "--rounds", str(rounds)],
                           capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(size=size, build_s=build_s, file_mib=_file_mib(path))
    return result


def _file_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def report(results: list[dict], rounds: int, argv: list[str]) -> str:
    lines = ["## Retrieval (embedded store: SQLite FTS5 + numpy)", "",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  ",
             f"Command: `python loadtests/retrieval.py {' '.join(argv)}`  ",
             f"Machine: {os.cpu_count()} CPU cores, shared and noisy; medians over {rounds} "
             "rounds of each round's p50/p99.", "", __doc__.split("\n\n", 2)[2].strip(), "",
             "| chunks | principal's tenant | mode | p50 ms | p99 ms |", "|---:|---:|---|---:|---:|"]
    for r in results:
        for mode in MODES:
            p50, p99 = r["modes"][mode]
            lines.append(f"| {r['size']:,} | {r['tenant_chunks']:,} | {mode} | {p50:.2f} | {p99:.2f} |")
    lines += ["", "| chunks | build chunks/s | file MiB | first search (loads vectors) s "
              "| searching process VmRSS MiB (empty: before the store) |", "|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['size']:,} | {r['size'] / r['build_s']:,.0f} | {r['file_mib']:.0f} "
                     f"| {r['load_s']:.2f} | {r['rss_mib']:.0f} (empty {r['empty_rss_mib']:.0f}) |")
    largest = max(results, key=lambda r: r["size"])
    verdict = "PASS" if largest["modes"]["hybrid"][1] <= TARGET_P99_MS else "FAIL"
    lines += ["", f"- target hybrid p99 ≤ {TARGET_P99_MS:.0f} ms at {largest['size']:,} chunks: "
              f"**{verdict}** ({largest['modes']['hybrid'][1]:.2f} ms)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)   # the child process
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(asyncio.run(serve(args.serve, args.rounds))))
        return
    with tempfile.TemporaryDirectory(prefix="pw-retrieval-") as tmp:
        results = [measure(int(s), args.rounds, Path(tmp)) for s in args.sizes.split(",")]
    text = report(results, args.rounds, sys.argv[1:])
    print(text)
    if args.out:
        replace_block(args.out, "retrieval", text)


if __name__ == "__main__":
    main()
