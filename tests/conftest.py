"""Shared fixtures: a real nats-server on a random port for the whole session, and a fresh
subject namespace per test so tests never see each other's messages."""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

os.environ.setdefault("PATCHWIRE_TRACE_FILE", str(Path("/tmp") / f"pw-test-spans-{os.getpid()}.jsonl"))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    from topology.server import EmbeddedNats
    server = EmbeddedNats(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def tracing_to_file():
    from topology import tracing
    tracing.setup_tracing("patchwire-tests")
    yield
    tracing.shutdown_tracing()


@pytest.fixture(scope="module")
async def browser():
    """Headless Debian chromium (infra/browser.sh installs it); absent in CI is a failure."""
    from tests.browser import Browser, find_chromium
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed in CI: run `bash infra/browser.sh` first")
        pytest.skip("chromium is not installed: run `bash infra/browser.sh` to get the page tests")
    launched = await Browser.launch(binary)
    try:
        yield launched
    finally:
        await launched.close()
