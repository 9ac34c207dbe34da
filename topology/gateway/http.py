"""The document QA bot over HTTP: JSON, server-sent events, uploads and the web page.

    GET    /                                  the page (static/index.html)
    GET    /static/...                        its script and style
    GET    /v1/health                         {"status": "ok", "auth": "token" | "anonymous"}
    POST   /v1/ask                            AskBody → Answer, or SSE (delta…, answer | error)
    POST   /v1/documents                      multipart files → 202 {"jobs": [...]}
    GET    /v1/jobs/{job_id}/events           SSE: progress… (ends after the final one)
    GET    /v1/documents?collection=          {"documents": [DocumentInfo…]}
    DELETE /v1/documents/{collection}/{doc_id}  202 IngestTicket
    ...    /v1/meetings…                      the meeting transcriber (http_meetings.py)
    ...    /v1/voice…                         the voice agent's WebRTC signalling (voice.py)

Who asks always comes from the credentials (auth.py), never from the body; a document's
tenant is always the caller's. Errors are {"error": {"code", "message"}} with the status.
Exceptions from the service map by type: ValueError 400, PermissionError 403,
LookupError 404, TimeoutError 504, anything else 502.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, AsyncIterator, Iterator, get_args, get_type_hints

import msgspec
from aiohttp import BodyPartReader, web

from schemas.documents import Answer, AnswerDelta, AskRequest, DocumentKey, Principal, Turn
from topology.gateway.auth import Unauthorized, Users, authenticate
from topology.gateway.service import JobEvent, QaService, Upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MODES = get_args(get_type_hints(AskRequest)["mode"])
FORM_FIELDS = ("collection", "acl", "doc_id")
_END = object()
# The page loads nothing from elsewhere and runs no inline script: a second line of defence
# behind the page's rule of inserting untrusted text with textContent only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}   # nginx would otherwise hold the deltas back


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_question_chars: int = 4_000
    max_body_bytes: int = 256 * 1024          # a whole /v1/ask body, history included
    max_upload_bytes: int = 50 * 1024 * 1024  # per file
    max_files: int = 20                        # per upload request
    max_recording_bytes: int = 2 * 1024 ** 3   # a meeting (4 h of 44.1 kHz stereo WAV: 2.5 GB)
    upload_dir: str = ""                       # temp files go here ("": the system's)
    heartbeat_s: float = 15.0                  # SSE comment while the service is quiet


class AskBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a caller may send to /v1/ask (unknown fields are refused, to catch typos)."""

    question: str
    history: list[Turn] = []
    collections: list[str] = []
    filters: dict[str, str] = {}
    mode: str = "hybrid"
    # Never used: declared so that a caller who sends it is told plainly it is not allowed.
    principal: Any = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def make_app(service: QaService | None, *, users: Users | None = None,
             config: GatewayConfig | None = None, meetings=None, voice=None) -> web.Application:
    """The gateway for a QaService and/or a MeetingService (http_meetings.py, its page at
    `/` when there is no QA service); `users=None` serves every caller anonymously."""
    gateway = Gateway(service, users, config or GatewayConfig())
    app = web.Application(middlewares=[_errors_as_json])
    app.router.add_static("/static", STATIC, show_index=False)
    app.router.add_get("/v1/health", gateway.health)
    if meetings is not None:
        from topology.gateway.http_meetings import add_routes   # it imports this module
        add_routes(app, gateway, meetings, at_root=service is None)
    if voice is not None:
        from topology.gateway.voice import add_routes as add_voice   # it imports this module
        add_voice(app, gateway, voice, at_root=service is None and meetings is None)
    if service is not None:
        app.router.add_get("/", gateway.index)
        app.router.add_post("/v1/ask", gateway.ask)
        app.router.add_post("/v1/documents", gateway.upload)
        app.router.add_get("/v1/documents", gateway.documents)
        app.router.add_delete("/v1/documents/{collection}/{doc_id:.+}", gateway.delete)
        app.router.add_get("/v1/jobs/{job_id}/events", gateway.job_events)
    app.on_response_prepare.append(_add_security_headers)
    return app


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                *, shutdown_timeout: float = 5.0) -> tuple[web.AppRunner, str]:
    """Start `app`; returns the runner (call `cleanup()` to stop) and the base URL.

    handler_cancellation: when a client goes away mid-answer, its handler is cancelled at
    once, which closes the service's generator (no tokens generated for nobody)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    if ":" in bound_host:
        bound_host = f"[{bound_host}]"
    return runner, f"http://{bound_host}:{bound_port}"


class Gateway:
    def __init__(self, service: QaService, users: Users | None, config: GatewayConfig) -> None:
        self.service, self.users, self.config = service, users, config
        self._ask_decoder = msgspec.json.Decoder(AskBody)

    def principal(self, request: web.Request) -> Principal:
        return authenticate(self.users, request.headers.get("Authorization"))

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "auth": "anonymous" if self.users is None else "token"})

    async def ask(self, request: web.Request) -> web.StreamResponse:
        principal = self.principal(request)
        body = self._decode_ask(await _read_limited(request, self.config.max_body_bytes))
        ask = AskRequest(request_id=uuid.uuid4().hex, question=body.question.strip(),
                         principal=principal, history=body.history,
                         collections=body.collections, filters=body.filters, mode=body.mode)
        events = self.service.ask(ask)
        if _wants_stream(request):
            return await self._stream(request, events, _ask_frame, "the answer")
        return _json(await _final_answer(events))

    def _decode_ask(self, raw: bytes) -> AskBody:
        try:
            body = self._ask_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise ApiError(400, "invalid_request", f"invalid request: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ApiError(400, "malformed_json", f"malformed JSON body: {exc}") from None
        if body.principal is not None:
            raise ApiError(400, "principal_not_allowed",
                           "'principal' is set by the server from your credentials")
        if not body.question.strip():
            raise ApiError(400, "empty_question", "question is empty")
        if len(body.question) > self.config.max_question_chars:
            raise ApiError(413, "question_too_long", f"question is {len(body.question)} "
                           f"characters; the limit is {self.config.max_question_chars}")
        if body.mode not in MODES:
            raise ApiError(400, "unknown_mode",
                           f"unknown mode {body.mode!r}; use one of {', '.join(MODES)}")
        return body

    async def upload(self, request: web.Request) -> web.Response:
        principal = self.principal(request)
        if not request.content_type.startswith("multipart/form-data"):
            raise ApiError(415, "not_multipart", "send the files as multipart/form-data")
        workdir = Path(tempfile.mkdtemp(prefix="pw-upload-", dir=self.config.upload_dir or None))
        try:
            uploads, form = await self._receive(request, workdir)
            keys = _document_keys(uploads, form, principal.tenant)
            acl = _parse_acl(form.get("acl", ""))
            jobs = []
            for upload, key in zip(uploads, keys):
                with _service_errors():
                    ticket = await self.service.ingest(upload, key, acl)
                jobs.append({"job_id": ticket.job_id, "doc_id": ticket.key.doc_id,
                             "filename": upload.filename})
        finally:
            # The service has copied the bytes into its object store by now.
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        return _json({"jobs": jobs}, status=202)

    async def _receive(self, request: web.Request, workdir: Path) -> tuple[list[Upload], dict]:
        """Every part of the form: files streamed to `workdir`, small fields as text."""
        uploads: list[Upload] = []
        form: dict[str, str] = {}
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "nested_multipart", "nested multipart bodies are not accepted")
            if part.name == "file":
                if len(uploads) == self.config.max_files:
                    raise ApiError(413, "too_many_files",
                                   f"at most {self.config.max_files} files per upload")
                uploads.append(await self._save(part, workdir / f"{len(uploads)}.upload"))
            elif part.name in FORM_FIELDS:
                text = await _read_part(part, 1024, part.name)
                form[part.name] = text.decode("utf-8", "replace")
            else:
                raise ApiError(400, "unknown_field", f"unknown form field {part.name!r}; "
                               f"send 'file' parts and optionally {', '.join(FORM_FIELDS)}")
        if not uploads:
            raise ApiError(400, "no_file", "no 'file' part in the form")
        return uploads, form

    async def _save(self, part: BodyPartReader, path: Path) -> Upload:
        """Stream one file part to disk, refusing it once it passes the size limit."""
        filename = _safe_filename(part.filename or "")
        limit, size = self.config.max_upload_bytes, 0
        with path.open("wb") as out:
            while chunk := await part.read_chunk(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "file_too_large",
                                   f"{filename} is over the limit of {limit} bytes per file")
                await asyncio.to_thread(out.write, chunk)
        return Upload(filename=filename, path=path,
                      content_type=part.headers.get("Content-Type", ""))

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        self.principal(request)
        events = self.service.job_events(request.match_info["job_id"])
        return await self._stream(request, events, _progress_frame, "the job's last event")

    async def documents(self, request: web.Request) -> web.Response:
        principal = self.principal(request)
        with _service_errors():
            docs = await self.service.documents(principal, request.query.get("collection", ""))
        return _json({"documents": docs})

    async def delete(self, request: web.Request) -> web.Response:
        principal = self.principal(request)
        collection, doc_id = request.match_info["collection"], request.match_info["doc_id"]
        with _service_errors():
            # Only what the caller may read can be deleted by them (and named in a 404).
            visible = await self.service.documents(principal, collection)
            if not any(doc.key.doc_id == doc_id for doc in visible):
                raise ApiError(404, "no_document",
                               f"no document {doc_id!r} in collection {collection!r}")
            key = DocumentKey(tenant=principal.tenant, collection=collection, doc_id=doc_id)
            ticket = await self.service.delete(key)
        return _json(ticket, status=202)

    async def _stream(self, request: web.Request, events: AsyncIterator, frame_of,
                      last_what: str) -> web.StreamResponse:
        """Server-sent events from `events` until `frame_of` says one is the last.

        The first event is awaited before the headers go out, so a service that fails at
        once gives an HTTP error status; later failures become an `error` event."""
        async with _closing(events):
            with _service_errors():
                event = await anext(events, _END)
            response = web.StreamResponse(headers=SSE_HEADERS)
            await response.prepare(request)
            try:
                while event is not _END:
                    name, last = frame_of(event)
                    await response.write(_sse(name, msgspec.json.encode(event)))
                    if last:
                        break
                    event = await _next_or_heartbeat(events, response, self.config.heartbeat_s)
                else:
                    raise ApiError(502, "ended_early", f"the service stopped before {last_what}")
            except ConnectionResetError:
                return response                    # the client left; _closing stops the service
            except Exception as exc:  # noqa: BLE001 - every failure is told to the client
                error = exc if isinstance(exc, ApiError) else _service_error(exc)
                with contextlib.suppress(ConnectionResetError):
                    await response.write(_sse("error", _error_body(error.code, error.message)))
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        return response


def _ask_frame(event: Any) -> tuple[str, bool]:
    if isinstance(event, Answer):
        return "answer", True
    if isinstance(event, AnswerDelta):
        return "delta", False
    raise TypeError(f"the QA service yielded a {type(event).__name__}")


def _progress_frame(event: JobEvent) -> tuple[str, bool]:
    return "progress", event.final


async def _final_answer(events: AsyncIterator) -> Answer:
    async with _closing(events):
        with _service_errors():
            async for event in events:
                if isinstance(event, Answer):
                    return event
    raise ApiError(502, "no_answer", "the QA service ended without an answer")


async def _next_or_heartbeat(events: AsyncIterator, response: web.StreamResponse,
                             every: float) -> Any:
    """The next event. While the service is quiet, a comment line every `every` seconds
    keeps proxies from closing the stream and finds out when the client has left (the
    write fails) even where the server does not cancel handlers on disconnect."""
    step = asyncio.ensure_future(anext(events, _END))
    try:
        while True:
            done, _ = await asyncio.wait({step}, timeout=every)
            if done:
                return step.result()
            await response.write(b": keep-alive\n\n")
    finally:
        if not step.done():
            step.cancel()                          # closes the generator at its await
            await asyncio.wait({step})


@contextlib.asynccontextmanager
async def _closing(events: Any) -> AsyncIterator[Any]:
    """Close the service's generator however the handler ends (answer, error, disconnect)."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


