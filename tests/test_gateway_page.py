"""The web page in a real headless chromium, served by the real gateway over HTTP, in front
of a scripted QaService. Chromium comes from `bash infra/browser.sh` (Debian package)."""
from __future__ import annotations

import asyncio
import contextlib
import json

import msgspec

from schemas.documents import (Answer, AnswerDelta, AskRequest, Citation, DocumentKey, Passage,
                               Principal, Turn)
from topology.gateway.auth import load_users
from topology.gateway.http import make_app, serve
from topology.gateway.service import IngestTicket, JobEvent

KEY = DocumentKey(collection="hr", doc_id="policy.md")
REFUND_PASSAGE = Passage(
    chunk_id="policy.md#3", key=KEY, index=3, start=120, end=180, title="Travel policy",
    section_path=["Policies", "Refunds"],
    text="Tickets are refundable. Refunds are paid within 30 days of the request.")
REFUND_QUOTE = "Refunds are paid within 30 days of the request."
REFUNDS = Answer(
    request_id="", text="Refunds are paid within 30 days [1].",
    citations=[Citation(n=1, chunk_id="policy.md#3", key=KEY, title="Travel policy",
                        section_path=["Policies", "Refunds"], start=120, end=180,
                        quote=REFUND_QUOTE)],
    sources=[REFUND_PASSAGE], removed=["Shipping is always free. (no supporting passage)"],
    timings={"retrieve": 12.0, "generate": 340.4})
REFUND_DELTAS = ["Refunds are paid within 30 days [1]. ", "Shipping is always free."]
ABSTAINED = Answer(request_id="", text="", outcome="abstained", sources=[
    msgspec.structs.replace(REFUND_PASSAGE, title="Closest: travel policy")])
CLARIFY = Answer(request_id="", text="Do you mean train or plane tickets?", outcome="clarify")
MARKUP = '<img src=x onerror="window.__xss = 1">'
XSS = Answer(
    request_id="", text=f"Look {MARKUP} here [1].",
    citations=[Citation(n=1, chunk_id="evil#0", key=KEY, title=f"<b>{MARKUP}</b>", quote=MARKUP)],
    sources=[msgspec.structs.replace(REFUND_PASSAGE, chunk_id="evil#0",
                                     text=f"Before {MARKUP} after.")])


class PageService:
    """Answers by question; each answer waits for its gate, so a test sees the draft first."""

    def __init__(self) -> None:
        self.script = {"What is the refund policy?": (REFUND_DELTAS, REFUNDS),
                       "And for trains?": ([], CLARIFY), "Who won the cup?": ([], ABSTAINED),
                       "show me": ([], XSS)}
        self.gates: dict[str, asyncio.Event] = {}
        self.asked: list[AskRequest] = []
        self.ingested: list[tuple[str, DocumentKey, list[str], bytes]] = []

    async def ask(self, request: AskRequest):
        self.asked.append(request)
        deltas, answer = self.script[request.question]
        for index, text in enumerate(deltas):
            yield AnswerDelta(request_id=request.request_id, index=index, text=text)
        if request.question in self.gates:
            await self.gates[request.question].wait()
        yield msgspec.structs.replace(answer, request_id=request.request_id)

    async def ingest(self, upload, key, acl, metadata=None) -> IngestTicket:
        self.ingested.append((upload.filename, key, acl, upload.path.read_bytes()))
        return IngestTicket(job_id=f"job-{upload.filename}", key=key, filename=upload.filename)

    async def job_events(self, job_id: str):
        if job_id.endswith("broken.pdf"):
            stages = [JobEvent(job_id=job_id, stage="parsing"),
                      JobEvent(job_id=job_id, stage="failed",
                               note="could not parse: the PDF is encrypted")]
        else:
            stages = [JobEvent(job_id=job_id, stage="parsing"),
                      JobEvent(job_id=job_id, stage="embedding", done=1, total=2),
                      JobEvent(job_id=job_id, stage="embedding", done=2, total=2),
                      JobEvent(job_id=job_id, stage="done", done=2, total=2)]
        for event in stages:
            yield event

    async def delete(self, key):
        raise NotImplementedError

    async def documents(self, principal, collection=""):
        return []



@contextlib.asynccontextmanager
async def page_on(browser, service, users=None):
    """A fresh tab on the page served by a fresh gateway."""
    runner, url = await serve(make_app(service, users=users))
    page = await browser.new_page()
    try:
        await page.goto(url + "/")
        await page.wait_for("document.getElementById('identity').textContent !== 'Connecting…'")
        yield page
    finally:
        await page.close()
        await runner.cleanup()


async def ask(page, question: str) -> None:
    await page.type_text("#question", question)
    await page.click("#ask")


LAST_TURN = "document.querySelector('#conversation li:last-child')"


