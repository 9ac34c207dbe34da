"""The doc_qa topology end to end over a real nats-server: ingest (durable jobs), replace,
delete, bad documents, and asking with permissions, clarification, abstention and citations.
The LLM is SmolLM2 (fast, weak): tests assert what the pipeline guarantees, not prose."""
from __future__ import annotations

import asyncio
import importlib.util
import zipfile
from pathlib import Path

import msgspec
import nats
import pytest
import pytest_asyncio

from schemas.documents import Answer, AnswerDelta, AskRequest, DocumentKey, Principal
from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.gateway.service import Upload
from topology.qa import QaClient, serve_requests

pytestmark = [pytest.mark.models, pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")]

TOWER = """# The Eiffel Tower

## Height
The Eiffel Tower is 330 metres tall. It was the tallest structure in the world until 1930.

## History
Gustave Eiffel's company built the tower for the 1889 World's Fair in Paris.
"""
BUDGET = """<html><head><title>Budget 2026</title><script>var x = 1;</script></head><body>
<h1>Budget 2026</h1><p>The marketing budget for 2026 is 4.2 million euros, approved in March.
The secret code word is CANARY-FINANCE-91.</p></body></html>"""
PLANTS = "Ferns reproduce with spores rather than seeds. Mosses also use spores."


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def qa(nats_server, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "store.sqlite"
    settings = [f"{op}.store={store}" for op in ("chunk", "index", "retrieve")] + [
        "answer.model=smollm2-135m", "rewrite.model=smollm2-135m", "answer.context_tokens=2048",
        "rewrite.context_tokens=2048", "answer.max_tokens=96"]
    topo = topo_spec.override(topo_spec.load(ROOT / "topology/doc_qa.yaml"), settings)
    dep = await Deployment.open(topo, nats_server.url, "tdocqa")
    await dep.start_operators()
    yield dep, QaClient(dep.bus, dep.blobs, ask_timeout_s=600)
    await dep.close()


async def ingest(client: QaClient, tmp: Path, name: str, data: bytes | str, acl=("*",),
                 tenant: str = "default") -> list:
    path = tmp / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    ticket = await client.ingest(Upload(filename=name, path=path),
                                 DocumentKey(tenant=tenant, doc_id=name), list(acl))
    return [e async for e in client.job_events(ticket.job_id)]


async def ask(client: QaClient, question: str, **kw) -> tuple[list, Answer]:
    events = [e async for e in client.ask(AskRequest(request_id=f"r{id(question)}{len(question)}",
                                                     question=question, **kw))]
    assert isinstance(events[-1], Answer) and sum(isinstance(e, Answer) for e in events) == 1
    return events[:-1], events[-1]


async def test_ingest_reingest_replace_and_delete(qa, tmp_path):
    dep, client = qa
    events = await ingest(client, tmp_path, "tower.md", TOWER)
    assert events[-1].stage == "done" and "chunks" in events[-1].note
    again = await ingest(client, tmp_path, "tower.md", TOWER)
    assert again[-1].stage == "unchanged"                 # same bytes: nothing re-embedded
    changed = TOWER.replace("330 metres", "330 metres (1,083 ft)").replace("Gustave", "Engineer")
    assert (await ingest(client, tmp_path, "tower.md", changed))[-1].stage == "done"
    _, answer = await ask(client, "Gustave Eiffel company", mode="keyword")
    assert all("Gustave" not in s.text for s in answer.sources)   # the old version is gone
    ticket = await client.delete(DocumentKey(doc_id="tower.md"))
    assert [e async for e in client.job_events(ticket.job_id)][-1].stage == "deleted"
    _, answer = await ask(client, "How tall is the Eiffel Tower?", mode="keyword")
    assert answer.outcome == "abstained" and not answer.sources


async def test_bad_documents_fail_with_a_reason_and_others_go_on(qa, tmp_path):
    dep, client = qa
    fake_pdf = tmp_path / "z.zip"
    with zipfile.ZipFile(fake_pdf, "w") as z:
        z.writestr("a.txt", "hello")
    results = await asyncio.gather(
        ingest(client, tmp_path, "report.pdf", fake_pdf.read_bytes()),
        ingest(client, tmp_path, "empty.txt", b""),
        ingest(client, tmp_path, "scripts.html", "<html><script>alert(1)</script></html>"),
        ingest(client, tmp_path, "plants.txt", PLANTS))
    stages = [r[-1].stage for r in results]
    assert stages == ["failed", "failed", "failed", "done"]
    assert "zip" in results[0][-1].note.lower()
    assert "empty" in results[1][-1].note.lower() and "no text" in results[2][-1].note.lower()
    dead = await dep.bus.js.get_last_msg(dep.bus.subjects.events_stream,
                                         dep.bus.subjects.dead_letter("chunk"))
    assert dead.headers["Pw-Category"] == "bad_input"         # kept, with why, for a person
    assert dead.headers["Pw-Reason"] in {r[-1].note[:1000] for r in results[:3]}


async def test_permissions_hold_inside_retrieval(qa, tmp_path):
    dep, client = qa
    assert (await ingest(client, tmp_path, "budget.html", BUDGET, acl=["finance"]))[-1].stage == "done"
    assert (await ingest(client, tmp_path, "other.txt", "CANARY-FINANCE-91 budget",
                         tenant="globex"))[-1].stage == "done"
    outsider = Principal(user="bob", groups=["engineering"])
    for mode in ("keyword", "vector", "hybrid"):
        _, answer = await ask(client, "CANARY-FINANCE-91 marketing budget 2026", principal=outsider,
                              mode=mode)
        seen = [p.key.doc_id for p in answer.sources] + [c.key.doc_id for c in answer.citations]
        assert "budget.html" not in seen and "other.txt" not in seen
        assert "CANARY" not in answer.text
    insider = Principal(user="ann", groups=["finance"])
    _, answer = await ask(client, "CANARY-FINANCE-91 marketing budget", principal=insider,
                          mode="keyword")
    assert answer.outcome in ("answered", "abstained")
    assert "budget.html" in [p.key.doc_id for p in answer.sources]
    assert all(p.key.tenant == "default" for p in answer.sources)


async def test_questions_get_clear_outcomes(qa, tmp_path):
    dep, client = qa
    await ingest(client, tmp_path, "plants.txt", PLANTS)
    _, empty = await ask(client, "   ")
    assert empty.outcome == "rejected" and "empty" in empty.text
    _, huge = await ask(client, "why " * 25_000)
    assert huge.outcome == "rejected" and "limit" in huge.text
    _, vague = await ask(client, "what about it?")
    assert vague.outcome == "clarify"
    _, nobody = await ask(client, "How do ferns reproduce?", principal=Principal(tenant="nobody"))
    assert nobody.outcome == "abstained" and not nobody.sources


async def test_answers_stream_then_cite_real_spans(qa, tmp_path):
    dep, client = qa
    await ingest(client, tmp_path, "plants.txt", PLANTS)
    deltas, answer = await ask(client, "How do ferns reproduce?")
    assert answer.outcome in ("answered", "abstained")
    assert answer.sources and answer.sources[0].key.doc_id == "plants.txt"
    if answer.outcome == "answered":
        assert deltas and all(isinstance(d, AnswerDelta) for d in deltas)
        for c in answer.citations:
            assert c.quote and c.quote in PLANTS and c.key.doc_id == "plants.txt"
    assert "search_ms" in answer.timings


async def test_nats_request_reply(qa, nats_server, tmp_path):
    dep, client = qa
    sub = await serve_requests(client)
    nc = await nats.connect(nats_server.url)
    try:
        req = AskRequest(request_id="rr1", question="   ")
        reply = await nc.request(f"{dep.bus.subjects.root}._ask", msgspec.msgpack.encode(req),
                                 timeout=60)
        assert msgspec.msgpack.decode(reply.data, type=Answer).outcome == "rejected"
        reply = await nc.request(f"{dep.bus.subjects.root}._ask", b'{"question": 1}', timeout=10,
                                 headers={"Content-Type": "application/json"})
        assert b"not an AskRequest" in reply.data
    finally:
        await nc.close()
        await sub.unsubscribe()


async def test_an_ask_is_one_trace_from_the_client_through_every_operator(qa, tmp_path):
    from opentelemetry import trace as otel
    from topology import tracing
    dep, client = qa
    await ingest(client, tmp_path, "plants.txt", PLANTS)
    request = AskRequest(request_id="tracedask1", question="How do ferns reproduce?")
    [e async for e in client.ask(request)]
    otel.get_tracer_provider().force_flush()
    spans = tracing.read_spans(tracing.trace_file(), "tracedask1")
    names = [s["name"] for s in spans]
    assert names[0] == "ask" and len({s["trace_id"] for s in spans}) == 1
    for operator in ("rewrite", "retrieve", "rerank", "answer", "verify"):
        assert any(operator in n for n in names), names
