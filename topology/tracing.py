"""Tracing: one OpenTelemetry setup per process, W3C trace context in NATS headers, a JSONL
span file that several processes share, and a waterfall view of one job.

Where spans go is decided by the standard OTel environment, read once in `setup_tracing`:

    OTEL_SDK_DISABLED=true                    no spans at all (tracers are no-ops)
    OTEL_TRACES_EXPORTER=none                 spans are made (context still flows) but not kept
    OTEL_TRACES_EXPORTER=otlp, or an          OTLP; OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL picks
    OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT      grpc (default) or http/protobuf
    otherwise                                 JSONL lines in trace_file(), read by `read_spans`
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from topology.sampling import sampler_from_env

log = logging.getLogger(__name__)

TOPOLOGY, OPERATOR, JOB, SESSION = "pw.topology", "pw.operator", "pw.job", "pw.session"
ATTEMPT = "pw.attempt"

_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_provider: TracerProvider | None = None
_global_set = False


def trace_file() -> Path:
    """Where JSONL spans go: $PATCHWIRE_TRACE_FILE, else the user data dir."""
    if env := os.environ.get("PATCHWIRE_TRACE_FILE"):
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_data_dir("patchwire")) / "traces" / "spans.jsonl"


def span_record(span: ReadableSpan) -> dict:
    """One span as the plain dict written on one JSONL line."""
    ctx, parent = span.get_span_context(), span.parent
    record = {
        "name": span.name, "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent else None,
        "kind": span.kind.name, "start_ns": span.start_time, "end_ns": span.end_time,
        "status": span.status.status_code.name, "attributes": dict(span.attributes or {}),
        "service": span.resource.attributes.get(SERVICE_NAME),
    }
    if span.status.description:
        record["status_message"] = span.status.description
    if span.events:
        record["events"] = [{"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
                            for e in span.events]
    return record


class JsonlSpanExporter(SpanExporter):
    """Appends one JSON line per span. Each batch is one write(2) on an O_APPEND descriptor under
    an exclusive flock, so processes sharing the file never interleave parts of lines."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._encoder = msgspec.json.Encoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(self._encoder.encode(span_record(s)) + b"\n" for s in spans)
        try:
            self._append(data)
        except OSError as exc:
            log.warning("could not write %d spans to %s: %s", len(spans), self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)  # also releases the lock


def _otlp_exporter() -> SpanExporter:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use 'grpc' or 'http/protobuf'")
    return OTLPSpanExporter()


def exporters_from_env(path: Path | None = None) -> list[SpanExporter]:
    """The exporters the OTel environment asks for; JSONL at `path` when it asks for none."""
    env = os.environ
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if "none" in names:
        return []
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        names = ["otlp"] if endpoint else ["jsonl"]
    if unknown := set(names) - {"otlp", "jsonl"}:
        log.warning("OTEL_TRACES_EXPORTER: %s ignored (known: otlp, jsonl, none)", sorted(unknown))
    exporters: list[SpanExporter] = [_otlp_exporter()] if "otlp" in names else []
    if "jsonl" in names or not exporters:
        exporters.append(JsonlSpanExporter(path or trace_file()))
    return exporters


def build_provider(service_name: str, trace_file: Path | None = None) -> TracerProvider:
    """A provider configured from the environment; touches no global state."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}),
                              sampler=sampler_from_env())
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return provider  # its tracers are no-ops
    queue = None if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else 8192  # 0.8 s of spans at 10k msg/s
    for exporter in exporters_from_env(trace_file):
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue))
    return provider


def setup_tracing(service_name: str, trace_file: Path | None = None) -> TracerProvider:
    """Configure this process once and make it global; later calls (another operator in the same
    process) return the first provider, whose service name stays."""
    global _provider, _global_set
    with _lock:
        if _provider is not None:
            return _provider
        _provider = build_provider(service_name, trace_file)
        if not _global_set:
            trace.set_tracer_provider(_provider)
            _global_set = True
        return _provider


def shutdown_tracing() -> None:
    """Flush every pending span and stop exporting. Call once, when the process ends."""
    global _provider
    with _lock:
        provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()  # the batch processors export what they still hold


def inject(headers: dict[str, str], context: otel_context.Context | None = None) -> None:
    """Write W3C traceparent/tracestate of the current (or given) context into NATS headers."""
    _PROPAGATOR.inject(headers, context)


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by NATS headers; an empty context (a new root) when none."""
    return _PROPAGATOR.extract(headers) if headers else otel_context.Context()


