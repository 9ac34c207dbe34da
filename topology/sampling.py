"""Which spans to keep: every job and every session turn; anonymous realtime traffic at a ratio.

A span costs ~35-45 us of CPU (the OTel SDK itself), so tracing every anonymous message
caps one hop near 10k msg/s (loadtests/RESULTS.md). Roots that carry a job or a session id
are always sampled, so "one job is one trace" holds; children follow their parent. The
standard OTEL_TRACES_SAMPLER, when set, wins over this.
"""
from __future__ import annotations

import os

from opentelemetry.sdk.trace.sampling import (Decision, ParentBased, Sampler, SamplingResult,
                                              TraceIdRatioBased)

KEYS = ("pw.job", "pw.session")
DEFAULT_RATIO = 0.01


class KeyedOrRatio(Sampler):
    """Root decision: sample when the span names a job or session, else by trace-id ratio."""

    def __init__(self, ratio: float):
        self.ratio = TraceIdRatioBased(ratio)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                      links=None, trace_state=None) -> SamplingResult:
        if attributes and any(attributes.get(k) for k in KEYS):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self.ratio.should_sample(parent_context, trace_id, name, kind, attributes,
                                        links, trace_state)

    def get_description(self) -> str:
        return f"KeyedOrRatio{{{self.ratio.get_description()}}}"


def sampler_from_env() -> Sampler | None:
    """None when OTEL_TRACES_SAMPLER is set (the SDK reads it itself)."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    ratio = float(os.environ.get("PATCHWIRE_TRACE_RATIO", DEFAULT_RATIO))
    return ParentBased(root=KeyedOrRatio(ratio))
