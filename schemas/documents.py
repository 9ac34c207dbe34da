"""Documents: ingest jobs, chunks on their way to the index, and the question/answer flow.

Who may read what: every document belongs to one tenant and lists the groups that may read
it (`acl`; "*" means everyone in the tenant). A question carries the asker's Principal, set
by the gateway after it authenticated the caller, never taken from the caller's own words.
"""
from __future__ import annotations

from typing import Any, Literal, Union

import msgspec

from schemas.base import Message, ObjectRef

EVERYONE = "*"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks: one tenant, the groups they are in (their user id is one of them)."""

    user: str = "anonymous"
    tenant: str = "default"
    groups: list[str] = []

    def may_read(self, tenant: str, acl: list[str]) -> bool:
        """The rule every store enforces inside its query; here for tests and small lists."""
        if tenant != self.tenant:
            return False
        return EVERYONE in acl or f"user:{self.user}" in acl or bool(set(acl) & set(self.groups))

    @property
    def readable(self) -> list[str]:
        """The ACL entries that grant this principal access."""
        return sorted({EVERYONE, f"user:{self.user}", *self.groups})


# --- ingestion ------------------------------------------------------------------------

class DocumentKey(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str = "default"
    collection: str = "default"
    doc_id: str                       # stable per source (a path, a URL, a meeting id)


class IngestJob(Message, frozen=True):
    """Put (or replace) one document. `source` is None for a delete."""

    key: DocumentKey
    source: ObjectRef | None = None
    filename: str = ""
    content_type: str = ""
    content_hash: str = ""            # sha256 of the bytes: the document's version
    acl: list[str] = msgspec.field(default_factory=lambda: [EVERYONE])
    metadata: dict[str, str] = {}
    delete: bool = False


class ChunkRecord(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    text: str                         # == the parsed document's text[start:end]
    start: int
    end: int
    section_path: list[str] = []
    token_count: int = 0


class DocumentInfo(msgspec.Struct, frozen=True, kw_only=True):
    key: DocumentKey
    version: str                      # the content hash
    title: str = ""
    filename: str = ""
    acl: list[str] = msgspec.field(default_factory=lambda: [EVERYONE])
    metadata: dict[str, str] = {}
    chunks: int = 0                   # how many chunks this version has in all


Action = Literal["put", "unchanged", "delete"]


class ChunkBatch(Message, frozen=True):
    """Part `part` of `parts` of one document version's chunks (parts=0: nothing to embed)."""

    doc: DocumentInfo
    action: Action = "put"
    part: int = 0
    parts: int = 0
    chunks: list[ChunkRecord] = []
    warnings: list[str] = []


class EmbeddedBatch(Message, frozen=True):
    """A ChunkBatch with one float32 row per chunk (little-endian bytes, rows × dim)."""

    batch: ChunkBatch
    model: str = ""
    dim: int = 0
    vectors: bytes = b""


class Indexed(Message, frozen=True):
    """A document is now searchable in this version (or gone, or left as it was)."""

    key: DocumentKey
    version: str
    action: Action
    chunks: int = 0
    replaced: str = ""                # the version it replaced, if any


# --- questions and answers ------------------------------------------------------------

class Turn(msgspec.Struct, frozen=True, kw_only=True):
    role: Literal["user", "assistant"]
    content: str


class AskRequest(Message, frozen=True):
    request_id: str
    question: str
    principal: Principal = Principal()
    history: list[Turn] = []
    collections: list[str] = []       # empty: every collection
    filters: dict[str, str] = {}      # metadata equality filters
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    top_k: int = 0                    # 0: the pipeline's setting


class Passage(msgspec.Struct, frozen=True, kw_only=True):
    """One retrieved chunk with where it comes from and why it ranked where it did."""

    chunk_id: str                     # "<doc_id>#<index>"
    key: DocumentKey
    index: int
    text: str
    start: int
    end: int
    title: str = ""
    section_path: list[str] = []
    score: float = 0.0
    vector_rank: int = 0              # 1-based; 0 = not found by that search
    keyword_rank: int = 0
    keyword_score: float = 0.0        # BM25 (larger is better); 0 = not found by keyword
    relevance: float | None = None    # the reranker's judgement, when it ran


class Query(Message, frozen=True):
    """A standalone query (after rewrite), or a clarifying question to send back."""

    ask: AskRequest
    query: str
    clarify: str = ""
    timings: dict[str, float] = {}    # stage → milliseconds so far


class Candidates(Message, frozen=True):
    query: Query
    passages: list[Passage] = []
    closest: list[Passage] = []       # what was found but filtered out (shown when abstaining)
    timings: dict[str, float] = {}


class Citation(msgspec.Struct, frozen=True, kw_only=True):
    n: int                            # the [n] in the answer
    chunk_id: str
    key: DocumentKey
    title: str = ""
    section_path: list[str] = []
    start: int = 0                    # character span in the parsed document
    end: int = 0
    quote: str = ""                   # the sentence(s) of the chunk that support the answer


class Draft(Message, frozen=True):
    """The generated answer before verification, with the passages it may cite as [n]."""

    query: Query
    text: str
    passages: list[Passage] = []      # passages[n-1] is [n]
    timings: dict[str, float] = {}


class AnswerDelta(Message, frozen=True):
    """Draft text as it is generated (before verification), for streaming."""

    request_id: str
    index: int
    text: str


Outcome = Literal["answered", "abstained", "clarify", "no_access", "rejected"]


class Answer(Message, frozen=True):
    request_id: str
    text: str
    outcome: Outcome = "answered"
    citations: list[Citation] = []
    sources: list[Passage] = []       # the closest passages (shown when abstaining too)
    removed: list[str] = []           # draft sentences the verifier removed, and why
    query: str = ""                   # the standalone query that was searched
    timings: dict[str, float] = {}    # stage → milliseconds
    warnings: list[str] = []
    extra: dict[str, Any] = {}


DraftEvent = Union[AnswerDelta, Draft]
AskEvent = Union[AnswerDelta, Answer]