@contextlib.contextmanager
def operator_span(tracer: trace.Tracer, operator: str, subject: str, headers: Mapping[str, str] | None,
                  job_id: str = "", attempt: int = 1, *, topology: str = "",
                  session: str = "") -> Iterator[Span]:
    """A CONSUMER span for one message, child of the context in its headers, current while open.
    An exception is recorded and sets ERROR, then re-raised; CancelledError passes untouched."""
    attributes: dict[str, str | int] = {OPERATOR: operator, "messaging.system": "nats",
                                        "messaging.destination.name": subject, ATTEMPT: attempt}
    for key, value in ((TOPOLOGY, topology), (JOB, job_id), (SESSION, session)):
        if value:
            attributes[key] = value
    parent = extract(headers)
    span = tracer.start_span(operator, context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    except Exception as exc:
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        otel_context.detach(token)
        span.end()


def read_spans(path: Path | str, job_id: str) -> list[dict]:
    """Every span of every trace that has a span with pw.job (or pw.session) == job_id,
    sorted by start: a job's trace, or a request's (an ask is keyed by its request id)."""
    path = Path(path)
    if not path.exists():
        return []
    needle, traces = job_id.encode(), set()
    with path.open("rb") as f:
        for line in f:
            if needle in line and (rec := _decode(line)) and job_id in (
                    rec.get("attributes", {}).get(JOB), rec.get("attributes", {}).get(SESSION)):
                traces.add(rec["trace_id"])
    spans, needles = [], [t.encode() for t in traces]
    with path.open("rb") as f:
        for line in f:
            if any(t in line for t in needles) and (rec := _decode(line)) and rec.get("trace_id") in traces:
                spans.append(rec)
    return sorted(spans, key=lambda s: s.get("start_ns") or 0)


def _decode(line: bytes) -> dict | None:
    with contextlib.suppress(msgspec.DecodeError):  # a torn last line from a killed process
        rec = msgspec.json.decode(line)
        return rec if isinstance(rec, dict) else None
    return None


def _depth(span_id: str, parents: dict[str, str | None]) -> int:
    depth = 0
    while (span_id := parents.get(span_id)) in parents and depth < 64:  # 64: a cycle guard
        depth += 1
    return depth


def waterfall(spans: list[dict], width: int = 40) -> str:
    """Rows by start time: stage (indented by tree depth), start offset ms, duration ms, bar."""
    if not spans:
        return ""
    spans = sorted(spans, key=lambda s: s["start_ns"])
    t0 = spans[0]["start_ns"]
    total = max(max(s["end_ns"] or s["start_ns"] for s in spans) - t0, 1)
    parents = {s["span_id"]: s.get("parent_span_id") for s in spans}
    names = ["  " * _depth(s["span_id"], parents) + s["name"] + ("  !" * (s.get("status") == "ERROR"))
             for s in spans]
    col = max(5, *map(len, names))
    rows = [f"{'stage':<{col}}  {'start ms':>10}  {'dur ms':>10}  |{'':<{width}}|"]
    for name, s in zip(names, spans):
        start, dur = s["start_ns"] - t0, max((s["end_ns"] or s["start_ns"]) - s["start_ns"], 0)
        lead = min(int(start * width / total), width - 1)
        bar = " " * lead + "#" * min(max(1, round(dur * width / total)), width - lead)
        rows.append(f"{name:<{col}}  {start / 1e6:>10.3f}  {dur / 1e6:>10.3f}  |{bar:<{width}}|")
    return "\n".join(rows)


def format_missing(job_id: str, path: Path | str) -> str:
    return (f"no spans for job {job_id} in {path}; "
            "is tracing exported elsewhere (OTEL_EXPORTER_OTLP_ENDPOINT)?")
