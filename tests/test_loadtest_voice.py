"""loadtests/voice.py's arithmetic: percentiles, gaps and stalls in received audio, the stages
of one question, a barge-in trial, tokens after a cancel, the RSS slope and the RESULTS.md
sub-blocks. Made-up timestamps; no models, no servers, no sleeping."""
from __future__ import annotations

import math

import numpy as np

from loadtests import voice as bench


def test_percentile_interpolates_between_ranks():
    assert bench.percentile([3, 1, 2], 0.5) == 2
    assert bench.percentile([0, 10], 0.95) == 9.5
    assert bench.percentile([7], 0.95) == 7
    assert math.isnan(bench.percentile([], 0.5))
    assert bench.p50_p95([]) == "n/a"
    assert bench.p50_p95([100, 200, 300]) == "200 / 290"


def test_gaps_count_frames_late_from_the_window_start():
    times = [0.0, 0.02, 0.04, 0.14, 0.16, 0.30]          # 100 ms late, then 140 ms late
    assert bench.count_gaps(times, 0.0, 1.0) == 2
    assert bench.count_gaps(times, 0.15, 0.2) == 0          # 0.15 -> 0.16 is on time
    assert bench.count_gaps(times, 0.0, 0.05) == 0
    assert bench.count_gaps([0.5], 0.0, 1.0) == 1           # nothing for the first 500 ms


def test_voiced_frames_and_stalls():
    frames = [(0.00, 500.0), (0.02, 20.0), (0.04, 600.0), (0.70, 400.0), (0.72, 50.0)]
    assert bench.voiced(frames, 0.0) == [0.0, 0.04, 0.70]
    assert bench.voiced(frames, 0.01, 0.70) == [0.04]
    assert bench.count_stalls([0.0, 0.04, 0.70]) == 1       # 660 ms of silence mid-reply
    assert bench.count_stalls([0.0, 0.3, 0.6]) == 0


def test_trim_keeps_the_voiced_part():
    quiet, loud = np.zeros(1600, np.int16), np.full(800, 3000, np.int16)
    pcm = np.concatenate([quiet, loud, quiet]).tobytes()
    assert bench.trim(pcm) == loud.tobytes()
    assert bench.trim(quiet.tobytes()) == b""


def test_a_question_splits_into_stages_that_add_up():
    events = [(10.30, {"kind": "UserTurn", "turn": 2, "text": "What time is it?",
                       "speech_end_unix": 10.05, "decided_unix": 10.25, "asr_ms": 90.0}),
              (10.32, {"kind": "ToolActivity", "turn": 2, "name": "current_time",
                       "state": "finished"}),
              (10.50, {"kind": "AgentSentence", "turn": 2, "index": 0, "text": "It is noon."}),
              (10.80, {"kind": "Latency", "turn": 2, "time_to_first_audio_ms": 700.0}),
              (11.00, {"kind": "AgentTurnDone", "turn": 2, "timings": {"tool_ms": 3.0}}),
              (12.00, {"kind": "UserTurn", "turn": 3, "speech_end_unix": 1.0})]
    frames = [(9.99, 900.0), (10.70, 10.0), (10.80, 300.0)]
    row = bench.turn_row(events, frames, 2, ended=10.0)
    assert row["tools"] == ["current_time"] and row["tool_ms"] == 3.0
    assert round(row["ttfa_ms"]) == 800 and row["gateway_ms"] == 700.0
    stages = [row[k] for k, _ in bench.STAGES]
    assert [round(s) for s in stages] == [50, 200, 50, 200, 300]
    assert math.isclose(sum(stages), row["ttfa_ms"])
    assert bench.turn_row(events, [], 2, ended=10.0)["ttfa_ms"] is None   # nothing heard


def test_a_barge_in_stops_at_the_last_voiced_frame_before_the_next_reply():
    events = [(5.09, {"kind": "SpeechStarted", "turn": 2, "during_playback": True}),
              (5.10, {"kind": "Playback", "turn": 1, "state": "paused"}),
              (5.40, {"kind": "Interrupt", "turn": 2}),
              (5.41, {"kind": "Playback", "turn": 1, "state": "flushed"}),
              (5.42, {"kind": "BargeIn", "turn": 1, "onset_to_stop_ms": 120.0}),
              (8.00, {"kind": "Playback", "turn": 2, "state": "started"})]
    frames = [(4.98, 800.0), (5.06, 700.0), (5.12, 900.0), (5.14, 10.0), (8.00, 900.0)]
    row = bench.barge_row(events, frames, 1, onset=5.0)
    assert round(row["silence_ms"]) == 120 and row["gateway_ms"] == 120.0
    assert round(row["paused_ms"]) == 100 and round(row["interrupt_ms"]) == 400
    assert round(row["quiet_ms"]) == 20                     # the story sounded 20 ms before
    assert row["flushed"] and not row["resumed"] and not row["finished"]
    assert row["over_reply"] is True
    assert bench.barge_row(events, frames[:1], 1, onset=5.0)["silence_ms"] == 0   # already quiet


