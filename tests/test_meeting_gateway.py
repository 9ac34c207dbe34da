"""The meeting transcriber's HTTP API and page.

Over real HTTP in front of a scripted MeetingService (uploads, fields, SSE, formats,
permissions, Range); the MeetingClient over a real nats-server with hand-published bus
messages; the page in headless chromium; and one recording through the real pipeline."""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import struct
from pathlib import Path

import aiohttp
import msgspec
import pytest

from operators.audio_io import wav_header as parse_wav_header
from schemas import (Failure, FailureCategory, MeetingInfo, MeetingMinutes, ObjectRef, Progress,
                     Stage, Transcript, TranscriptSegment)
from schemas.documents import DocumentKey, Indexed
from schemas.meeting import ActionItem, MeetingSummary, SummaryItem, SummarySpan
from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.gateway.auth import load_users
from topology.gateway.http import GatewayConfig, make_app, serve
from topology.gateway.meetings import MeetingClient, MeetingEvent, MeetingTicket, write_wav
from topology.gateway.start import start_gateway
from topology.meeting import minutes_json

USERS = """
users:
  alice: {token: "tok-alice", tenant: acme}
  carol: {token: "tok-carol", tenant: acme, groups: [eng]}
  bob:   {token: "tok-bob"}
"""
MARKUP = "<b onclick='window.__xss = 1'>Agreed</b>"


def span(start: float, index: int) -> SummarySpan:
    return SummarySpan(start_s=start, end_s=start + 3, segments=[index])


def seg(start: float, end: float, text: str, speaker: str) -> TranscriptSegment:
    return TranscriptSegment(start=start, end=end, text=text, speaker=speaker)


SUMMARY = MeetingSummary(
    key_points=[SummaryItem(text="The budget is tight", span=span(0.0, 0))],
    decisions=[SummaryItem(text="Cut travel", span=span(4.5, 1))],
    action_items=[ActionItem(text="Draft the travel policy", owner="Tom", due="Friday",
                             span=span(9.5, 2))],
    open_questions=[SummaryItem(text="Who approves?", span=span(4.5, 1))])
TRANSCRIPT = Transcript(job_id="", duration_s=12.0, segments=[
    seg(0.0, 4.2, "Let's start with the budget.", "SPEAKER_00"),
    seg(4.5, 9.0, "I think we can cut travel.", "SPEAKER_01"),
    seg(9.5, 12.0, MARKUP, "SPEAKER_00")])


def stage_events(job_id: str, stages, last: str = "done") -> list[MeetingEvent]:
    events = []
    for stage in stages:
        events += [MeetingEvent(job_id=job_id, stage=stage, state="started"),
                   MeetingEvent(job_id=job_id, stage=stage, state="progress", done=1, total=2),
                   MeetingEvent(job_id=job_id, stage=stage, state="done")]
    return events + [MeetingEvent(job_id=job_id, stage=last)]


class ScriptedMeetings:
    """A MeetingService that files every upload at once; a title picks the script:
    "broken" fails in decode, "running" never finishes, "no summary" has none."""

    def __init__(self, wav: Path) -> None:
        self.wav = wav
        self.submitted: list[tuple[str, bytes, MeetingInfo]] = []
        self.infos: dict[str, MeetingInfo] = {}
        self.events_closed = asyncio.Event()

    async def submit(self, upload, info: MeetingInfo) -> MeetingTicket:
        self.submitted.append((upload.path.name, upload.path.read_bytes(), info))
        job_id = f"job{len(self.submitted)}"
        self.infos[job_id] = info
        return MeetingTicket(job_id=job_id, filename=upload.filename)

    async def info(self, job_id: str):
        return self.infos.get(job_id)

    async def events(self, job_id: str):
        title = self.infos[job_id].title
        try:
            if title == "broken":
                script = [MeetingEvent(job_id=job_id, stage="decode", state="started"),
                          MeetingEvent(job_id=job_id, stage="failed", operator="decode",
                                       note="not an audio file: no audio stream")]
            else:
                script = stage_events(job_id, ["decode", "vad", "asr", "diarize", "cleanup",
                                               "summarize", "archive", "chunk", "embed",
                                               "index"])
            for event in script + [MeetingEvent(job_id=job_id, stage="asr")]:  # last: unsent
                yield event
        finally:
            self.events_closed.set()

    async def minutes(self, job_id: str):
        info = self.infos.get(job_id)
        if info is None or info.title == "running":
            return None
        summary = None if info.title == "no summary" else SUMMARY
        return MeetingMinutes(job_id=job_id, transcript=msgspec.structs.replace(
            TRANSCRIPT, job_id=job_id), summary=summary, info=info, warnings=["a warning"],
            audio=ObjectRef(bucket="b", name=f"{job_id}/pcm16k.s16le"))

    async def audio(self, job_id: str):
        return self.wav if (await self.minutes(job_id)) is not None else None