@contextlib.contextmanager
def _service_errors() -> Iterator[None]:
    try:
        yield
    except ApiError:
        raise
    except Exception as exc:
        raise _service_error(exc) from exc


def _service_error(exc: Exception) -> ApiError:
    for kind, status, code in ((ValueError, 400, "rejected"), (PermissionError, 403, "forbidden"),
                               (LookupError, 404, "not_found"), (TimeoutError, 504, "timeout")):
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc) or code)
    log.error("QA service failed", exc_info=exc)
    return ApiError(502, "service_error", f"the QA service failed ({type(exc).__name__})")


def _document_keys(uploads: list[Upload], form: dict[str, str], tenant: str) -> list[DocumentKey]:
    collection = form.get("collection", "").strip() or "default"
    doc_id = form.get("doc_id", "").strip()
    if doc_id and len(uploads) > 1:
        raise ApiError(400, "doc_id_with_many_files", "doc_id may only be given with one file")
    ids = [doc_id] if doc_id else [upload.filename for upload in uploads]
    if len(set(ids)) < len(ids):
        raise ApiError(400, "duplicate_doc_id", "two files would get the same doc_id (filename)")
    return [DocumentKey(tenant=tenant, collection=collection, doc_id=i) for i in ids]


def _parse_acl(text: str) -> list[str]:
    return [group.strip() for group in text.split(",") if group.strip()] or ["*"]


def _safe_filename(name: str) -> str:
    """The last path component only: a filename is a label here, never a path."""
    return PurePosixPath(name.replace("\\", "/")).name.strip() or "upload"


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(limit + 1):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "field_too_large", f"{what} is over {limit} bytes")
    return bytes(data)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    too_large = ApiError(413, "body_too_large", f"the request body is over {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _wants_stream(request: web.Request) -> bool:
    return (request.query.get("stream", "") in ("1", "true")
            or "text/event-stream" in request.headers.get("Accept", ""))


def _sse(event: str, data: bytes) -> bytes:
    # msgspec's JSON has no raw newlines, so one `data:` line carries the whole payload.
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def _error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status,
                        content_type="application/json")


@web.middleware
async def _errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.code, exc.message)
    except Unauthorized as exc:
        response = _error(401, "unauthorized", exc.message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="patchwire"'
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("gateway handler failed: %s %s", request.method, request.path)
        return _error(500, "internal", "internal error")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(body=_error_body(code, message), status=status,
                        content_type="application/json")


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
