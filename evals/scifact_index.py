"""SciFact as our ingest would index it: one Markdown document per abstract, parsed, chunked
and embedded by the pipeline's own code, written to a SqliteStore; both cached on disk.

    cache = IndexCache(model, corpus_path)        file names keyed by what changes them
    stats = await build(store, embedder, corpus, cache)

An abstract becomes `# <title>\n\n<text>` (the way a person would save it), parsed by
operators.documents.parse, cut by chunk_document with the chunk operator's default budget,
and embedded with title_prefixed, exactly what the chunk → embed → index operators do
for an uploaded .md file.

Two caches under $PATCHWIRE_DATA_DIR/evals (else ~/.cache/patchwire/evals), because they
age differently: the chunk vectors (30 minutes of MiniLM on two shared cores), keyed by
model, corpus bytes and chunking; and the store file, keyed by those and by the store's own
code (schema.py, tables.py), so a change of the store's format gives a fresh file built from
the cached vectors in seconds rather than an old file the new code silently reads as empty.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import msgspec
import numpy as np

from operators.documents.chunk import chunk_document, content_hash
from operators.documents.parse import parse_document
from operators.embed.engine import Embedder, Kind
from operators.ingest.chunk import ChunkConfig
from operators.ingest.embed import title_prefixed
from schemas.documents import ChunkBatch, ChunkRecord, DocumentInfo, DocumentKey, Principal

TENANT = COLLECTION = "scifact"
PRINCIPAL = Principal(user="eval", tenant=TENANT)
GROUP = 128                            # abstracts per embedding call
_ENCODE = msgspec.json.Encoder().encode


class Abstract(NamedTuple):
    doc_id: str
    title: str
    text: str


class Prepared(NamedTuple):
    doc: DocumentInfo
    batch: ChunkBatch


def read_corpus(path: Path) -> list[Abstract]:
    with open(path) as lines:
        return [Abstract(r["_id"], r["title"], r["text"]) for r in map(json.loads, lines)]


def cache_dir() -> Path:
    base = os.environ.get("PATCHWIRE_DATA_DIR")
    return Path(base) / "evals" if base else Path.home() / ".cache" / "patchwire" / "evals"


class IndexCache:
    """Where the vectors, their embedding figures and the store of one configuration live.

    The key is a hash of the model name, every document and chunk record, and every text
    the embedder is given: a change to the corpus, the parser, the chunker or
    title_prefixed gives new files, never vectors of other texts."""

    def __init__(self, model: str, prepared: list[Prepared]):
        digest = hashlib.sha256(model.encode())
        for p in prepared:
            digest.update(_ENCODE(p.batch))
            digest.update("\0".join(title_prefixed(p.batch)).encode())
        stem = cache_dir() / f"scifact-{model}-{digest.hexdigest()[:16]}"
        self.vectors, self.figures = stem.with_suffix(".npy"), stem.with_suffix(".json")
        self.store = Path(f"{stem}-store-{_store_code_hash()}.sqlite")

    def remove_stale_stores(self) -> None:
        """Stores of these vectors built by an older store code: never read again."""
        for path in self.store.parent.glob(f"{self.vectors.stem}-store-*.sqlite*"):
            if not path.name.startswith(self.store.name):
                path.unlink(missing_ok=True)

    def load(self, chunks: int) -> np.ndarray | None:
        if not self.vectors.exists():
            return None
        vectors = np.load(self.vectors)
        return vectors if vectors.shape[0] == chunks else None

    def save(self, vectors: np.ndarray, stats: BuildStats) -> None:
        self.vectors.parent.mkdir(parents=True, exist_ok=True)
        partial = self.vectors.with_suffix(".partial.npy")
        np.save(partial, vectors)
        partial.replace(self.vectors)
        self.figures.write_text(json.dumps(msgspec.to_builtins(stats)))

    def embedding_figures(self) -> BuildStats | None:
        """How fast the cached vectors were made, when they were."""
        if not self.figures.exists():
            return None
        return msgspec.convert(json.loads(self.figures.read_text()), BuildStats)


def _store_code_hash() -> str:
    from operators.store import schema, tables
    digest = hashlib.sha256()
    for module in (schema, tables):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def as_markdown(a: Abstract) -> bytes:
    return f"# {a.title}\n\n{a.text}\n".encode()


def prepare(a: Abstract, chunking: ChunkConfig = ChunkConfig()) -> Prepared:
    key = DocumentKey(tenant=TENANT, collection=COLLECTION, doc_id=a.doc_id)
    return prepare_markdown(as_markdown(a), key, ["*"], chunking)


def prepare_markdown(data: bytes, key: DocumentKey, acl: list[str],
                     chunking: ChunkConfig = ChunkConfig()) -> Prepared:
    """Parse and chunk one .md document as the chunk operator would (operators/ingest/chunk.py)."""
    parsed = parse_document(data, f"{key.doc_id}.md")
    chunks = chunk_document(parsed, key.doc_id, chunking.max_tokens, chunking.overlap_tokens)
    records = [ChunkRecord(index=c.index, text=c.text, start=c.start, end=c.end,
                           section_path=c.section_path, token_count=c.token_count) for c in chunks]
    doc = DocumentInfo(key=key, version=content_hash(data), title=parsed.title, acl=acl,
                       chunks=len(records))
    return Prepared(doc, ChunkBatch(doc=doc, parts=1, chunks=records))


class BuildStats(msgspec.Struct, kw_only=True):
    documents: int = 0
    chunks: int = 0
    embedded: int = 0               # chunks embedded by the run these figures describe
    embed_s: float = 0.0
    store_s: float = 0.0
    threads: int = 0                # the embedder's OpenBLAS threads
    cached: str = ""                # "": embedded now; "vectors" or "store": taken from cache
    date: str = ""

    @property
    def chunks_per_s(self) -> float:
        """Embedding rate: chunks per second of embedding (parse, chunk, store apart)."""
        return self.embedded / self.embed_s if self.embed_s and self.embedded else 0.0


async def build(store, embedder: Embedder, prepared: list[Prepared],
                cache: IndexCache) -> BuildStats:
    """Make `store` (opened for this embedder at cache.store) serve every prepared abstract;
    embed only what the cache does not hold."""
    stats = BuildStats(documents=len(prepared), chunks=sum(p.doc.chunks for p in prepared))
    if (await store.count())["documents"] == len(prepared):
        return _cached(stats, cache, "store")
    vectors = cache.load(stats.chunks)
    if vectors is None:
        vectors = await _embed_all(embedder, prepared, stats)
        cache.save(vectors, stats)
    else:
        stats = _cached(stats, cache, "vectors")
    started = time.perf_counter()
    await write(store, prepared, vectors)
    stats.store_s = time.perf_counter() - started
    return stats


def _cached(stats: BuildStats, cache: IndexCache, what: str) -> BuildStats:
    earlier = cache.embedding_figures() or BuildStats()
    return msgspec.structs.replace(earlier, documents=stats.documents, chunks=stats.chunks,
                                   cached=what)


async def _embed_all(embedder: Embedder, prepared: list[Prepared], stats: BuildStats) -> np.ndarray:
    started = time.perf_counter()
    parts = [await embed_passages(embedder, group) for group in _groups(prepared, GROUP)]
    stats.embed_s = time.perf_counter() - started
    stats.embedded = stats.chunks
    stats.threads = getattr(getattr(embedder, "config", None), "threads", 0)
    stats.date = time.strftime("%Y-%m-%d %H:%M %Z")
    return np.concatenate(parts)


async def embed_passages(embedder: Embedder, docs: list[Prepared]) -> np.ndarray:
    """One embedding call for several documents: what the embed operator embeds per chunk."""
    return await embedder.embed([t for p in docs for t in title_prefixed(p.batch)], Kind.PASSAGE)


async def write(store, docs: list[Prepared], vectors: np.ndarray) -> None:
    """Stage and commit each document, as the index operator does with a one-part batch."""
    at = 0
    for p in docs:
        await store.put_chunks(p.doc, p.batch.chunks, vectors[at:at + p.doc.chunks])
        await store.commit(p.doc)
        at += p.doc.chunks


def _groups(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