@pytest.fixture
def wav(tmp_path) -> Path:
    """12 s of a quiet 220 Hz tone as a WAV file, written by the gateway's own writer."""
    samples = [int(3000 * math.sin(2 * math.pi * 220 * i / 16_000)) for i in range(12 * 16_000)]
    pcm = tmp_path / "tone.pcm"
    pcm.write_bytes(struct.pack(f"<{len(samples)}h", *samples))
    write_wav(pcm, tmp_path / "tone.wav")
    return tmp_path / "tone.wav"


@contextlib.asynccontextmanager
async def gateway(service, *, users=None, config=None, qa=None):
    runner, url = await serve(make_app(qa, users=users, config=config, meetings=service))
    try:
        async with aiohttp.ClientSession(base_url=url) as http:
            yield http
    finally:
        await runner.cleanup()


def form(data: bytes | None = b"RIFF fake", filename: str = "standup.wav", **fields) -> aiohttp.FormData:
    body = aiohttp.FormData(default_to_multipart=True)
    if data is not None:
        body.add_field("file", data, filename=filename, content_type="audio/wav")
    for name, value in fields.items():
        body.add_field(name, value)
    return body


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def sse(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def post(http, body, headers=None) -> tuple[int, dict]:
    async with http.post("/v1/meetings", data=body, headers=headers or {}) as r:
        return r.status, await r.json()


# --- uploads ------------------------------------------------------------------------------

async def test_an_upload_files_the_meeting_with_its_fields(wav):
    service = ScriptedMeetings(wav)
    async with gateway(service) as http:
        status, body = await post(http, form(
            title="Budget review", participants="Ana, Tom", agenda="travel", redact="email",
            speakers="SPEAKER_00=Ana", redact_names="on", disfluencies="true",
            summarize="false", index="0"))
        assert status == 202, body
        status, again = await post(http, form(filename="minutes.json"))
    assert body == {"job_id": "job1", "filename": "standup.wav",
                    "events": "/v1/meetings/job1/events", "minutes": "/v1/meetings/job1",
                    "audio": "/v1/meetings/job1/audio", "link": "/v1/meetings/job1/link"}
    name, data, info = service.submitted[0]
    assert (name, data) == ("standup.wav", b"RIFF fake")
    assert info == MeetingInfo(title="Budget review", participants=["Ana", "Tom"],
                               agenda="travel", speakers={"SPEAKER_00": "Ana"},
                               redact=["email"], redact_names=True, remove_disfluencies=True,
                               summarize=False, index=False)       # tenant default, acl *
    # A recording never takes the name of a file the pipeline writes next to it.
    assert service.submitted[1][0] == "upload-minutes.json" and again["filename"] == "minutes.json"


@pytest.mark.parametrize("body, code, words", [
    (form(data=None, title="x"), "no_file", "no 'file' part"),
    (form(data=b""), "empty_file", "is empty"),
    (form(redact="shoe-size"), "bad_field", "unknown personal data kind"),
    (form(speakers="Ana"), "bad_field", "LABEL=NAME"),
    (form(summarize="maybe"), "bad_field", "summarize is 'maybe'"),
    (form(language="fr"), "unknown_field", "unknown form field 'language'"),
    (form(data=b"x" * 101), "file_too_large", "over the limit of 100 bytes"),
])
async def test_a_bad_upload_is_refused_with_the_reason(wav, body, code, words):
    service = ScriptedMeetings(wav)
    async with gateway(service, config=GatewayConfig(max_recording_bytes=100)) as http:
        status, answer = await post(http, body)
        async with http.post("/v1/meetings", json={"file": "x"}) as r:
            assert r.status == 415
    assert status == (413 if code == "file_too_large" else 400)
    assert answer["error"]["code"] == code and words in answer["error"]["message"]
    assert service.submitted == []


# --- events, minutes, audio -------------------------------------------------------------------

async def test_events_stream_every_stage_in_order_and_stop_at_the_final_one(wav):
    service = ScriptedMeetings(wav)
    async with gateway(service) as http:
        await post(http, form(title="Budget review"))
        await post(http, form(title="broken"))
        async with http.get("/v1/meetings/job1/events") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            good = sse(await r.text())
        async with http.get("/v1/meetings/job2/events") as r:
            bad = sse(await r.text())
        async with http.get("/v1/meetings/job9/events") as r:
            assert r.status == 404
    stages = [e["stage"] for e in good if e["state"] == "started"]
    assert stages == ["decode", "vad", "asr", "diarize", "cleanup", "summarize", "archive",
                      "chunk", "embed", "index"]
    assert good[1] == {"job_id": "job1", "stage": "decode", "state": "progress", "done": 1.0,
                       "total": 2.0, "note": "", "operator": ""}
    assert good[-1]["stage"] == "done" and len(good) == 31       # nothing after the final
    assert bad[-1] == {"job_id": "job2", "stage": "failed", "state": "", "done": 0.0,
                       "total": 0.0, "note": "not an audio file: no audio stream",
                       "operator": "decode"}
    assert service.events_closed.is_set()


@pytest.mark.parametrize("fmt, media, start", [
    ("md", "text/markdown; charset=utf-8", "# Budget review"),
    ("srt", "application/x-subrip; charset=utf-8", "1\n00:00:00,000 --> "),
    ("vtt", "text/vtt; charset=utf-8", "WEBVTT"),
    ("rttm", "text/plain; charset=utf-8", "SPEAKER job1 1 0.000 4.200 <NA> <NA> SPEAKER_00"),
    ("summary", "application/json", '{"kind":"MeetingSummary"'),
])
async def test_minutes_come_in_every_format(wav, fmt, media, start):
    service = ScriptedMeetings(wav)
    async with gateway(service) as http:
        await post(http, form(title="Budget review"))
        async with http.get("/v1/meetings/job1") as r:
            assert r.headers["Content-Type"] == "application/json"
            assert await r.read() == minutes_json(await service.minutes("job1"))
        async with http.get(f"/v1/meetings/job1?format={fmt}") as r:
            assert (r.status, r.headers["Content-Type"]) == (200, media)
            assert (await r.text()).startswith(start)


async def test_minutes_that_cannot_be_given_say_why(wav):
    async with gateway(ScriptedMeetings(wav)) as http:
        for title in ("no summary", "running"):
            await post(http, form(title=title))
        for path, status, code in [("job1?format=pdf", 400, "unknown_format"),
                                   ("job1?format=summary", 404, "no_summary"),
                                   ("job2", 404, "not_ready"), ("job2/audio", 404, "no_audio"),
                                   ("job9", 404, "no_meeting"), ("a.b", 404, "no_meeting"),
                                   ("%2A/events", 404, "no_meeting")]:
            async with http.get(f"/v1/meetings/{path}") as r:
                assert (r.status, (await r.json())["error"]["code"]) == (status, code), path


async def test_audio_is_a_wav_the_player_can_seek_in(wav):
    whole = wav.read_bytes()
    header = parse_wav_header(wav)
    assert (header.sample_rate, header.channels, header.bits) == (16_000, 1, 16)
    assert header.data_offset == 44 and header.data_bytes == len(whole) - 44 == 12 * 32_000
    async with gateway(ScriptedMeetings(wav)) as http:
        await post(http, form(title="Budget review"))
        async with http.get("/v1/meetings/job1/audio") as r:
            assert (r.status, r.headers["Content-Type"]) == (200, "audio/wav")
            assert r.headers["Accept-Ranges"] == "bytes" and await r.read() == whole
        async with http.get("/v1/meetings/job1/audio", headers={"Range": "bytes=32044-64043"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 32044-64043/{len(whole)}"
            assert await r.read() == whole[32044:64044]          # the second second


# --- who may read what ---------------------------------------------------------------------------

async def test_a_meeting_is_its_uploaders_and_no_one_elses(wav, tmp_path):
    users_file = tmp_path / "users.yaml"
    users_file.write_text(USERS)
    service = ScriptedMeetings(wav)
    async with gateway(service, users=load_users(users_file)) as http:
        status, _ = await post(http, form())
        assert status == 401 and service.submitted == []
        status, _ = await post(http, form(title="Budget review"), bearer("tok-alice"))
        assert status == 202
        assert (service.infos["job1"].tenant, service.infos["job1"].acl) == ("acme", ["user:alice"])
        for path in ("", "/events", "/audio", "/link", "?format=md"):
            async with http.get(f"/v1/meetings/job1{path}", headers=bearer("tok-alice")) as r:
                assert r.status == 200, path
                await r.read()
            for token in ("tok-bob", "tok-carol"):       # another tenant; same tenant, not in ACL
                async with http.get(f"/v1/meetings/job1{path}", headers=bearer(token)) as r:
                    assert r.status == 404, (path, token)
                    assert await r.json() == {"error": {
                        "code": "no_meeting", "message": "no meeting 'job1'"}}


async def test_a_signed_link_plays_and_downloads_without_the_token_for_a_while(wav, tmp_path):
    users_file = tmp_path / "users.yaml"
    users_file.write_text(USERS)
    async with gateway(ScriptedMeetings(wav), users=load_users(users_file)) as http:
        await post(http, form(title="Budget review"), bearer("tok-alice"))
        async with http.get("/v1/meetings/job1/link", headers=bearer("tok-alice")) as r:
            link = await r.json()
        query = link["query"]
        for path in (f"audio?{query}", f"?format=srt&{query}"):
            async with http.get(f"/v1/meetings/job1/{path}".replace("/?", "?")) as r:
                assert r.status == 200, path
        expired = f"expires=1&sig={query.split('sig=')[1]}"
        forged = query[:-4] + ("0000" if not query.endswith("0000") else "1111")
        for path in (f"job1/audio?{forged}", f"job1/audio?{expired}", f"job1/events?{query}"):
            async with http.get(f"/v1/meetings/{path}") as r:
                assert r.status == 401, path     # the link does not hold: credentials needed


async def test_the_meetings_page_is_at_root_unless_the_qa_bot_is_there(wav):
    async with gateway(ScriptedMeetings(wav)) as http:
        async with http.get("/") as r:
            assert "Meeting transcriber" in await r.text()
    async with gateway(ScriptedMeetings(wav), qa=object()) as http:
        async with http.get("/") as r:
            assert "Ask the documents" in await r.text()
        async with http.get("/meetings.html") as r:
            assert "Meeting transcriber" in await r.text()


# --- the page in headless chromium ----------------------------------------------------------

STAGES = ["decode", "vad", "asr", "diarize", "cleanup", "summarize", "archive", "index"]
PLAYER = "document.getElementById('player')"


@contextlib.asynccontextmanager
async def page_on(browser, service):
    runner, url = await serve(make_app(None, meetings=service))
    page = await browser.new_page()
    try:
        await page.goto(url + "/")
        await page.wait_for("document.getElementById('identity').textContent !== 'Connecting…'")
        yield page
    finally:
        await page.close()
        await runner.cleanup()


async def upload_on(page, wav: Path, title: str) -> None:
    await page.set_files("#recording", [str(wav)])
    await page.type_text("#title", title)
    await page.type_text("#participants", "Ana, Tom")
    await page.click("#upload")


def rows(selector: str, fields: str) -> str:
    return f"[...document.querySelectorAll({json.dumps(selector)})].map(n => [{fields}])"


async def test_the_page_follows_the_stages_then_plays_the_transcript_from_a_timestamp(browser,
                                                                                     wav):
    service = ScriptedMeetings(wav)
    async with page_on(browser, service) as page:
        await upload_on(page, wav, "Budget review")
        await page.wait_for("!document.getElementById('result').hidden", timeout=20)
        stages = await page.evaluate(rows(
            "#stages li", "n.dataset.stage, n.dataset.state, n.querySelector('progress').value"))
        assert stages == [[stage, "done", 1] for stage in STAGES]
        segments = await page.evaluate(rows("#segments li", "n.className, "
                                            "n.querySelector('.speaker').textContent, "
                                            "n.querySelector('.text').textContent, "
                                            "getComputedStyle(n).borderLeftColor"))
        assert [s[:3] for s in segments] == [
            ["segment speaker-0", "SPEAKER_00", "Let's start with the budget."],
            ["segment speaker-1", "SPEAKER_01", "I think we can cut travel."],
            ["segment speaker-0", "SPEAKER_00", MARKUP]]
        assert segments[0][3] == segments[2][3] != segments[1][3]   # a colour per speaker
        assert await page.evaluate("document.querySelectorAll('#segments b').length") == 0

        await page.wait_for(f"{PLAYER}.readyState >= 1")             # the WAV's header loaded
        await page.click("#segments li:nth-child(2) button.time")
        await page.wait_for(f"{PLAYER}.currentTime >= 4.5 && {PLAYER}.currentTime < 6")
        assert await page.text("#key-points li") == "00:00The budget is tight"
        assert await page.text("#decisions li") == "00:04Cut travel"
        assert await page.text("#open-questions li") == "00:04Who approves?"
        assert await page.text("#action-items li") == \
            "00:09Draft the travel policy (owner: Tom, due: Friday)"
        await page.click("#action-items li button.time")
        await page.wait_for(f"{PLAYER}.currentTime >= 9.5 && {PLAYER}.currentTime < 11")
        links = await page.evaluate(rows("#downloads a", "new URL(n.href).searchParams.get("
                                         "'format'), new URL(n.href).searchParams.has('sig')"))
        assert links == [[fmt, True] for fmt in ("md", "srt", "vtt", "rttm", "json")]
        assert await page.evaluate("window.__xss === undefined")
    assert service.submitted[0][2].participants == ["Ana", "Tom"]


async def test_the_page_shows_where_and_why_a_meeting_failed(browser, wav):
    async with page_on(browser, ScriptedMeetings(wav)) as page:
        await upload_on(page, wav, "broken")
        await page.wait_for("document.getElementById('job-error').textContent !== ''")
        assert await page.text("#job-error") == \
            "Failed in decode: not an audio file: no audio stream"
        assert await page.evaluate(
            "document.querySelector('#stages li[data-stage=decode]').classList.contains('failed')")
        assert await page.evaluate("document.getElementById('result').hidden")


# --- the client over a real nats-server --------------------------------------------------------

async def test_the_client_replays_a_jobs_events_and_ends_when_it_is_indexed(nats_server,
                                                                            namespace, tmp_path):
    topo = topo_spec.load(ROOT / "topology/meeting_transcriber.yaml")
    dep = await Deployment.open(topo, nats_server.url, namespace)
    client = MeetingClient(dep.bus, dep.blobs)
    try:
        recording = tmp_path / "standup.wav"
        recording.write_bytes(b"RIFF not decoded here")
        ticket = await client.submit(_upload(recording), MeetingInfo(title="Budget review"))
        job = ticket.job_id
        assert (await client.info(job)).title == "Budget review"
        assert await client.minutes(job) is None
        pcm = await _publish_a_filed_meeting(dep, job, tmp_path)
        events = [e async for e in client.events(job)]     # after the fact: replayed
        assert [(e.stage, e.state) for e in events] == [
            ("queued", ""), ("decode", "started"), ("decode", "progress"), ("decode", "progress"),
            ("decode", "done"), ("archive", "done"), ("index", "done"), ("done", "")]
        wav = await client.audio(job)
        assert wav.read_bytes()[44:] == pcm and parse_wav_header(wav).data_bytes == len(pcm)
        assert (await client.minutes(job)).document_id == f"meeting/{job}"

        other = (await client.submit(_upload(recording), MeetingInfo())).job_id
        await _publish(dep, "errors", other, Failure(
            category=FailureCategory.BAD_INPUT, operator="decode", reason="empty file",
            job_id=other, final=True))
        [_, failed] = [e async for e in client.events(other)]
        assert (failed.stage, failed.operator, failed.note) == ("failed", "decode", "empty file")
        with pytest.raises(LookupError):
            [e async for e in client.events("j>")]
    finally:
        await client.close()
        await dep.close()


def _upload(path: Path):
    from topology.gateway.service import Upload
    return Upload(filename=path.name, path=path)


async def _publish(dep, edge: str, job: str, message) -> None:
    data = msgspec.msgpack.encode(message)
    if edge == "_progress":
        await dep.bus.nc.publish(dep.bus.subjects.progress(job), data)
    else:
        await dep.bus.js.publish(dep.bus.subjects.edge(edge, job), data)


async def _publish_a_filed_meeting(dep, job: str, tmp_path: Path) -> bytes:
    """What the pipeline says about a job that ends indexed: progress (many small steps are
    passed on in 1 % steps), the minutes, archive's done and the stored file, the Indexed."""
    def progress(op, stage, done=0.0, total=0.0):
        return Progress(job_id=job, operator=op, stage=stage, done=done, total=total)
    await _publish(dep, "_progress", job, progress("decode", Stage.STARTED))
    for done in (1.0, 1.001, 2.0):
        await _publish(dep, "_progress", job, progress("decode", Stage.PROGRESS, done, 2.0))
    await _publish(dep, "_progress", job, progress("decode", Stage.DONE))
    pcm = struct.pack("<4h", 0, 1000, -1000, 0) * 100
    (tmp_path / "pcm").write_bytes(pcm)
    ref = await dep.blobs.put_file(f"{job}/pcm16k.s16le", tmp_path / "pcm")
    minutes = MeetingMinutes(job_id=job, transcript=msgspec.structs.replace(TRANSCRIPT, job_id=job),
                             info=MeetingInfo(title="Budget review"), audio=ref,
                             document_id=f"meeting/{job}")
    (tmp_path / "minutes.json").write_bytes(msgspec.json.encode(minutes))
    await dep.blobs.put_file(f"{job}/minutes.json", tmp_path / "minutes.json")
    await _publish(dep, "minutes", job, minutes)
    await _publish(dep, "_progress", job, progress("archive", Stage.DONE))
    await _publish(dep, "_progress", job, progress("index", Stage.DONE))
    await _publish(dep, "indexed", job, Indexed(key=DocumentKey(doc_id=f"meeting/{job}"),
                                                version="v1", action="put"))
    await dep.bus.nc.flush()
    return pcm


# --- one recording through the real pipeline ------------------------------------------------------

@pytest.mark.models
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="llama-cpp-python is not installed")
async def test_a_recording_posted_to_the_gateway_comes_back_as_minutes(
        nats_server, namespace, shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("PATCHWIRE_STORE", str(tmp_path / "store.sqlite"))
    topo = topo_spec.override(topo_spec.load(ROOT / "topology/meeting_transcriber.yaml"),
                              ["asr.model=whisper-tiny.en", "summarize.model=smollm2-135m"])
    dep = await Deployment.open(topo, nats_server.url, namespace)
    running = None
    try:
        await dep.start_operators()
        running = await start_gateway(dep, topo, port=0)
        recording = shared_data / "diarization/ami_mixture_es2004a/mixture.wav"
        async with aiohttp.ClientSession(base_url=running.url) as http:
            status, job = await post(http, form(recording.read_bytes(), "es2004a.wav",
                                                title="Remote control", summarize="false"))
            assert status == 202, job
            async with http.get(job["events"], timeout=aiohttp.ClientTimeout(300)) as r:
                events = sse(await r.text())
            async with http.get(job["minutes"]) as r:
                minutes = await r.json()
            async with http.get(job["audio"], headers={"Range": "bytes=0-43"}) as r:
                assert r.status == 206 and (await r.read())[:4] == b"RIFF"
                assert r.headers["Content-Range"].endswith(f"/{44 + 60 * 32_000}")
    finally:
        if running is not None:
            await running.close()
        await dep.close()
    assert events[-1]["stage"] == "done", events[-1]
    started = [e["stage"] for e in events if e["state"] == "started"]
    assert started == ["decode", "vad", "asr", "diarize", "cleanup", "summarize", "archive",
                       "chunk", "embed", "index"]
    segments = minutes["transcript"]["segments"]
    assert segments and len({s["speaker"] for s in segments}) >= 2
    assert minutes["summary"] is None and minutes["document_id"] == f"meeting/{job['job_id']}"
