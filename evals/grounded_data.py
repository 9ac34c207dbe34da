"""MTRAG-UN tasks as the answer operator sees them: Candidates built from the gold passages.

Each task of mtragun_reference.jsonl is one conversation ending in a user turn, with the
gold passages (`contexts`), the reference answer (`targets[0]`) and a label
(`answerability[0]`: ANSWERABLE, UNANSWERABLE, UNDERSPECIFIED, PARTIAL).

Unanswerable tasks come with no passages at all. Given none, the answer operator abstains
without calling the model, which would make the abstention figure a tautology; a real
retriever always returns *something*. So an unanswerable task gets the `distractors`
passages nearest its question (MiniLM cosine, the pipeline's own embedder) among the gold
passages of the other tasks of its collection: on topic, and (the label says the collection
holds no answer) not answering it. The model and the verifier must notice.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

import msgspec
import numpy as np

from schemas.documents import AskRequest, Candidates, DocumentKey, Passage, Query, Turn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/qa/mtrag_un/mtragun_reference.jsonl"
ANSWERABLE, UNANSWERABLE = "ANSWERABLE", "UNANSWERABLE"


class Context(msgspec.Struct, frozen=True):
    document_id: str
    text: str
    title: str = ""


class Task(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    label: str
    collection: str
    turns: list[Turn]                 # the whole conversation; the last is the user's question
    contexts: list[Context]
    target: str

    @property
    def question(self) -> str:
        return self.turns[-1].content


def load_tasks(path: Path = DATA) -> list[Task]:
    return [_task(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _task(row: dict) -> Task:
    turns = [Turn(role="user" if t["speaker"] == "user" else "assistant", content=t["text"])
             for t in row["input"]]
    contexts = [Context(c["document_id"], c["text"], c.get("title", "")) for c in row["contexts"]]
    return Task(task_id=row["task_id"], label=row["answerability"][0],
                collection=row["Collection"], turns=turns, contexts=contexts,
                target=row["targets"][0]["text"] if row["targets"] else "")


def stratified(tasks: list[Task], label: str, seed: int) -> list[Task]:
    """Every task of `label` in a seeded order whose every prefix holds the collections in
    proportion: each collection's shuffled tasks are spread evenly over [0, 1] and merged."""
    groups: dict[str, list[Task]] = defaultdict(list)
    for t in sorted(tasks, key=lambda t: t.task_id):
        if t.label == label:
            groups[t.collection].append(t)
    rng = random.Random(seed)
    for c in sorted(groups):
        rng.shuffle(groups[c])
    spread = sorted(((k + 0.5) / len(g), c, k) for c, g in groups.items() for k in range(len(g)))
    return [groups[c][k] for _, c, k in spread]


def sample(tasks: list[Task], answerable: int, unanswerable: int, seed: int = 0) -> list[Task]:
    """Answerable and unanswerable tasks alternating, so a run cut short is still balanced,
    and a smaller sample is a prefix of a larger one (their cached results are shared)."""
    yes = stratified(tasks, ANSWERABLE, seed)[:answerable]
    no = stratified(tasks, UNANSWERABLE, seed)[:unanswerable]
    mixed = [t for pair in zip(yes, no) for t in pair]
    return mixed + yes[len(no):] + no[len(yes):]


def passage(c: Context, collection: str, relevance: float | None = None) -> Passage:
    return Passage(chunk_id=f"{c.document_id}#0", key=DocumentKey(collection=collection,
                   doc_id=c.document_id), index=0, text=c.text, start=0, end=len(c.text),
                   title=c.title, relevance=relevance)


def candidates(task: Task, passages: list[Passage]) -> Candidates:
    """What rerank would hand the answer step: the question, its history, the passages."""
    ask = AskRequest(request_id=task.task_id, question=task.question, history=task.turns[:-1])
    return Candidates(query=Query(ask=ask, query=task.question), passages=passages)


def gold_passages(task: Task) -> list[Passage]:
    return [passage(c, task.collection) for c in task.contexts]


class DistractorPool:
    """Every gold passage of the dataset, embedded once (cached on disk), searched by cosine."""

    def __init__(self, tasks: list[Task], cache_dir: Path):
        seen: dict[str, tuple[str, Context]] = {}
        for t in tasks:
            for c in t.contexts:
                seen.setdefault(c.document_id, (t.collection, c))
        self.items = list(seen.values())
        digest = hashlib.sha256("\n".join(seen).encode()).hexdigest()[:16]
        self.cache = cache_dir / f"mtrag-pool-minilm-{digest}.npy"
        self.vectors: np.ndarray | None = None
        self.embedder = None

    async def open(self) -> None:
        from operators.embed.minilm import MiniLmConfig, MiniLmEmbedder
        self.embedder = MiniLmEmbedder(MiniLmConfig(threads=2))
        if self.cache.exists():
            self.vectors = np.load(self.cache)
            return
        texts = [f"{c.title}\n{c.text}" if c.title else c.text for _, c in self.items]
        self.vectors = await self.embedder.embed(texts, "passage")
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(self.cache, self.vectors)

    async def close(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()

    async def nearest(self, task: Task, k: int) -> list[Passage]:
        """The k passages of the task's collection most similar to its last two user turns
        (a follow-up like "Are those the only steps?" needs the turn before to mean anything)."""
        users = [t.content for t in task.turns if t.role == "user"][-2:]
        query = (await self.embedder.embed([" ".join(users)], "query"))[0]
        scores = self.vectors @ query
        mine = [i for i, (col, _) in enumerate(self.items) if col == task.collection]
        best = sorted(mine, key=lambda i: -scores[i])[:k]
        return [passage(self.items[i][1], task.collection, round(float(scores[i]), 4))
                for i in best]
