"""Archive: a meeting's minutes in; the transcript, as a document for the QA store, out.

Files the minutes (`<job>/minutes.json` in the object store, for the gateway and later
reads), applies the audio retention the user asked for, and hands the transcript to the
ingest path (chunk → embed → index) in the meeting's collection with the meeting's ACL, so
"what did we decide about the budget?" finds the moment it was said. A meeting without a
document id (filed with index=false, or silent) ends here.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator

import msgspec

from operators.audio_io import scratch_file
from operators.base import Context, Operator
from operators.meeting.formats import published
from schemas import IngestJob, MeetingMinutes
from schemas.documents import DocumentKey

UNSAFE = re.compile(r"[^\w .,()-]+")


def document_id(job_id: str) -> str:
    return f"meeting/{job_id}"


def minutes_name(job_id: str) -> str:
    return f"{job_id}/minutes.json"


def document_filename(minutes: MeetingMinutes) -> str:
    """The title the QA store shows for the meeting (its file name's stem)."""
    title = " ".join(UNSAFE.sub(" ", minutes.info.title).split())[:120]
    return f"{title or 'Meeting ' + minutes.job_id}.json"


class Archive(Operator[MeetingMinutes, IngestJob]):
    kind = "archive"
    input_type = MeetingMinutes
    output_type = IngestJob

    async def process(self, msg: MeetingMinutes, ctx: Context) -> AsyncIterator[IngestJob]:
        info = msg.info
        if not info.keep_audio:
            await self._forget_audio(msg, ctx)
            msg = msgspec.structs.replace(msg, audio=None)
        await self._put(ctx, minutes_name(msg.job_id), msgspec.json.encode(msg),
                        "application/json")
        if not msg.document_id:     # summarize decided: not asked for, or nothing to search
            return
        body = msgspec.json.encode(published(msg.transcript))
        ref = await self._put(ctx, f"{msg.job_id}/transcript.json", body, "application/json")
        yield IngestJob(
            key=DocumentKey(tenant=info.tenant, collection=info.collection,
                            doc_id=msg.document_id),
            source=ref, filename=document_filename(msg), content_type="application/json",
            acl=list(info.acl), metadata={"meeting": msg.job_id, "kind": "meeting"})

    async def _put(self, ctx: Context, name: str, data: bytes, content_type: str):
        with scratch_file(ctx, ".json") as path:
            path.write_bytes(data)
            return await ctx.blobs.put_file(name, path, content_type)

    async def _forget_audio(self, msg: MeetingMinutes, ctx: Context) -> None:
        audio = msg.transcript.audio
        for ref in (msg.audio, audio.source if audio else None):
            if ref is not None:
                await ctx.blobs.delete(ref)