async def test_answer_streams_then_is_replaced_by_the_verified_one(browser):
    service = PageService()
    gate = service.gates["What is the refund policy?"] = asyncio.Event()
    async with page_on(browser, service) as page:
        assert "Anonymous" in await page.text("#identity")
        await ask(page, "What is the refund policy?")
        await page.wait_for(f"{LAST_TURN}?.querySelector('.draft')?.textContent"
                            f" === {json.dumps(''.join(REFUND_DELTAS))}")
        assert await page.evaluate(f"{LAST_TURN}.querySelector('.answer-text')") is None
        gate.set()
        await page.wait_for(f"{LAST_TURN}.querySelector('.answer-text') !== null")
        assert await page.text("#conversation li:last-child .answer-text") == REFUNDS.text
        assert "Shipping" not in await page.text("#conversation li:last-child .answer")
        assert await page.text(".removed-note") == "1 sentence removed as unsupported"
        assert await page.text(".timings") == "retrieve 12 ms · generate 340 ms"

        await page.click("#conversation li:last-child button.cite")
        await page.wait_for("!document.getElementById('citation-panel').hidden")
        assert await page.text("#citation-title") == "Travel policy"
        assert await page.text("#citation-section") == "Policies › Refunds"
        assert "120–180" in await page.text("#citation-span")
        assert await page.text("#citation-text") == REFUND_PASSAGE.text
        assert await page.text("#citation-text mark") == REFUND_QUOTE

        await ask(page, "And for trains?")                 # the conversation goes along
        await page.wait_for(f"{LAST_TURN}.querySelector('.clarify') !== null")
        assert await page.text("#conversation li:last-child .clarify") == CLARIFY.text
    assert service.asked[1].history == [Turn(role="user", content="What is the refund policy?"),
                                        Turn(role="assistant", content=REFUNDS.text)]
    assert service.asked[0].principal == Principal()


async def test_abstained_answer_shows_the_message_and_closest_sources(browser):
    async with page_on(browser, PageService()) as page:
        await ask(page, "Who won the cup?")
        await page.wait_for(f"{LAST_TURN}.querySelector('.notice') !== null")
        assert await page.text(".notice") == "The documents do not answer this question."
        assert await page.text(".sources li strong") == "Closest: travel policy"
        assert await page.text(".sources .passage") == REFUND_PASSAGE.text


async def test_upload_shows_progress_to_done_and_a_failure_reason(browser, tmp_path):
    good, broken = tmp_path / "handbook.md", tmp_path / "broken.pdf"
    good.write_text("# Handbook\nBe kind.")
    broken.write_bytes(b"%PDF-1.7 encrypted")
    service = PageService()
    async with page_on(browser, service) as page:
        await page.set_files("#files", [str(good), str(broken)])
        await page.type_text("#collection", "hr")
        await page.type_text("#acl", "eng, ops")
        await page.click("#upload")
        done = "document.querySelector('#jobs li[data-job-id=\"job-handbook.md\"]')"
        failed = "document.querySelector('#jobs li[data-job-id=\"job-broken.pdf\"]')"
        await page.wait_for(f"{done}?.dataset.stage === 'done'")
        assert await page.evaluate(f"{done}.querySelector('progress').value") == 1
        assert await page.evaluate(f"{done}.querySelector('.stage').textContent") == "done 2/2"
        await page.wait_for(f"{failed}?.classList.contains('failed')")
        reason = await page.evaluate(f"{failed}.querySelector('.reason').textContent")
        assert reason == "could not parse: the PDF is encrypted"
    assert service.ingested == [
        ("handbook.md", DocumentKey(collection="hr", doc_id="handbook.md"), ["eng", "ops"],
         b"# Handbook\nBe kind."),
        ("broken.pdf", DocumentKey(collection="hr", doc_id="broken.pdf"), ["eng", "ops"],
         b"%PDF-1.7 encrypted")]


async def test_markup_in_answers_and_passages_is_shown_as_text_never_run(browser):
    async with page_on(browser, PageService()) as page:
        await ask(page, "show me")
        await page.wait_for(f"{LAST_TURN}.querySelector('.answer-text') !== null")
        await page.click("#conversation li:last-child button.cite")
        await page.wait_for("!document.getElementById('citation-panel').hidden")
        assert await page.text("#conversation li:last-child .answer-text") == XSS.text
        assert await page.text("#citation-title") == f"<b>{MARKUP}</b>"
        assert await page.text("#citation-text") == f"Before {MARKUP} after."
        assert await page.text("#citation-text mark") == MARKUP
        # No element was made from the text (so no handler could exist to run).
        assert await page.evaluate("document.querySelectorAll('img, b').length") == 0
        assert await page.evaluate("window.__xss === undefined")


async def test_token_form_sends_the_bearer_token(browser, tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text('users:\n  alice: {token: "tok-alice", tenant: acme, groups: [eng]}\n')
    service = PageService()
    async with page_on(browser, service, users=load_users(path)) as page:
        assert await page.text("#identity") == "Enter your access token."
        await page.type_text("#token", "tok-wrong")
        await page.click("#token-form button")
        await ask(page, "Who won the cup?")
        await page.wait_for(f"{LAST_TURN}.querySelector('.error') !== null")
        assert await page.text("#conversation li:last-child .error") == \
            "Your access token was not accepted."
        await page.evaluate("document.getElementById('token').value = ''")
        await page.type_text("#token", "tok-alice")
        await page.click("#token-form button")
        await ask(page, "Who won the cup?")
        await page.wait_for(f"{LAST_TURN}.querySelector('.notice') !== null")
    assert [r.principal.user for r in service.asked] == ["alice"]
