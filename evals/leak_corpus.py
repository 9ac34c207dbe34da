"""The world of the permission leak test (evals/leak.py): tenants, users, ACLs, documents
with canaries, the mutations between its two halves, and the queries it asks.

Names collide on purpose: both tenants have groups finance/hr/eng, users alice/bob/carol/dan
and documents doc-000…; a third tenant (initech) owns nothing. So a check that compared
group names, user ids or doc ids without the tenant would show up as a leak.
"""
from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path
from typing import NamedTuple

import msgspec

from evals.scifact_index import Prepared, prepare_markdown
from schemas.documents import DocumentKey, Principal

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "qa" / "scifact"
TENANTS = ("acme", "globex")
ACLS: dict[str, list[str]] = {
    "everyone": ["*"], "finance": ["finance"], "hr": ["hr"], "eng": ["eng"],
    "financehr": ["finance", "hr"], "useralice": ["user:alice"], "usercarol": ["user:carol"],
    "board": ["board"], "bobeng": ["user:bob", "eng"]}
MEMBERS = {"alice": ["finance"], "bob": ["hr"], "carol": [], "dan": ["finance", "hr", "eng"]}
PRINCIPALS = [Principal(user=u, tenant=t, groups=g) for t in TENANTS for u, g in MEMBERS.items()]
PRINCIPALS.append(Principal(user="alice", tenant="initech", groups=["finance"]))
KINDS = {"foreign-canary": 3, "foreign-text": 3, "topic": 2, "own-canary": 2}   # weights
MODES = ("vector", "keyword", "hybrid")
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s*(?=[A-Z])")


class LeakDoc(msgspec.Struct, kw_only=True):
    key: DocumentKey
    acl: list[str]
    canary: str
    prepared: Prepared

    @property
    def tenant(self) -> str:
        return self.key.tenant

    @property
    def version(self) -> str:
        return self.prepared.doc.version

    @property
    def chunk_texts(self) -> list[str]:
        return [c.text for c in self.prepared.batch.chunks]


class Planned(NamedTuple):
    principal: Principal
    kind: str
    mode: str
    text: str
    control: DocumentKey | None = None      # own-canary: the document that must be found


class Corpus:
    """Our own record of what is live, who may read it, and every canary ever planted."""

    def __init__(self, abstracts: list[dict], claims: list[str], max_words: int | None):
        self.abstracts, self.claims, self.max_words = abstracts, claims, max_words
        self.live: dict[DocumentKey, LeakDoc] = {}
        self.canaries: dict[str, DocumentKey] = {}      # live canary → its document
        self.retired: set[str] = set()                  # canaries of deleted / replaced versions

    def canary_readable(self, token: str, principal: Principal) -> bool:
        key = self.canaries.get(token)
        doc = self.live.get(key) if key is not None else None
        return doc is not None and principal.may_read(doc.tenant, doc.acl)

    def add(self, rng: random.Random, key: DocumentKey, acl_name: str) -> LeakDoc:
        canary = self._new_canary(rng, key.tenant, acl_name)
        doc = LeakDoc(key=key, acl=ACLS[acl_name], canary=canary,
                      prepared=prepare_markdown(self._text(rng, canary), key, ACLS[acl_name]))
        self.live[key], self.canaries[canary] = doc, key
        return doc

    def retire(self, key: DocumentKey) -> None:
        doc = self.live.pop(key)
        del self.canaries[doc.canary]
        self.retired.add(doc.canary)

    def _new_canary(self, rng: random.Random, tenant: str, acl_name: str) -> str:
        while True:
            token = f"CANARY-{tenant}-{acl_name}-{rng.getrandbits(16):04x}"
            if token not in self.canaries and token not in self.retired:
                return token

    def _text(self, rng: random.Random, canary: str) -> bytes:
        """A SciFact abstract with the canary sentence after its first sentence."""
        row = rng.choice(self.abstracts)
        words = row["text"].split()
        body = " ".join(words[:self.max_words] if self.max_words else words)
        first, *rest = _SENTENCE_END.split(body, maxsplit=1)
        planted = f"{first} Internal reference {canary}. {' '.join(rest)}".strip()
        return f"# {row['title']}\n\n{planted}\n".encode()


def make_corpus(rng: random.Random, docs_per_acl: int, max_words: int | None = None,
                data: Path = SCIFACT) -> Corpus:
    with open(data / "corpus.jsonl") as lines:
        abstracts = [json.loads(line) for line in itertools.islice(lines, 2000)]
    with open(data / "queries.jsonl") as lines:
        claims = [json.loads(line)["text"] for line in lines]
    corpus = Corpus(abstracts, claims, max_words)
    for tenant in TENANTS:
        n = 0
        for acl_name in ACLS:
            for _ in range(docs_per_acl):
                corpus.add(rng, DocumentKey(tenant=tenant, doc_id=f"doc-{n:03d}"), acl_name)
                n += 1
    return corpus


async def mutate(rng: random.Random, corpus: Corpus, store) -> tuple[list[LeakDoc], dict[str, int]]:
    """Change ACLs, delete and replace a sixth of the documents each; return the new
    versions to index and how many documents each change touched."""
    keys = sorted(corpus.live, key=lambda k: (k.tenant, k.doc_id))
    rng.shuffle(keys)
    sixth = max(1, len(keys) // 6)
    for key in keys[:sixth]:                                    # ACL changed in place
        doc = corpus.live[key]
        doc.acl = ACLS[rng.choice([n for n, a in ACLS.items() if a != doc.acl])]
        await store.update_document(msgspec.structs.replace(doc.prepared.doc, acl=doc.acl))
    for key in keys[sixth:2 * sixth]:                           # deleted
        corpus.retire(key)
        await store.delete(key)
    replaced = []
    for key in keys[2 * sixth:3 * sixth]:                       # new version, new canary
        acl_name = next(n for n, a in ACLS.items() if a == corpus.live[key].acl)
        corpus.retire(key)
        replaced.append(corpus.add(rng, key, acl_name))
    return replaced, {"acl changed": sixth, "deleted": sixth, "replaced": len(replaced)}


def plan_queries(rng: random.Random, corpus: Corpus, n: int) -> list[Planned]:
    kinds, weights = zip(*KINDS.items())
    return [_plan(rng, corpus, rng.choice(PRINCIPALS), rng.choices(kinds, weights)[0],
                  rng.choice(MODES)) for _ in range(n)]


def _plan(rng: random.Random, corpus: Corpus, p: Principal, kind: str, mode: str) -> Planned:
    docs = sorted(corpus.live.values(), key=lambda d: (d.tenant, d.key.doc_id))
    own = [d for d in docs if p.may_read(d.tenant, d.acl)]
    foreign = [d for d in docs if not p.may_read(d.tenant, d.acl)]
    if kind == "own-canary" and own:
        doc = rng.choice(own)
        return Planned(p, kind, mode, doc.canary, doc.key)
    if kind == "foreign-canary":
        pool = [d.canary for d in foreign] + sorted(corpus.retired)
        return Planned(p, kind, mode, rng.choice(pool))
    if kind == "foreign-text":
        return Planned(p, kind, mode, rng.choice(rng.choice(foreign).chunk_texts))
    return Planned(p, "topic", mode, rng.choice(corpus.claims))
