"""The whole product from the outside: `patchwire up`'s gateway in front of the real doc_qa
pipeline (nats-server, MiniLM, SQLite store, SmolLM2), driven over HTTP and from the page in
headless chromium: upload a document, watch it index, ask, open a citation."""
from __future__ import annotations

import importlib.util
import json

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import ROOT
from topology import spec as topo_spec
from topology.app import Deployment
from topology.gateway.start import start_gateway

pytestmark = [pytest.mark.models, pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")]

FERNS = ("# Plants\n\n## Ferns\nFerns reproduce with spores rather than seeds. "
         "The spores grow on the underside of the fronds.\n")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(nats_server, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "store.sqlite"
    settings = [f"{op}.store={store}" for op in ("chunk", "index", "retrieve")] + [
        "answer.model=smollm2-135m", "rewrite.model=smollm2-135m",
        "answer.context_tokens=2048", "rewrite.context_tokens=2048", "answer.max_tokens=96"]
    topo = topo_spec.override(topo_spec.load(ROOT / "topology/doc_qa.yaml"), settings)
    dep = await Deployment.open(topo, nats_server.url, "tdocpage")
    await dep.start_operators()
    running = await start_gateway(dep, topo, port=0)
    yield running.url
    await running.close()
    await dep.close()


async def upload(http, url: str, name: str, text: str) -> list[dict]:
    form = aiohttp.FormData()
    form.add_field("file", text.encode(), filename=name, content_type="text/markdown")
    async with http.post(f"{url}/v1/documents", data=form) as r:
        assert r.status == 202, await r.text()
        [job] = (await r.json())["jobs"]
    events = []
    async with http.get(f"{url}/v1/jobs/{job['job_id']}/events") as r:
        async for line in r.content:
            if line.startswith(b"data:"):
                events.append(json.loads(line[5:]))
    return events


async def test_http_ingest_then_ask_json_and_stream(gateway):
    async with aiohttp.ClientSession() as http:
        events = await upload(http, gateway, "plants.md", FERNS)
        assert events[-1]["stage"] == "done"
        async with http.post(f"{gateway}/v1/ask", json={"question": "How do ferns reproduce?"}) as r:
            assert r.status == 200
            answer = await r.json()
        assert answer["outcome"] in ("answered", "abstained")
        assert answer["sources"][0]["key"]["doc_id"] == "plants.md"
        async with http.post(f"{gateway}/v1/ask?stream=1",
                             json={"question": "How do ferns reproduce?"}) as r:
            body = (await r.read()).decode()
        assert body.rstrip().split("\n\n")[-1].startswith("event: answer")
        async with http.post(f"{gateway}/v1/ask", json={"question": " "}) as r:
            assert r.status == 400



async def test_page_uploads_asks_and_opens_a_citation(gateway, browser, tmp_path):
    doc = tmp_path / "ferns.md"
    doc.write_text(FERNS)
    page = await browser.new_page()
    try:
        await page.goto(gateway + "/")
        await page.set_files("#files", [str(doc)])
        await page.click("#upload")
        await page.wait_for("document.querySelector('#jobs li')?.dataset.stage === 'done' || "
                            "document.querySelector('#jobs li')?.dataset.stage === 'unchanged'",
                            timeout=120)
        await page.type_text("#question", "How do ferns reproduce?")
        await page.click("#ask")
        last = "document.querySelector('#conversation li:last-child')"
        await page.wait_for(f"{last}.querySelector('.answer-text, .notice') !== null", timeout=180)
        if await page.evaluate(f"{last}.querySelector('button.cite') !== null"):
            await page.click("#conversation li:last-child button.cite")
            await page.wait_for("!document.getElementById('citation-panel').hidden")
            quote = await page.text("#citation-text mark")
            assert quote and quote in FERNS
        else:                                   # abstained: the closest passage is shown
            assert "spores" in await page.text(".sources .passage")
    finally:
        await page.close()
