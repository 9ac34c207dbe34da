"""Tracing: context crosses processes in NATS headers, spans land in one JSONL file, a job reads
back as a waterfall, the OTel environment is honoured, cancellation is not an error."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from topology import tracing
from topology.tracing import (build_provider, exporters_from_env, extract,
                              format_missing, inject, operator_span, read_spans, waterfall)

OTEL_ENV = ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in OTEL_ENV:
        monkeypatch.delenv(name, raising=False)


def memory_tracer():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_two_processes_sharing_a_file_form_one_trace(tmp_path):
    path = tmp_path / "spans.jsonl"
    gateway, asr = build_provider("gateway", path), build_provider("asr", path)
    headers: dict[str, str] = {}
    with gateway.get_tracer("t").start_as_current_span("ingest", attributes={"pw.job": "j1"}):
        inject(headers)
    assert headers["traceparent"].startswith("00-")
    with operator_span(asr.get_tracer("t"), "asr", "pw.mt.audio.j1", headers, "j1", 1, topology="mt"):
        downstream: dict[str, str] = {}
        inject(downstream)
    with operator_span(gateway.get_tracer("t"), "summarize", "pw.mt.text.j1", downstream, "j1", 2):
        pass
    with gateway.get_tracer("t").start_as_current_span("unrelated", attributes={"pw.job": "j2"}):
        pass
    gateway.shutdown()
    asr.shutdown()

    spans = read_spans(path, "j1")
    assert [s["name"] for s in spans] == ["ingest", "asr", "summarize"]
    assert len({s["trace_id"] for s in spans}) == 1
    ingest, asr_span, summarize = spans
    assert asr_span["parent_span_id"] == ingest["span_id"]
    assert summarize["parent_span_id"] == asr_span["span_id"]
    assert {s["service"] for s in spans} == {"gateway", "asr"}
    assert asr_span["kind"] == "CONSUMER"
    assert asr_span["attributes"] == {
        "pw.operator": "asr", "messaging.system": "nats", "messaging.destination.name": "pw.mt.audio.j1",
        "pw.attempt": 1, "pw.topology": "mt", "pw.job": "j1"}
    assert read_spans(path, "nope") == [] and read_spans(tmp_path / "absent", "j1") == []


APPEND_SCRIPT = """
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from topology.tracing import JsonlSpanExporter
memory, provider = InMemorySpanExporter(), TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
for i in range(20):
    with provider.get_tracer("t").start_as_current_span(str(i), attributes={"pad": "x" * 3000}):
        pass
exporter = JsonlSpanExporter(sys.argv[1])
for _ in range(25):  # 20 spans of ~3 kB: each batch is one ~60 kB write, far over PIPE_BUF
    exporter.export(memory.get_finished_spans())
