"""What the gateway needs from the document QA product, whatever runs it.

The gateway authenticates the caller, turns HTTP into these calls and the results back
into JSON or server-sent events. The implementation over the bus lives in topology/qa.py;
tests may drive the gateway with any object that has these methods.
"""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Literal, Protocol

import msgspec

from schemas.documents import AskEvent, AskRequest, DocumentInfo, DocumentKey, Principal

JobStage = Literal["queued", "parsing", "embedding", "indexing", "done", "unchanged",
                   "deleted", "retrying", "failed"]
FINAL_STAGES = ("done", "unchanged", "deleted", "failed")


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    filename: str
    path: Path                        # a temporary file holding the bytes
    content_type: str = ""


class IngestTicket(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    key: DocumentKey
    filename: str = ""


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    stage: JobStage
    note: str = ""                    # for "failed": the reason, for the user
    done: float = 0.0
    total: float = 0.0

    @property
    def final(self) -> bool:
        return self.stage in FINAL_STAGES


class QaService(Protocol):
    def ask(self, request: AskRequest) -> AsyncIterator[AskEvent]:
        """AnswerDelta events while the draft is generated, then exactly one Answer."""

    async def ingest(self, upload: Upload, key: DocumentKey, acl: list[str],
                     metadata: dict[str, str] | None = None) -> IngestTicket: ...

    def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """Events of one ingest job, ending with a final one."""

    async def delete(self, key: DocumentKey) -> IngestTicket: ...

    async def documents(self, principal: Principal, collection: str = "") -> list[DocumentInfo]:
        """The documents this principal may read."""
