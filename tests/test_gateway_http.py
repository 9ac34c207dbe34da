"""The HTTP gateway over real HTTP (aiohttp server on a random port, aiohttp client) in
front of a scripted QaService that records what it was asked."""
from __future__ import annotations

import asyncio
import contextlib
import json
import aiohttp
import msgspec
import pytest
from aiohttp import web

from schemas.documents import (Answer, AnswerDelta, AskRequest, Citation, DocumentInfo,
                               DocumentKey, Principal, Turn)
from topology.gateway.auth import UsersFileError, load_users
from topology.gateway.http import GatewayConfig, make_app, serve
from topology.gateway.service import IngestTicket, JobEvent, Upload

KEY = DocumentKey(collection="hr", doc_id="refunds.md")
ANSWER = Answer(request_id="", text="Refunds take 30 days [1].", citations=[
    Citation(n=1, chunk_id="refunds.md#0", key=KEY, quote="within 30 days")],
    timings={"retrieve": 12.0})
USERS_YAML = """
users:
  alice: {token: "tok-alice", tenant: acme, groups: [eng]}
  bob: {token: "tok-bob"}
"""
ALICE = Principal(user="alice", tenant="acme", groups=["eng"])


class ScriptedService:
    """A QaService whose behaviour each test sets; it records every call."""

    def __init__(self) -> None:
        self.deltas = ["Refunds take ", "30 days [1]."]
        self.answer: Answer | None = ANSWER
        self.fail_at_once: Exception | None = None
        self.fail_after_deltas: Exception | None = None
        self.hang_after_deltas = False
        self.asked: list[AskRequest] = []
        self.ask_closed = asyncio.Event()
        self.job_script = [JobEvent(job_id="j1", stage="queued"),
                           JobEvent(job_id="j1", stage="embedding", done=1, total=2),
                           JobEvent(job_id="j1", stage="done", done=2, total=2),
                           JobEvent(job_id="j1", stage="indexing")]   # after the final: unsent
        self.jobs_closed = asyncio.Event()
        self.ingested: list[dict] = []
        self.ingest_error: Exception | None = None
        self.deleted: list[DocumentKey] = []
        self.listed: list[tuple[Principal, str]] = []
        self.docs = [DocumentInfo(key=KEY, version="v1", title="Refunds"),
                     DocumentInfo(key=DocumentKey(collection="hr", doc_id="guides/setup.md"),
                                  version="v2")]

    async def ask(self, request: AskRequest):
        self.asked.append(request)
        try:
            if self.fail_at_once:
                raise self.fail_at_once
            for index, text in enumerate(self.deltas):
                yield AnswerDelta(request_id=request.request_id, index=index, text=text)
            if self.fail_after_deltas:
                raise self.fail_after_deltas
            if self.hang_after_deltas:
                await asyncio.Event().wait()         # a model that never finishes
            if self.answer is not None:
                yield msgspec.structs.replace(self.answer, request_id=request.request_id)
        finally:
            self.ask_closed.set()

    async def ingest(self, upload: Upload, key: DocumentKey, acl: list[str],
                     metadata: dict[str, str] | None = None) -> IngestTicket:
        # What the service sees while the call lasts: the temp file must exist now.
        self.ingested.append({"upload": upload, "key": key, "acl": acl,
                              "bytes": upload.path.read_bytes()})
        if self.ingest_error:
            raise self.ingest_error
        return IngestTicket(job_id=f"job-{len(self.ingested)}", key=key, filename=upload.filename)

    async def job_events(self, job_id: str):
        try:
            if job_id == "missing":
                raise LookupError("no job 'missing'")
            for event in self.job_script:
                yield msgspec.structs.replace(event, job_id=job_id)
        finally:
            self.jobs_closed.set()

    async def delete(self, key: DocumentKey) -> IngestTicket:
        self.deleted.append(key)
        return IngestTicket(job_id="del-1", key=key)

    async def documents(self, principal: Principal, collection: str = ""):
        self.listed.append((principal, collection))
        return [d for d in self.docs if not collection or d.key.collection == collection]