def test_reply_windows_end_at_finished_or_flushed():
    events = [(1.0, {"kind": "Playback", "turn": 1, "state": "started"}),
              (3.0, {"kind": "Playback", "turn": 1, "state": "finished"}),
              (4.0, {"kind": "Playback", "turn": 2, "state": "started"}),
              (4.5, {"kind": "Playback", "turn": 2, "state": "paused"})]
    assert bench.reply_windows(events, until=9.0) == [(1.0, 3.0), (4.0, 9.0)]


def test_tokens_after_a_cancel_come_from_the_generation_it_caught():
    gens = [{"started": 0.0, "ended": 1.0, "stopped": False, "after_stop": 0, "times": [0.5]},
            {"started": 2.0, "ended": 3.02, "stopped": True, "after_stop": 1,
             "times": [2.5, 2.9, 3.01]}]
    cancels = [(3.0, "vA"), (9.0, "vB")]
    row = bench.cancel_tokens({"session_id": "vA"}, cancels, gens)
    assert (row["cancel"], row["after_stop"], row["after_cancel"]) == ("stopped", 1, 1)
    assert round(row["cancel_to_stop_ms"]) == 20
    assert bench.cancel_tokens({"session_id": "vB"}, cancels, gens)["cancel"] == "idle"
    assert bench.cancel_tokens({"session_id": "vC"}, cancels, gens)["cancel"] == "no Cancel"


def test_slope_per_hour():
    assert math.isclose(bench.slope_per_hour([(0, 100.0), (1800, 110.0), (3600, 120.0)]), 20.0)
    assert math.isnan(bench.slope_per_hour([(0, 1.0)]))


def test_realtime_needs_no_drops_few_gaps_and_a_short_backlog():
    ok = {"dropped": 0, "gaps_per_min": 0.5, "listen_backlog_ms": 100}
    assert bench.realtime_ok(ok)
    assert not bench.realtime_ok(ok | {"dropped": 1})
    assert not bench.realtime_ok(ok | {"gaps_per_min": 2.0})
    assert not bench.realtime_ok(ok | {"listen_backlog_ms": 500})


def test_each_part_rewrites_only_its_own_sub_block(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Load test results\n\n<!-- begin other -->\nkept\n<!-- end other -->\n")
    bench.write_part(out, "ttfa", "TTFA one")
    bench.write_part(out, "barge", "barge one")
    bench.write_part(out, "ttfa", "TTFA two")
    text = out.read_text()
    assert bench.block_body(text, "other") == "kept"
    assert bench.block_body(text, "voice-ttfa") == "TTFA two"
    assert bench.block_body(text, "voice-barge") == "barge one"
    assert bench.block_body(text, "voice-soak") == "_not run yet_"
    voice = bench.block_body(text, "voice")
    assert voice.index("voice-ttfa") < voice.index("voice-barge") < voice.index("voice-soak")
    assert text.count("<!-- begin voice-ttfa -->") == 1


class FakeEngine:
    """The two methods GenerationLog wraps, shaped as LlamaEngine's: _run calls _decode."""

    def __init__(self):
        self.last_tokens_after_stop, self.last_usage = 0, None

    def _run(self, prompt, stop, emit, started):
        from schemas import Usage
        n = self._decode(iter(range(5)), 5, stop, None, emit)
        self.last_usage = Usage(prompt_tokens=40, cached_tokens=30, completion_tokens=n)

    def _decode(self, gen, limit, stop, text, emit):
        n = 0
        for _ in gen:
            n += 1
            if n == 3:
                stop.set()                  # the consumer stops mid-way
                self.last_tokens_after_stop = 1
                return n
        return n


def test_the_generation_log_records_each_generation_and_unwraps():
    import threading
    from types import SimpleNamespace
    engine = FakeEngine()
    log = bench.GenerationLog(engine)
    engine._run(SimpleNamespace(json_schema={"type": "object"}), threading.Event(), None, 0.0)
    [rec] = log.records
    assert (rec["kind"], rec["stopped"], rec["after_stop"], len(rec["times"])) == (
        "tool choice", True, 1, 3)
    assert (rec["prompt"], rec["cached"], rec["tokens"]) == (40, 30, 3)
    assert "tool choice (1 generations" in log.summary()[0]
    log.close()
    assert engine._run.__func__ is FakeEngine._run and engine._decode.__func__ is FakeEngine._decode


def test_cpu_share_is_percent_of_one_core():
    assert bench.cpu_share([{"t": 0.0, "cpu": 1.0}, {"t": 5.0, "cpu": 2.0}, {"t": 10.0, "cpu": 6.0}]) == 50.0
    assert math.isnan(bench.cpu_share([{"t": 0.0, "cpu": 1.0}]))
    assert bench.cpu_seconds(-1) == 0.0
