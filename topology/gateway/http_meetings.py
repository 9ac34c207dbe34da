"""The meeting transcriber over HTTP: upload, progress, minutes in every format, the recording.

    GET  /meetings.html (and / when the gateway serves no QA bot)   the page
    POST /v1/meetings                   multipart `file` + fields → 202 {job_id, URLs}
    GET  /v1/meetings/{job_id}/events   SSE: queued, each stage…, then done | failed
    GET  /v1/meetings/{job_id}          the minutes as JSON; ?format=md|srt|vtt|rttm|summary
    GET  /v1/meetings/{job_id}/audio    audio/wav, with Range (the player seeks)
    GET  /v1/meetings/{job_id}/link     {"query": "expires=…&sig=…"}: a signed query that
                                        reads the two above for an hour without credentials

The link exists because an <audio> element and a download link cannot send an
Authorization header. A meeting belongs to the uploader's tenant; its ACL is the uploader
(`user:NAME`) when the gateway has users, else everyone. A meeting the caller may not read
gets the same 404 as one that does not exist, so ids cannot be probed.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import BodyPartReader, web

from operators.meeting.formats import FORMATS, Format
from schemas import MeetingInfo
from schemas.meeting_info import EVERYONE
from topology.gateway.http import (STATIC, ApiError, Gateway, _json, _read_part,
                                   _safe_filename, _service_errors)
from topology.gateway.meetings import MeetingEvent, MeetingService, recording_name
from topology.gateway.service import Upload
from topology.meeting import MeetingError, meeting_info, render_minutes

TEXT_FIELDS = ("title", "participants", "agenda", "speakers", "redact")
FLAG_FIELDS = ("redact_names", "disfluencies", "summarize", "index")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
FORMAT_NAMES = tuple(f.value for f in Format)
MAX_FIELD_BYTES = 8 * 1024
LINK_TTL_S = 3600.0


def add_routes(app: web.Application, gateway: Gateway, service: MeetingService, *,
               at_root: bool) -> None:
    routes = MeetingRoutes(gateway, service)
    if at_root:
        app.router.add_get("/", routes.page)
    app.router.add_get("/meetings.html", routes.page)
    app.router.add_post("/v1/meetings", routes.submit)
    app.router.add_get("/v1/meetings/{job_id}/events", routes.events)
    app.router.add_get("/v1/meetings/{job_id}/audio", routes.audio)
    app.router.add_get("/v1/meetings/{job_id}/link", routes.link)
    app.router.add_get("/v1/meetings/{job_id}", routes.minutes)


class MeetingRoutes:
    def __init__(self, gateway: Gateway, service: MeetingService):
        self.gateway, self.service, self.config = gateway, service, gateway.config
        self._secret = secrets.token_bytes(32)    # links die with the process, by design

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "meetings.html")

    async def submit(self, request: web.Request) -> web.Response:
        principal = self.gateway.principal(request)
        if not request.content_type.startswith("multipart/form-data"):
            raise ApiError(415, "not_multipart", "send the recording as multipart/form-data")
        workdir = Path(tempfile.mkdtemp(prefix="pw-meeting-",
                                        dir=self.config.upload_dir or None))
        try:
            upload, form = await self._receive(request, workdir)
            anonymous = self.gateway.users is None
            acl = EVERYONE if anonymous else f"user:{principal.user}"
            info = _meeting(form, tenant=principal.tenant, acl=acl)
            with _service_errors():
                ticket = await self.service.submit(upload, info)
        finally:
            # The service has copied the recording into its object store by now.
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        base = f"/v1/meetings/{ticket.job_id}"
        return _json({"job_id": ticket.job_id, "filename": ticket.filename,
                      "events": f"{base}/events", "minutes": base, "audio": f"{base}/audio",
                      "link": f"{base}/link"}, status=202)

    async def _receive(self, request: web.Request, workdir: Path) -> tuple[Upload, dict]:
        upload, form = None, {}
        known = TEXT_FIELDS + FLAG_FIELDS
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "nested_multipart", "nested multipart bodies are not accepted")
            if part.name == "file":
                if upload is not None:
                    raise ApiError(400, "one_file", "send one recording per meeting")
                upload = await self._save(part, workdir)
            elif part.name in known:
                text = await _read_part(part, MAX_FIELD_BYTES, part.name)
                form[part.name] = text.decode("utf-8", "replace")
            else:
                raise ApiError(400, "unknown_field", f"unknown form field {part.name!r}; send "
                               f"'file' and optionally {', '.join(known)}")
        if upload is None:
            raise ApiError(400, "no_file", "no 'file' part in the form: send the recording")
        return upload, form

    async def _save(self, part: BodyPartReader, workdir: Path) -> Upload:
        """Stream the recording to disk under its own name (the job keeps it as its label)."""
        filename = _safe_filename(part.filename or "")
        path, limit, size = workdir / recording_name(filename), self.config.max_recording_bytes, 0
        with path.open("wb") as out:
            while chunk := await part.read_chunk(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "file_too_large",
                                   f"{filename} is over the limit of {limit} bytes")
                await asyncio.to_thread(out.write, chunk)
        if size == 0:
            raise ApiError(400, "empty_file", f"{filename} is empty: send the recording itself")
        return Upload(filename=filename, path=path,
                      content_type=part.headers.get("Content-Type", ""))

    async def events(self, request: web.Request) -> web.StreamResponse:
        job_id = await self._readable(request, signed_ok=False)
        return await self.gateway._stream(request, self.service.events(job_id), _event_frame,
                                          "the meeting's last event")

    async def minutes(self, request: web.Request) -> web.Response:
        job_id = await self._readable(request)
        fmt = request.query.get("format", "json")
        if fmt not in FORMAT_NAMES:
            raise ApiError(400, "unknown_format",
                           f"unknown format {fmt!r}; use one of {', '.join(FORMAT_NAMES)}")
        with _service_errors():
            minutes = await self.service.minutes(job_id)
        if minutes is None:
            raise ApiError(404, "not_ready", f"meeting {job_id} has no minutes yet: follow "
                           f"/v1/meetings/{job_id}/events until it is done")
        try:
            body = render_minutes(fmt, minutes)
        except MeetingError as exc:          # the summary of a meeting filed without one
            raise ApiError(404, "no_summary", str(exc)) from None
        media = FORMATS[Format(fmt)][1]
        charset = None if media == "application/json" else "utf-8"
        return web.Response(body=body, content_type=media, charset=charset)

    async def audio(self, request: web.Request) -> web.StreamResponse:
        job_id = await self._readable(request)
        with _service_errors():
            path = await self.service.audio(job_id)
        if path is None:
            raise ApiError(404, "no_audio", f"meeting {job_id} has no recording to play: "
                           "it is still running, failed, or was filed without keeping it")
        # FileResponse answers Range requests (206), which is how the player seeks.
        return web.FileResponse(path, headers={"Content-Type": "audio/wav",
                                               "Cache-Control": "private, max-age=3600"})

    async def link(self, request: web.Request) -> web.Response:
        job_id = await self._readable(request, signed_ok=False)
        expires = int(time.time() + LINK_TTL_S)
        query = urlencode({"expires": expires, "sig": self._sign(job_id, expires)})
        return _json({"query": query, "expires": expires})

    async def _readable(self, request: web.Request, *, signed_ok: bool = True) -> str:
        """The job id, if the caller (or a valid signed link) may read the meeting; else 404."""
        job_id = request.match_info["job_id"]
        if signed_ok and self._signed(job_id, request.query):
            return job_id
        principal = self.gateway.principal(request)
        info: MeetingInfo | None = None
        with _service_errors(), contextlib.suppress(LookupError):   # a malformed id
            info = await self.service.info(job_id)
        if info is None or not principal.may_read(info.tenant, info.acl):
            raise ApiError(404, "no_meeting", f"no meeting {job_id!r}")
        return job_id

    def _sign(self, job_id: str, expires: int) -> str:
        message = f"{job_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _signed(self, job_id: str, query) -> bool:
        expires, sig = query.get("expires", ""), query.get("sig", "")
        if not expires.isdigit() or not sig or int(expires) < time.time():
            return False
        return hmac.compare_digest(sig, self._sign(job_id, int(expires)))


def _meeting(form: dict[str, str], *, tenant: str, acl: str) -> MeetingInfo:
    flags = {name: _flag(name, form[name]) for name in FLAG_FIELDS if form.get(name, "").strip()}
    try:
        return meeting_info(**{k: form.get(k, "") for k in TEXT_FIELDS}, **flags,
                            tenant=tenant, acl=acl)
    except MeetingError as exc:
        raise ApiError(400, "bad_field", str(exc)) from None


def _flag(name: str, value: str) -> bool:
    value = value.strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise ApiError(400, "bad_field", f"{name} is {value!r}; send true or false")


def _event_frame(event: MeetingEvent) -> tuple[str, bool]:
    return "progress", event.final