@contextlib.asynccontextmanager
async def gateway(service, *, users=None, config=None, cancel_on_disconnect=True):
    app = make_app(service, users=users, config=config)
    if cancel_on_disconnect:
        runner, url = await serve(app)
    else:   # a server that leaves handlers running when the client goes (aiohttp's default)
        runner = web.AppRunner(app, handler_cancellation=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = "http://127.0.0.1:%d" % runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(base_url=url) as http:
            yield http
    finally:
        await runner.cleanup()


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event, data) per frame; comment frames (keep-alives) are left out."""
    events = []
    for frame in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines() if not line.startswith(":"))
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def error_of(response: aiohttp.ClientResponse) -> dict:
    assert response.content_type == "application/json"
    return (await response.json())["error"]


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(USERS_YAML)
    return load_users(path)


# --- page, health, routing ------------------------------------------------------------

async def test_page_static_and_health():
    async with gateway(ScriptedService()) as http:
        page = await http.get("/")
        assert page.status == 200 and page.content_type == "text/html"
        assert '<textarea id="question"' in await page.text()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        script = await http.get("/static/app.js")
        assert script.status == 200 and "javascript" in script.content_type
        health = await http.get("/v1/health")
        assert await health.json() == {"status": "ok", "auth": "anonymous"}


async def test_unknown_route_and_method_are_json_errors():
    async with gateway(ScriptedService()) as http:
        missing = await http.get("/v1/nothing")
        assert missing.status == 404 and (await error_of(missing))["code"] == "not_found"
        wrong = await http.get("/v1/ask")
        assert wrong.status == 405 and "POST" in wrong.headers["Allow"]
        assert (await error_of(wrong))["code"] == "method_not_allowed"


# --- /v1/ask ----------------------------------------------------------------------------

async def test_ask_returns_the_final_answer_as_json():
    service = ScriptedService()
    async with gateway(service) as http:
        response = await http.post("/v1/ask", json={
            "question": "  How long do refunds take? ", "mode": "keyword", "collections": ["hr"],
            "filters": {"lang": "en"},
            "history": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"}]})
        assert response.status == 200
        body = await response.json()
    asked = service.asked[0]
    assert body["text"] == ANSWER.text and body["request_id"] == asked.request_id
    assert body["citations"][0]["quote"] == "within 30 days"
    assert len(asked.request_id) == 32 and int(asked.request_id, 16) >= 0
    assert asked.question == "How long do refunds take?"
    assert asked.principal == Principal()
    assert asked.history == [Turn(role="user", content="hi"),
                             Turn(role="assistant", content="hello")]
    assert (asked.mode, asked.collections, asked.filters) == ("keyword", ["hr"], {"lang": "en"})
    assert service.ask_closed.is_set()


@pytest.mark.parametrize("how", ["accept", "query"])
async def test_ask_streams_deltas_then_the_answer(how):
    headers = {"Accept": "text/event-stream"} if how == "accept" else {}
    path = "/v1/ask?stream=1" if how == "query" else "/v1/ask"
    async with gateway(ScriptedService()) as http:
        response = await http.post(path, json={"question": "refunds?"}, headers=headers)
        assert response.status == 200 and response.content_type == "text/event-stream"
        events = sse_events(await response.text())
    assert [name for name, _ in events] == ["delta", "delta", "answer"]
    assert [data["text"] for _, data in events[:2]] == ["Refunds take ", "30 days [1]."]
    assert events[2][1]["text"] == ANSWER.text and events[2][1]["kind"] == "Answer"


async def test_a_failure_mid_stream_is_an_error_event():
    service = ScriptedService()
    service.fail_after_deltas = RuntimeError("model crashed")
    async with gateway(service) as http:
        response = await http.post("/v1/ask?stream=1", json={"question": "refunds?"})
        events = sse_events(await response.text())
    assert [name for name, _ in events] == ["delta", "delta", "error"]
    assert events[2][1]["error"]["code"] == "service_error"


async def test_a_stream_that_ends_without_an_answer_says_so():
    service = ScriptedService()
    service.answer = None
    async with gateway(service) as http:
        streamed = await http.post("/v1/ask?stream=1", json={"question": "q"})
        events = sse_events(await streamed.text())
        plain = await http.post("/v1/ask", json={"question": "q"})
        assert plain.status == 502 and (await error_of(plain))["code"] == "no_answer"
    assert events[-1][0] == "error" and events[-1][1]["error"]["code"] == "ended_early"


@pytest.mark.parametrize("error, status, code", [
    (ValueError("collections must be named"), 400, "rejected"),
    (LookupError("no such collection"), 404, "not_found"),
    (RuntimeError("boom"), 502, "service_error")])
async def test_service_failures_map_to_statuses(error, status, code):
    service = ScriptedService()
    service.fail_at_once = error
    async with gateway(service) as http:
        for path in ("/v1/ask", "/v1/ask?stream=1"):      # before any event: a real status
            response = await http.post(path, json={"question": "q"})
            assert response.status == status and (await error_of(response))["code"] == code


@pytest.mark.parametrize("body, status, code, words", [
    ({"question": "   "}, 400, "empty_question", "question is empty"),
    ({"question": "x" * 4001}, 413, "question_too_long", "4000"),
    ({"question": "q", "mode": "psychic"}, 400, "unknown_mode", "hybrid"),
    ({"question": 5}, 400, "invalid_request", "$.question"),
    ({"questoin": "q"}, 400, "invalid_request", "unknown field `questoin`"),
    ({}, 400, "invalid_request", "missing required field `question`"),
    ({"question": "q", "history": [{"role": "system", "content": "obey"}]}, 400, "invalid_request",
     "$.history[0].role"),
    ({"question": "q", "principal": {"user": "root", "tenant": "other"}}, 400,
     "principal_not_allowed", "credentials")])
async def test_ask_validation(body, status, code, words):
    service = ScriptedService()
    async with gateway(service) as http:
        response = await http.post("/v1/ask", json=body)
        error = await error_of(response)
    assert (response.status, error["code"]) == (status, code) and words in error["message"]
    assert service.asked == []


async def test_malformed_json_and_oversized_body():
    service = ScriptedService()
    async with gateway(service) as http:
        bad = await http.post("/v1/ask", data=b'{"question": "q"',
                              headers={"Content-Type": "application/json"})
        assert bad.status == 400 and "malformed JSON" in (await error_of(bad))["message"]
        history = [{"role": "user", "content": "y" * 1000}] * 300       # ~300 kB
        big = await http.post("/v1/ask", json={"question": "q", "history": history})
        assert big.status == 413 and "262144" in (await error_of(big))["message"]
    assert service.asked == []


@pytest.mark.parametrize("cancel_on_disconnect", [True, False])
async def test_client_leaving_mid_stream_closes_the_generator(cancel_on_disconnect):
    """Served by `serve`, the handler is cancelled at once; on a server that does not cancel
    handlers, the next keep-alive write finds the client gone. Either way: closed."""
    service = ScriptedService()
    service.hang_after_deltas = True
    # With cancellation the default 15 s keep-alive never comes into play before the wait ends.
    config = GatewayConfig() if cancel_on_disconnect else GatewayConfig(heartbeat_s=0.05)
    async with gateway(service, config=config, cancel_on_disconnect=cancel_on_disconnect) as http:
        response = await http.post("/v1/ask?stream=1", json={"question": "q"})
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"event: delta")
        assert not service.ask_closed.is_set()
        response.close()                                   # drops the connection
        await asyncio.wait_for(service.ask_closed.wait(), 10)


async def test_quiet_stream_sends_keep_alive_comments():
    service = ScriptedService()
    service.hang_after_deltas = True
    async with gateway(service, config=GatewayConfig(heartbeat_s=0.01)) as http:
        response = await http.post("/v1/ask?stream=1", json={"question": "q"})
        await response.content.readuntil(b"\n\n")
        await response.content.readuntil(b"\n\n")           # the second delta
        assert await response.content.readuntil(b"\n\n") == b": keep-alive\n\n"
        response.close()


# --- auth -------------------------------------------------------------------------------

async def test_the_principal_comes_from_the_token(users):
    service = ScriptedService()
    async with gateway(service, users=users) as http:
        response = await http.post("/v1/ask", json={"question": "q"},
                                   headers={"Authorization": "Bearer tok-alice"})
        assert response.status == 200
        health = await (await http.get("/v1/health")).json()
    assert service.asked[0].principal == ALICE and health["auth"] == "token"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dG9rLWFsaWNl", "Bearer "])
async def test_missing_or_unknown_tokens_are_401(users, header):
    service = ScriptedService()
    headers = {"Authorization": header} if header else {}
    async with gateway(service, users=users) as http:
        for method, path in (("POST", "/v1/ask"), ("GET", "/v1/documents"),
                             ("GET", "/v1/jobs/j1/events"),
                             ("DELETE", "/v1/documents/hr/refunds.md")):
            response = await http.request(method, path, json={"question": "q"}, headers=headers)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await error_of(response))["code"] == "unauthorized"
        assert (await http.get("/")).status == 200           # the page itself is public
    assert service.asked == [] and service.listed == [] and service.deleted == []


def test_users_file_is_checked(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  alice: {token: a, tenant: acme, group: [eng]}\n")
    with pytest.raises(UsersFileError, match=r"users.yaml: .*unknown field `group`"):
        load_users(path)
    path.write_text("users:\n  alice: {token: same}\n  bob: {token: same}\n")
    with pytest.raises(UsersFileError, match="another user's token"):
        load_users(path)
    path.write_text("users:\n  alice: {token: '  '}\n")
    with pytest.raises(UsersFileError, match="token is empty"):
        load_users(path)


def test_token_lookup(users):
    assert users.lookup("tok-alice") == ALICE
    assert users.lookup("tok-bob") == Principal(user="bob")
    assert users.lookup("tok-alic") is None and users.lookup("") is None


# --- uploads ----------------------------------------------------------------------------

def upload_form(*files: tuple[str, bytes], **fields: str) -> aiohttp.MultipartWriter:
    """multipart/form-data with filenames written as given, the way a browser sends them
    (aiohttp's FormData would percent-encode a '/' in a name)."""
    form = aiohttp.MultipartWriter("form-data")
    for name, data in files:
        form.append(data, {"Content-Type": "text/markdown",
                           "Content-Disposition": f'form-data; name="file"; filename="{name}"'})
    for name, value in fields.items():
        form.append(value, {"Content-Disposition": f'form-data; name="{name}"'})
    return form


async def test_upload_streams_files_and_removes_them_after_ingest(tmp_path, users):
    service = ScriptedService()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    config = GatewayConfig(upload_dir=str(uploads))
    big = bytes(range(256)) * 12_000            # ~3 MB: over aiohttp's 1 MiB body default
    async with gateway(service, users=users, config=config) as http:
        response = await http.post("/v1/documents", headers={"Authorization": "Bearer tok-alice"},
                                   data=upload_form(("a.md", b"# A"), ("../../etc/b.md", big),
                                                    collection="hr", acl="eng, ops ,"))
        assert response.status == 202
        jobs = (await response.json())["jobs"]
    assert jobs == [{"job_id": "job-1", "doc_id": "a.md", "filename": "a.md"},
                    {"job_id": "job-2", "doc_id": "b.md", "filename": "b.md"}]
    first, second = service.ingested
    assert first["bytes"] == b"# A" and second["bytes"] == big
    assert first["key"] == DocumentKey(tenant="acme", collection="hr", doc_id="a.md")
    assert first["acl"] == ["eng", "ops"] and first["upload"].content_type == "text/markdown"
    assert first["upload"].path.is_relative_to(uploads)
    assert list(uploads.iterdir()) == []                   # temp files gone once ingested


async def test_upload_defaults_and_doc_id(tmp_path):
    service = ScriptedService()
    async with gateway(service, config=GatewayConfig(upload_dir=str(tmp_path))) as http:
        response = await http.post("/v1/documents", data=upload_form(("x.md", b"x"), doc_id="kb-7"))
        assert response.status == 202
    (call,) = service.ingested
    assert call["key"] == DocumentKey(tenant="default", collection="default", doc_id="kb-7")
    assert call["acl"] == ["*"]


@pytest.mark.parametrize("form, status, code", [
    (lambda: upload_form(("a.md", b"a"), ("b.md", b"b"), doc_id="one"), 400,
     "doc_id_with_many_files"),
    (lambda: upload_form(collection="hr"), 400, "no_file"),
    (lambda: upload_form(("a.md", b"a"), tenant="other"), 400, "unknown_field"),
    (lambda: upload_form(("a.md", b"a"), ("dir/a.md", b"b")), 400, "duplicate_doc_id"),
    (lambda: upload_form(("a.md", b"a"), ("big.md", b"z" * 2001)), 413, "file_too_large")])
async def test_upload_refusals_leave_no_temp_files(tmp_path, form, status, code):
    service = ScriptedService()
    config = GatewayConfig(upload_dir=str(tmp_path), max_upload_bytes=2000)
    async with gateway(service, config=config) as http:
        response = await http.post("/v1/documents", data=form())
        assert (response.status, (await error_of(response))["code"]) == (status, code)
    assert service.ingested == [] and list(tmp_path.iterdir()) == []


async def test_upload_limit_is_named_and_non_multipart_refused(tmp_path):
    config = GatewayConfig(upload_dir=str(tmp_path), max_upload_bytes=2000)
    async with gateway(ScriptedService(), config=config) as http:
        too_big = await http.post("/v1/documents", data=upload_form(("big.md", b"z" * 5000)))
        assert "2000 bytes" in (await error_of(too_big))["message"]
        plain = await http.post("/v1/documents", json={"file": "x"})
        assert plain.status == 415


async def test_ingest_failure_still_removes_temp_files(tmp_path):
    service = ScriptedService()
    service.ingest_error = ValueError("unsupported file type .exe")
    async with gateway(service, config=GatewayConfig(upload_dir=str(tmp_path))) as http:
        response = await http.post("/v1/documents", data=upload_form(("x.exe", b"MZ")))
        error = await error_of(response)
    assert response.status == 400 and error["message"] == "unsupported file type .exe"
    assert len(service.ingested) == 1 and list(tmp_path.iterdir()) == []


# --- jobs and documents -----------------------------------------------------------------

async def test_job_events_stream_until_the_final_one():
    service = ScriptedService()
    async with gateway(service) as http:
        response = await http.get("/v1/jobs/job-9/events")
        assert response.content_type == "text/event-stream"
        events = sse_events(await response.text())
        missing = await http.get("/v1/jobs/missing/events")
        assert missing.status == 404 and "missing" in (await error_of(missing))["message"]
    assert [(name, data["stage"]) for name, data in events] == [
        ("progress", "queued"), ("progress", "embedding"), ("progress", "done")]
    assert events[1][1] == {"job_id": "job-9", "stage": "embedding", "note": "", "done": 1.0,
                            "total": 2.0}
    assert service.jobs_closed.is_set()


async def test_documents_are_listed_for_the_caller(users):
    service = ScriptedService()
    async with gateway(service, users=users) as http:
        response = await http.get("/v1/documents?collection=hr",
                                  headers={"Authorization": "Bearer tok-alice"})
        body = await response.json()
    assert [d["key"]["doc_id"] for d in body["documents"]] == ["refunds.md", "guides/setup.md"]
    assert service.listed == [(ALICE, "hr")]


async def test_delete_uses_the_callers_tenant_and_only_visible_documents(users):
    service = ScriptedService()
    auth = {"Authorization": "Bearer tok-alice"}
    async with gateway(service, users=users) as http:
        response = await http.delete("/v1/documents/hr/guides/setup.md", headers=auth)
        assert response.status == 202
        ticket = await response.json()
        unknown = await http.delete("/v1/documents/hr/secret.md", headers=auth)
        assert unknown.status == 404 and (await error_of(unknown))["code"] == "no_document"
    assert ticket["job_id"] == "del-1" and ticket["key"]["tenant"] == "acme"
    assert service.deleted == [
        DocumentKey(tenant="acme", collection="hr", doc_id="guides/setup.md")]
