"""The eval and benchmark scripts' own arithmetic: targets, worst utterances, percentiles,
/proc parsing, bus_overhead.py's table, report text. No models, no servers, no timings."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evals import asr
from evals.wer import score_manifest
from loadtests import memory
from loadtests import transcribe as bench

STATUS = """Name:\tpython
VmPeak:\t  812344 kB
VmSize:\t  790000 kB
VmHWM:\t  307456 kB
VmRSS:\t  250000 kB
Threads:\t12
"""

BUS = """| path | p50 round trip ms | p99 round trip ms | msg/s (median of rounds) |
|---|---|---|---|
| direct (0 hops) | 0.110 | 0.300 | 40,123 |
| patchwire runner (realtime) | 0.420 | 1.900 | 12,500 |
| patchwire runner (durable, every job traced) | 1.800 | 4.000 | 2,100 |

Per-hop overhead (runner minus direct): p50 0.310 ms, p99 1.600 ms
"""


@pytest.fixture
def report(tmp_path):
    """A WER report from score_manifest with a fake transcriber: one clip right, two wrong."""
    rows = [("a.wav", "the cat sat", "c1", "the cat sat"), ("b.wav", "a dog ran home", "c1", "a dog"),
            ("c.wav", "one two three four", "c2", "one two tree four")]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"audio": a, "text": t, "duration_s": 2.0, "corpus": c}) + "\n"
                                for a, t, c, _ in rows))
    hyps = {a: h for a, _, _, h in rows}
    return score_manifest(lambda path: hyps[path.name], manifest)


def test_worst_orders_by_wer_and_skips_perfect_utterances(report):
    assert [r["audio"] for r in asr.worst(report["utterances"])] == ["b.wav", "c.wav"]
    assert asr.worst(report["utterances"], 1)[0]["wer"] == pytest.approx(0.5)


def test_targets_pass_and_fail(report):
    # 3 errors over 11 words = 27 %: over both targets
    assert report["total"]["wer"] == pytest.approx(3 / 11)
    assert asr.failed({"whisper-tiny.en": report, "whisper-unknown": report}) == ["whisper-tiny.en"]
    assert asr.verdict("whisper-base", 0.08).startswith("PASS")
    assert asr.verdict("whisper-base", 0.0801).startswith("FAIL")
    assert asr.verdict("whisper-unknown", 0.5) == "no target"


def test_results_markdown_names_everything(report):
    text = asr.render({"whisper-base": report}, {}, "python -m evals.asr", "2025-01-01",
                      Path("m.jsonl"), None)
    assert "| whisper-base | 3 | 6.0 | 11 | 27.27 % | FAIL (target ≤ 8 %) |" in text
    assert "| c2 | 1 | 4 | 1 | 0 | 0 | 25.00 % |" in text
    assert "  - hyp: a dog" in text and "`python -m evals.asr`" in text and "2025-01-01" in text


def test_pipeline_losses_against_the_engine_alone(report, tmp_path):
    baseline = json.loads(json.dumps(report))
    baseline["utterances"][1].update(errors=0, hyp_norm="a dog ran home")
    assert [r["audio"] for r, _ in asr.pipeline_losses(report, baseline)] == ["b.wav"]
    text = asr.render({"whisper-base": report}, {"whisper-base": baseline}, "c", "d", Path("m"), 2)
    assert "more errors than the engine alone: 1" in text and "  - engine:   a dog ran home" in text
    assert "| 27.27 % | FAIL (target ≤ 8 %) | 0.0 | 27.27 % | 0.0 |" in text


def test_transcript_text_joins_segments():
    segments = [SimpleNamespace(text=t) for t in (" Hello there. ", "  ", "General Kenobi.")]
    assert asr.transcript_text(SimpleNamespace(segments=segments)) == "Hello there. General Kenobi."


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [bench.percentile(values, q) for q in (0.0, 0.5, 0.9, 1.0)] == [1.0, 3.0, 5.0, 5.0]
    assert bench.percentile(list(range(1, 101)), 0.99) == 99
    with pytest.raises(ValueError):
        bench.percentile([], 0.5)


def test_rtf_summary_takes_medians_and_the_ratio():
    runs = {"pipeline": [(12.0, 300), (10.0, 300), (30.0, 300)],
            "engine": [(8.0, 290), (9.0, 290), (7.0, 290)]}
    r = bench.rtf_summary(runs, 100.0, [0.2, 0.1, 0.3, 0.5])
    assert (r["pipeline_rtf"], r["engine_rtf"], r["ratio"]) == (0.12, 0.08, 1.5)
    assert (r["clip_rtf_p50"], r["clip_rtf_p90"], r["clip_rtf_max"]) == (0.25, 0.5, 0.5)


def test_looped_pcm_is_exactly_the_asked_length():
    clips = [np.ones(16_000, np.int16), np.full(8_000, 2, np.int16)]
    pcm = np.concatenate(list(bench.looped_pcm(clips, 5.0)))
    assert len(pcm) == 5 * 16_000
    gap = int(bench.GAP_S * 16_000)
    assert pcm[16_000:16_000 + gap].max() == 0 and pcm[16_000 + gap] == 2


def test_parse_bus_and_targets():
    bus = bench.parse_bus(BUS)
    assert bus["rows"]["patchwire runner (realtime)"] == (0.42, 1.9, 12_500.0)
    assert (bus["hop_p50"], bus["hop_p99"]) == (0.31, 1.6)
    assert [line.rsplit(" ", 1)[-1] for line in bench.bus_targets(bus)] == ["PASS", "PASS", "PASS"]
    slow = bench.parse_bus(BUS.replace("12,500", "9,999").replace("p50 0.310", "p50 1.200"))
    assert [line.rsplit(" ", 1)[-1] for line in bench.bus_targets(slow)] == ["FAIL", "PASS", "FAIL"]
    with pytest.raises(ValueError):
        bench.parse_bus("Traceback (most recent call last): ...")


def test_parse_status_and_ready_line():
    assert memory.parse_status(STATUS) == {"VmPeak": 812344, "VmSize": 790000, "VmHWM": 307456,
                                           "VmRSS": 250000}
    line = "patchwire: transcribe up on nats://127.0.0.1:41234 (embedded nats-server); 3 operators\n"
    assert memory.parse_up_url(line) == "nats://127.0.0.1:41234"
    assert memory.parse_up_url("operator asr (asr) serving speech") is None


def test_peak_ratio_and_table():
    rows = [{"phase": "transcribing short", "seconds": 1.0, "up rss": 300.0, "error": ""},
            {"phase": "transcribing long", "seconds": 9.0, "up rss": 450.0, "error": "rc 1: boom"}]
    assert memory.peak_ratio(rows, "short", "long") == 1.5
    assert memory.peak_ratio(rows, "short", "long", "nats-server rss") is None
    lines = memory.table(rows)
    assert lines[2] == "| transcribing short | 1.0 | 300.0 | – | – | – |"
    assert "**error**: rc 1: boom" in lines[3]


def test_sampler_reads_this_process_and_finds_a_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while child.pid not in memory.children(memory.os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.pid in memory.children(memory.os.getpid())
    finally:
        child.kill()
        child.wait()
    sampler = memory.Sampler(memory.os.getpid())
    sampler.enter("now")
    peaks = sampler.peaks["now"]
    assert peaks["up rss"] > 1000 and peaks["up hwm"] >= peaks["up rss"]


def test_failure_line_names_the_measurement():
    stderr = """Traceback (most recent call last):
  File "loadtests/bus_overhead.py", line 152, in one_round
    rows.append(await measure(nc, "raw nats-py echo", f"{NS}.r.in._", f"{NS}.r.out._", args))
  File "asyncio/tasks.py", line 502, in wait_for
    raise exceptions.TimeoutError() from exc
TimeoutError
"""
    assert bench._failure_line(stderr) == ('rows.append(await measure(nc, "raw nats-py echo", '
                                           'f"{NS}.r.in._", f"{NS}.r.out._", args)) / TimeoutError')