"""


def test_concurrent_processes_never_tear_lines(tmp_path):
    path = tmp_path / "spans.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", APPEND_SCRIPT, str(path)], env=child_env())
             for _ in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2 * 25 * 20
    assert all(json.loads(line)["attributes"]["pad"] == "x" * 3000 for line in lines)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OTEL_ENV}
    env.update(PYTHONPATH=str(Path(tracing.__file__).parents[1]), **extra)
    return env


def test_torn_line_is_skipped(tmp_path):
    path = tmp_path / "spans.jsonl"
    provider = build_provider("svc", path)
    with operator_span(provider.get_tracer("t"), "vad", "s", None, "j1"):
        pass
    provider.shutdown()
    with path.open("ab") as f:
        f.write(b'{"name": "half-writ')
    assert [s["name"] for s in read_spans(path, "j1")] == ["vad"]


def span(name, span_id, parent, start_ms, end_ms, status="UNSET"):
    return {"name": name, "trace_id": "t", "span_id": span_id, "parent_span_id": parent,
            "start_ns": int(start_ms * 1e6), "end_ns": int(end_ms * 1e6), "status": status}


def test_waterfall_lists_stages_in_order_with_durations():
    spans = [span("generate", "c", "a", 6, 9.5), span("gateway", "a", None, 0, 10),
             span("asr", "b", "a", 1, 6), span("tts", "d", "c", 9.5, 10, "ERROR")]
    rows = waterfall(spans).splitlines()
    assert rows[0].split()[:3] == ["stage", "start", "ms"]
    assert [r.split()[0] for r in rows[1:]] == ["gateway", "asr", "generate", "tts"]
    assert rows[2].startswith("  asr ") and rows[4].startswith("    tts  !")
    assert rows[1].split()[1:3] == ["0.000", "10.000"]
    assert rows[2].split()[1:3] == ["1.000", "5.000"]
    assert rows[3].split()[1:3] == ["6.000", "3.500"]
    bars = [r[r.index("|") + 1:r.rindex("|")] for r in rows[1:]]
    assert all(len(b) == 40 for b in bars)
    assert bars[0] == "#" * 40 and bars[1] == " " * 4 + "#" * 20 + " " * 16
    assert waterfall([]) == ""


def test_format_missing_points_at_otlp():
    msg = format_missing("j9", Path("/x/spans.jsonl"))
    assert msg == ("no spans for job j9 in /x/spans.jsonl; "
                   "is tracing exported elsewhere (OTEL_EXPORTER_OTLP_ENDPOINT)?")


def test_sdk_disabled_makes_no_spans(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    path = tmp_path / "spans.jsonl"
    provider = build_provider("svc", path)
    headers: dict[str, str] = {}
    with operator_span(provider.get_tracer("t"), "asr", "s", None, "j1") as s:
        assert not s.is_recording()
        inject(headers)
    provider.shutdown()
    assert headers == {} and not path.exists()


def test_exporter_selection_follows_otel_env(tmp_path, monkeypatch):
    def kinds():
        return [f"{type(e).__module__}.{type(e).__name__}" for e in exporters_from_env(tmp_path / "f")]

    assert kinds() == ["topology.tracing.JsonlSpanExporter"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert kinds() == ["opentelemetry.exporter.otlp.proto.grpc.trace_exporter.OTLPSpanExporter"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert kinds() == ["opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/json"):
        exporters_from_env()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporters_from_env() == []


def test_exporter_none_still_propagates_context(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = build_provider("svc")
    headers: dict[str, str] = {}
    with operator_span(provider.get_tracer("t"), "asr", "s", None):
        inject(headers)
    assert "traceparent" in headers


async def test_cancellation_is_not_an_error():
    tracer, memory = memory_tracer()

    async def work():
        with operator_span(tracer, "asr", "s", None, "j1"):
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (finished,) = memory.get_finished_spans()
    assert finished.status.status_code is StatusCode.UNSET and not finished.events


def test_exception_is_recorded_and_reraised():
    tracer, memory = memory_tracer()
    with pytest.raises(ValueError):
        with operator_span(tracer, "asr", "s", {"traceparent": "garbage"}, "j1"):
            raise ValueError("bad audio")
    (finished,) = memory.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "ValueError: bad audio"
    assert finished.attributes["error.type"] == "ValueError"
    assert [e.name for e in finished.events] == ["exception"]
    assert finished.parent is None  # an unreadable traceparent starts a new trace


def test_extract_without_headers_is_a_new_root():
    tracer, memory = memory_tracer()
    with tracer.start_as_current_span("outer"):
        with operator_span(tracer, "asr", "s", None):
            pass
    inner = memory.get_finished_spans()[0]
    assert inner.name == "asr" and inner.parent is None
    assert extract({}) == extract(None)


SETUP_SCRIPT = """
from opentelemetry import trace
from topology.tracing import operator_span, setup_tracing, shutdown_tracing
first = setup_tracing("svc-a")
assert setup_tracing("svc-b") is first
assert trace.get_tracer_provider() is first
with operator_span(trace.get_tracer("t"), "asr", "s", None, "j1"):
    pass
shutdown_tracing()
shutdown_tracing()
"""


def test_setup_is_idempotent_and_flushes_on_shutdown(tmp_path):
    path = tmp_path / "spans.jsonl"
    subprocess.run([sys.executable, "-c", SETUP_SCRIPT], env=child_env(PATCHWIRE_TRACE_FILE=str(path)),
                   check=True, timeout=60)
    (only,) = read_spans(path, "j1")
    assert only["service"] == "svc-a" and only["name"] == "asr"
