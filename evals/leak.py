"""Permission leak test: can any query make the store show a principal what it may not read?

    python -m evals.leak [--queries 1000] [--docs-per-acl 6] [--seed 7]

Two tenants with overlapping group names and user ids, documents under nine kinds of ACL
(everyone, one group, two groups, one user, a group nobody is in), each with a planted
canary token (CANARY-acme-finance-7f3a) in its text. Real parts throughout: SciFact
abstracts as text, our parse/chunk/title_prefixed, MiniLM vectors, a SqliteStore written by
one instance and searched by another on the same file (the index and retrieve processes).

Queries, in vector, keyword and hybrid modes, from principals of both tenants: a foreign
document's canary verbatim, the exact text of a foreign chunk, a SciFact claim, and, as
controls, the principal's own canaries (which keyword and hybrid search must find: a
search that returned nothing would pass the leak check trivially). Halfway through, the
writer revokes and grants groups, deletes documents and replaces others with a new version
(a new canary; the old one must then be visible to nobody), so the second half also
tests that the reader's cached permission masks and vectors follow the file.

Every hit is checked against our own record of who may read what (Principal.may_read), not
the store's: foreign chunks, chunks of deleted documents or replaced versions, and canaries
seen by a principal that may not read them must all be 0.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
from pathlib import Path

import msgspec

from evals.leak_corpus import Corpus, LeakDoc, Planned, make_corpus, mutate, plan_queries
from evals.scifact_index import embed_passages, write
from operators.embed.engine import Embedder, Kind
from operators.store.engine import Hit, SearchQuery

CANARY = re.compile(r"CANARY-[a-z]+-[a-z0-9]+-[0-9a-f]{4}")


class LeakReport(msgspec.Struct, kw_only=True):
    queries: int = 0
    hits: int = 0
    foreign_chunks: int = 0          # chunks of documents the principal may not read
    stale_chunks: int = 0            # chunks of a replaced version or a deleted document
    wrong_canaries: int = 0          # canaries shown to a principal that may not read them
    control_found: int = 0           # own-canary queries (keyword, hybrid) that found the doc
    control_total: int = 0
    documents: int = 0               # indexed before the changes
    changes: dict[str, int] = {}     # what the writer did halfway
    by_kind: dict[str, int] = {}
    by_mode: dict[str, int] = {}
    examples: list[str] = []         # the first few leaks, for the report

    @property
    def leaks(self) -> int:
        return self.foreign_chunks + self.stale_chunks + self.wrong_canaries


def check_hits(q: Planned, hits: list[Hit], corpus: Corpus, report: LeakReport) -> None:
    """Count every way the hits show `q.principal` something it may not read."""
    for hit in hits:
        report.hits += 1
        doc = corpus.live.get(hit.chunk.key)
        if doc is None or doc.version != hit.chunk.version:
            report.stale_chunks += 1
            _example(report, q, f"stale chunk {hit.chunk.chunk_id}@{hit.chunk.version[:8]}")
        elif not q.principal.may_read(doc.tenant, doc.acl):
            report.foreign_chunks += 1
            _example(report, q, f"foreign chunk {hit.chunk.chunk_id} (acl {doc.acl})")
        for token in CANARY.findall(f"{hit.chunk.title}\n{hit.chunk.text}"):
            if not corpus.canary_readable(token, q.principal):
                report.wrong_canaries += 1
                _example(report, q, f"canary {token} in {hit.chunk.chunk_id}")
    if q.control is not None and q.mode != "vector":
        report.control_total += 1
        report.control_found += any(h.chunk.key == q.control for h in hits)


def _example(report: LeakReport, q: Planned, what: str) -> None:
    if len(report.examples) < 10:
        p = q.principal
        report.examples.append(f"{p.user}@{p.tenant}{p.groups} {q.mode} {q.kind}: {what}")


async def run_queries(store, embedder: Embedder, corpus: Corpus, planned: list[Planned],
                      report: LeakReport, k: int = 20) -> None:
    texts = list(dict.fromkeys(q.text for q in planned))
    vectors = dict(zip(texts, await embedder.embed(texts, Kind.QUERY)))
    for q in planned:
        vector = vectors[q.text].tolist() if q.mode != "keyword" else None
        hits = await store.search(SearchQuery(principal=q.principal, text=q.text, vector=vector,
                                              mode=q.mode, k=k))
        report.queries += 1
        report.by_kind[q.kind] = report.by_kind.get(q.kind, 0) + 1
        report.by_mode[q.mode] = report.by_mode.get(q.mode, 0) + 1
        check_hits(q, hits, corpus, report)


async def index(store, embedder: Embedder, docs: list[LeakDoc]) -> None:
    prepared = [d.prepared for d in docs]
    await write(store, prepared, await embed_passages(embedder, prepared))


async def run_leak_test(workdir: Path, embedder: Embedder, queries: int = 1000,
                        docs_per_acl: int = 6, seed: int = 7, max_words: int | None = None,
                        reader=None) -> LeakReport:
    """Build, search, mutate, search again. `max_words` cuts the abstracts (a faster test);
    `reader` wraps the searching store (a test uses it to prove the checks catch a leak)."""
    from operators.store.sqlite import SqliteStore
    rng = random.Random(seed)
    corpus = make_corpus(rng, docs_per_acl, max_words)
    writer, search_store = SqliteStore(workdir / "leak.sqlite"), SqliteStore(workdir / "leak.sqlite")
    report = LeakReport()
    try:
        for s in (writer, search_store):
            await s.open(embedder.name, embedder.dim)
        searcher = reader(search_store) if reader else search_store
        await index(writer, embedder, list(corpus.live.values()))
        report.documents = len(corpus.live)
        first = queries // 2
        await run_queries(searcher, embedder, corpus, plan_queries(rng, corpus, first), report)
        replaced, report.changes = await mutate(rng, corpus, writer)
        await index(writer, embedder, replaced)
        await run_queries(searcher, embedder, corpus, plan_queries(rng, corpus, queries - first), report)
    finally:
        for s in (search_store, writer):
            await s.close()
    return report


def render(report: LeakReport) -> str:
    rate = report.control_found / report.control_total if report.control_total else 0.0
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.by_kind.items()))
    modes = ", ".join(f"{k} {n}" for k, n in sorted(report.by_mode.items()))
    changes = ", ".join(f"{what} {n}" for what, n in report.changes.items())
    lines = [f"documents {report.documents} in 2 tenants (+1 with none), 9 ACL kinds; "
             f"halfway: {changes}",
             f"queries {report.queries} ({modes}; {kinds}), hits checked {report.hits}",
             f"foreign chunks {report.foreign_chunks}, stale chunks {report.stale_chunks}, "
             f"canaries seen by the wrong principal {report.wrong_canaries}",
             f"controls: own canary found {report.control_found}/{report.control_total} "
             f"({rate:.0%}) in keyword and hybrid mode"]
    return "\n".join(lines + [f"  leak: {e}" for e in report.examples])


async def _main(args: argparse.Namespace) -> int:
    from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
    embedder = MiniLmEmbedder(MiniLmConfig(threads=args.threads))
    try:
        with tempfile.TemporaryDirectory(prefix="pw-leak-") as tmp:
            report = await run_leak_test(Path(tmp), embedder, args.queries, args.docs_per_acl,
                                         args.seed)
    finally:
        await embedder.close()
    text = render(report)
    print(text)
    if args.out:
        from loadtests.results import replace_block
        replace_block(args.out, "qa-leak", "## Permission leak test (`python -m evals.leak`, "
                      "real SqliteStore + MiniLM)\n\n```\n" + text + "\n```")
    return 1 if report.leaks or report.control_found < report.control_total * 0.9 else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.leak", description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--docs-per-acl", type=int, default=6, help="documents per (tenant, ACL)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="OpenBLAS threads of the embedder")
    ap.add_argument("--out", type=Path, help="also write the figures into this RESULTS.md")
    return asyncio.run(_main(ap.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
