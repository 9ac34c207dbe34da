"""Voice agent load figures: time to first audio, barge-in, concurrent callers, admission, a
soak -> the `voice` block of loadtests/RESULTS.md (one sub-block per part).

    python loadtests/voice.py [--parts ttfa,barge,load,admission] [--sessions 1,2,4,8]
        [--step-s 60] [--soak-minutes 0] [--max-sessions 16] [--wait-load 1.5] [--out PATH]

topology/voice_agent.yaml runs in this process as `patchwire up` would run it (its own
nats-server; the agent's notebook and store in a temp dir; `agent.remember=false`, so no
memory is written at hang-up) behind the WebRTC gateway on loopback ICE. The callers are
topology/voice_client.py VoiceCallers in a child process (as a browser is another process;
it shares the 2 cores all the same). Questions are spoken by piper (en_US-joe-medium) and
trimmed to their voiced part, so "speech ended" is the end of the last word. Every time is
wall clock on this one machine: the callers' and the gateway's agree.

  ttfa       12 questions (6 need a tool) over 3 sessions, one at a time, after one
             uncounted warm-up. Time to first audio at the client: first received
             non-silent frame - the time the caller sent its last voiced frame; split into
             stages by the data-channel events (see the table's header).
  barge      8 trials, a fresh session each: ask for a long story, say "Stop, wait."
             1-2 s into its audio. Onset -> silence at the client (the story's last non-silent
             frame received - the time the first voiced frame of "Stop, wait." was sent), the
             gateway's BargeIn, and LLM tokens decoded after the cancel: the engine's own
             count (last_tokens_after_stop) and tokens time-stamped after the Cancel reached
             this process (the engine's _decode is wrapped here to record both).
  load       N callers at once for --step-s per N, each asking a question, hearing the whole
             reply, asking again. Underruns: gaps > 60 ms between received frames while a
             reply plays; stalls: silence >= 0.5 s inside a reply; frames dropped: the
             runners' realtime drop counters; listen lag: UserTurn.speech_end_unix - the
             caller's speech end, and listen's deepest queue (frames x 20 ms).
  admission  100 offers posted at once; past PATCHWIRE_VOICE_MAX_SESSIONS they must get 503.
  soak       one caller, a question every 20 s for --soak-minutes, this process's VmRSS
             every 10 s.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 16_000
SILENT_RMS = 100.0               # as topology/voice_client.py: below this a frame is silence
GAP_S = 0.060                    # an underrun: frames this far apart while a reply plays
STALL_S = 0.5                    # a stall: this much silence between a reply's voiced frames
TTFA_TARGET_MS = 1000.0          # P50
BARGE_TARGET_MS = 200.0          # P95
MODEL_STEP_MS = 50.0             # a tool choice this long was the model's (routing takes < 5 ms)
PARTS = ("ttfa", "barge", "load", "admission", "soak")
SESSIONS = [
    ["What time is it?", "Tell me a fun fact about owls.", "What's on my calendar tomorrow?",
     "How are you today?"],
    ["What's today's date?", "Can you recommend a good book?",
     "Add lunch with Maria on Friday at noon.", "Tell me a joke about computers."],
    ["Take a note: buy milk and eggs.", "What is the capital of France?", "Read me my notes.",
     "What should I cook for dinner tonight?"],
]
WARM_UP = "Hello there."
STORY, STOP = "Tell me a long story about a dragon and a knight.", "Stop, wait."
LOOP = ["Tell me a fun fact about owls.", "Tell me a joke about computers.",
        "What should I cook for dinner tonight?"]


# ---- pure helpers ---------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def p50_p95(values: list[float]) -> str:
    return f"{percentile(values, .5):.0f} / {percentile(values, .95):.0f}" if values else "n/a"


def trim(pcm: bytes, window: int = 160, rms: float = SILENT_RMS) -> bytes:
    """s16 audio cut to its first and last window (10 ms at 16 kHz) at or over `rms`."""
    import numpy as np
    x = np.frombuffer(pcm, np.int16)[: len(pcm) // 2 // window * window].astype(np.float64)
    loud = np.flatnonzero(np.sqrt((x.reshape(-1, window) ** 2).mean(axis=1)) >= rms)
    if not len(loud):
        return b""
    return x[loud[0] * window:(loud[-1] + 1) * window].astype(np.int16).tobytes()


def voiced(frames: list[tuple[float, float]], start: float, end: float = float("inf")) -> list[float]:
    """Arrival times of the non-silent frames among (arrival, rms) in [start, end)."""
    return [at for at, rms in frames if start <= at < end and rms >= SILENT_RMS]


def count_gaps(times: list[float], start: float, end: float, gap_s: float = GAP_S) -> int:
    """Arrivals in [start, end] more than `gap_s` after the one before (from `start`)."""
    inside = [t for t in times if start <= t <= end]
    return sum(b - a > gap_s for a, b in zip([start] + inside, inside))


def count_stalls(voiced_times: list[float], stall_s: float = STALL_S) -> int:
    return sum(b - a >= stall_s for a, b in zip(voiced_times, voiced_times[1:]))


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per hour."""
    if len(samples) < 2:
        return float("nan")
    mt = statistics.fmean(t for t, _ in samples)
    mv = statistics.fmean(v for _, v in samples)
    den = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (v - mv) for t, v in samples) / den * 3600 if den else float("nan")


def first_event(events: list, kind: str, where=lambda e: True) -> tuple[float | None, dict]:
    return next(((t, e) for t, e in events if e.get("kind") == kind and where(e)), (None, {}))


def turn_row(events: list, frames: list, turn: int, ended: float) -> dict:
    """One question's time to first audio and its stages (ms), from the caller's records:
    events [(arrival, dict)], frames [(arrival, rms)], `ended` = its speech end."""
    mine = [(t, e) for t, e in events if e.get("turn") == turn]
    t_turn, user = first_event(mine, "UserTurn")
    t_said, _ = first_event(mine, "AgentSentence", lambda e: e.get("index") == 0)
    _, done = first_event(mine, "AgentTurnDone")
    _, latency = first_event(mine, "Latency")
    heard = voiced(frames, ended)
    row = {"text": user.get("text", ""), "asr_ms": user.get("asr_ms"),
           "tools": [e["name"] for _, e in mine if e.get("kind") == "ToolActivity"
                     and e.get("state") == "finished"],
           "gateway_ms": latency.get("time_to_first_audio_ms"), **done.get("timings", {})}
    if not (heard and t_turn and t_said and user.get("decided_unix")):
        return row | {"ttfa_ms": None}
    end, decided = user["speech_end_unix"], user["decided_unix"]
    stages = {"ttfa_ms": heard[0] - ended, "in_ms": end - ended, "eot_ms": decided - end,
              "to_agent_ms": t_turn - decided, "agent_ms": t_said - t_turn,
              "tts_ms": heard[0] - t_said}
    return row | {k: v * 1000 for k, v in stages.items()}


def barge_row(events: list, frames: list, turn: int, onset: float) -> dict:
    """One barge-in trial: when the story's audio stopped at the caller, and the events."""
    t_next, _ = first_event(events, "Playback", lambda e: e["turn"] > turn and e["state"] == "started")
    heard = voiced(frames, onset, (t_next or float("inf")) - 0.1)
    state = lambda s: first_event(events, "Playback", lambda e: e["turn"] == turn and e["state"] == s)[0]
    t_paused, t_int = state("paused"), first_event(events, "Interrupt")[0]
    _, barge = first_event(events, "BargeIn", lambda e: e["turn"] == turn)
    _, heard_over = first_event(events, "SpeechStarted", lambda e: e["turn"] > turn)
    ms = lambda t: None if t is None else (t - onset) * 1000
    before = voiced(frames, onset - 5.0, onset)
    return {"silence_ms": ms(heard[-1] if heard else onset), "gateway_ms": barge.get("onset_to_stop_ms"),
            "quiet_ms": (onset - before[-1]) * 1000 if before else None,
            "paused_ms": ms(t_paused), "interrupt_ms": ms(t_int),
            "over_reply": heard_over.get("during_playback"),
            "flushed": state("flushed") is not None, "resumed": state("resumed") is not None,
            "finished": state("finished") is not None}


def reply_windows(events: list, until: float) -> list[tuple[float, float]]:
    """(started, finished or flushed) arrival times of each reply's playback."""
    starts = {e["turn"]: t for t, e in events if e.get("kind") == "Playback" and e["state"] == "started"}
    out = []
    for turn, start in sorted(starts.items()):
        end, _ = first_event(events, "Playback", lambda e: e["turn"] == turn
                             and e["state"] in ("finished", "flushed"))
        out.append((start, end or until))
    return out


def tokens_after(times: list[float], cancel_at: float) -> int:
    return sum(t > cancel_at for t in times)


def realtime_ok(step: dict) -> bool:
    """Audio kept up: no frame dropped, under 1 gap per minute of reply per session, listen
    never 0.5 s behind."""
    return (step["dropped"] == 0 and step["gaps_per_min"] <= 1.0
            and step["listen_backlog_ms"] < 500)


def block_body(text: str, name: str) -> str | None:
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def write_part(path: Path, part: str, body: str) -> None:
    """The `voice` block holds one sub-block per part: a run rewrites only its parts'."""
    from loadtests.results import replace_block
    text = path.read_text() if path.exists() else ""
    if block_body(text, "voice") is None or any(f"<!-- begin voice-{p} -->" not in text for p in PARTS):
        subs = [f"<!-- begin voice-{p} -->\n{block_body(text, f'voice-{p}') or '_not run yet_'}\n"
                f"<!-- end voice-{p} -->" for p in PARTS]
        replace_block(path, "voice", "\n\n".join([
            "## Voice agent (topology/voice_agent.yaml behind the WebRTC gateway)",
            "loadtests/voice.py; each part below says the command that wrote it.", *subs]))
    replace_block(path, f"voice-{part}", body)


# ---- the callers (a child process) ------------------------------------------------------------

async def clips(texts: list[str], cache: Path) -> dict[str, bytes]:
    from operators.voice.synthesize import SynthesizeConfig
    from operators.voice.tts.piper import PiperEngine
    cache.mkdir(parents=True, exist_ok=True)
    out, engine = {}, None
    try:
        for text in texts:
            path = cache / (hashlib.sha1(text.encode()).hexdigest()[:16] + ".pcm")
            if not path.exists():
                if engine is None:
                    engine = PiperEngine(SynthesizeConfig(sample_rate=RATE, noise_scale=0.0, noise_w=0.0))
                    await engine.start()
                path.write_bytes(trim(b"".join([p async for p in engine.speak(text)])))
            out[text] = path.read_bytes()
    finally:
        if engine is not None:
            await engine.close()
    return out


# The scripted caller's receive buffer, in 20 ms frames: a browser's adaptive buffer on a clean
# loopback holds about one; aiortc's default (4 frames) would add 60 ms to every client figure.
CALLER_BUFFER_FRAMES = 1


def uplink_frames() -> int:
    from topology.gateway.voice_config import VoiceConfig
    return VoiceConfig().uplink_buffer_frames


def caller(url: str, user: str):
    from topology.voice_client import VoiceCaller
    return VoiceCaller(url, user=user, loopback=True, receive_buffer_frames=CALLER_BUFFER_FRAMES)


def frames_of(call) -> list[tuple[float, float]]:
    return [(r.at, r.rms) for r in call.received_audio]


async def ask(call, pcm: bytes, timeout: float) -> dict:
    """Say one question and hear the whole reply; the row of turn_row (plus `played`)."""
    known = {e["turn"] for e in call.kinds("UserTurn")}
    await call.say(pcm)
    ended = call.speech_ended_at
    turn = (await call.wait_for("UserTurn", lambda e: e["turn"] not in known, timeout))["turn"]
    played = True
    try:
        await call.wait_for_reply(turn=turn, timeout=timeout)
    except TimeoutError:
        played = False
    return turn_row(call.events, frames_of(call), turn, ended) | {"turn": turn, "played": played,
                                                                   "ended": ended}


async def ttfa_calls(url: str, pcm: dict[str, bytes]) -> dict:
    async with caller(url, "warm") as call:
        await ask(call, pcm[WARM_UP], 120)
    rows = []
    for i, questions in enumerate(SESSIONS):
        async with caller(url, f"ttfa{i}") as call:
            for q in questions:
                try:
                    rows.append(await ask(call, pcm[q], 120) | {"q": q, "session": i})
                except TimeoutError as exc:
                    rows.append({"q": q, "session": i, "ttfa_ms": None, "error": str(exc)})
                _progress(rows[-1])
    return {"rows": rows}


async def barge_trial(url: str, pcm: dict[str, bytes], after_s: float) -> dict:
    async with caller(url, "barge") as call:
        await call.say(pcm[STORY])
        turn = (await call.wait_for("UserTurn", timeout=60))["turn"]
        await call.wait_for("Playback", lambda e: e["turn"] == turn and e["state"] == "started", 120)
        until = time.time() + 10
        while call.first_audio_at is None:
            if time.time() > until:
                raise TimeoutError("the story's audio never sounded")
            await asyncio.sleep(0.005)
        await asyncio.sleep(max(0.0, call.first_audio_at + after_s - time.time()))
        mark = call.mic.at(call.mic.queued + 1)          # the first sample of "Stop, wait."
        await call.say(pcm[STOP], silence_before=0.0)
        onset = mark.result()
        with contextlib.suppress(TimeoutError):
            await call.wait_for("BargeIn", timeout=20)
        with contextlib.suppress(TimeoutError):            # let the answer to "stop" play out
            nxt = await call.wait_for("UserTurn", lambda e: e["turn"] > turn, 30)
            await call.wait_for_reply(turn=nxt["turn"], timeout=90)
        return barge_row(call.events, frames_of(call), turn, onset) | {
            "after_s": after_s, "onset": onset, "session_id": call.session_id}


async def barge_calls(url: str, pcm: dict[str, bytes], trials: int) -> dict:
    rows = []
    for i in range(trials):
        after = 1.0 + i / max(1, trials - 1)                # 1.0 ... 2.0 s into the story
        try:
            rows.append(await barge_trial(url, pcm, round(after, 2)))
        except TimeoutError as exc:
            rows.append({"after_s": after, "silence_ms": None, "error": str(exc)})
        _progress(rows[-1])
    return {"rows": rows}


async def load_caller(url: str, i: int, pcm: list[bytes], seconds: float) -> dict:
    await asyncio.sleep(0.5 * i)                              # ICE and DTLS one after another
    async with caller(url, f"load{i}") as call:
        deadline, rows, failed = time.time() + seconds, [], 0
        while time.time() < deadline:
            try:
                rows.append(await ask(call, pcm[len(rows) % len(pcm)], deadline - time.time() + 45))
            except TimeoutError:
                failed += 1
        frames, events = frames_of(call), list(call.events)
        windows = reply_windows(events, frames[-1][0] if frames else time.time())
        arrivals = [at for at, _ in frames]
        return {"session_id": call.session_id, "rows": rows, "failed": failed,
                "gaps": sum(count_gaps(arrivals, a, b) for a, b in windows),
                "stalls": sum(count_stalls(voiced(frames, a, b + 1e-6)) for a, b in windows),
                "reply_s": sum(b - a for a, b in windows)}


async def load_calls(url: str, pcm: dict[str, bytes], n: int, seconds: float) -> dict:
    lags: list[float] = []
    watch = asyncio.create_task(_loop_lag(lags, 0.05))
    try:
        found = await asyncio.gather(*(load_caller(url, i, [pcm[q] for q in LOOP], seconds)
                                       for i in range(n)), return_exceptions=True)
    finally:
        watch.cancel()
    sessions = [s for s in found if isinstance(s, dict)]
    errors = [repr(s) for s in found if not isinstance(s, dict)]
    return {"sessions": sessions, "errors": errors, "caller_lag_p99_ms": percentile(lags, .99) * 1000}


async def admission_calls(url: str, n: int) -> dict:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection
    from topology.gateway.voice_config import allow_loopback
    from topology.voice_client import Microphone
    allow_loopback()
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(n)]

    async def offer(pc) -> str:
        pc.addTrack(Microphone())
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    sdps = await asyncio.gather(*(offer(pc) for pc in pcs))     # ready first: then all at once
    async with aiohttp.ClientSession() as http:
        async def post(sdp: str) -> tuple[int, str, dict]:
            async with http.post(f"{url}/v1/voice/offer", json={"sdp": sdp, "type": "offer"}) as r:
                return r.status, r.headers.get("Retry-After", ""), await r.json(content_type=None)
        answers = await asyncio.gather(*(post(s) for s in sdps))
        ids = [body["session_id"] for status, _, body in answers if status == 200]
        hung = []
        for i in ids:
            async with http.delete(f"{url}/v1/voice/{i}") as r:
                hung.append(r.status)
    await asyncio.gather(*(pc.close() for pc in pcs))
    refused = [(retry, body.get("error", {})) for status, retry, body in answers if status == 503]
    return {"n": n, "statuses": dict(collections.Counter(s for s, _, _ in answers)),
            "admitted": len(ids), "hung_up": hung.count(200),
            "refused": len(refused), "retry_after": refused[0][0] if refused else "",
            "error": refused[0][1] if refused else {}}


async def soak_calls(url: str, pcm: dict[str, bytes], minutes: float, every_s: float) -> dict:
    questions = [q for s in SESSIONS for q in s]
    rows, end = [], time.time() + minutes * 60
    async with caller(url, "soak") as call:
        while time.time() < end:
            started = time.time()
            call.received_audio.clear()                      # 50 frames a second add up
            try:
                rows.append(await ask(call, pcm[questions[len(rows) % len(questions)]], 120))
            except TimeoutError as exc:
                rows.append({"ttfa_ms": None, "error": str(exc)})
            rows[-1]["at"] = started
            await asyncio.sleep(max(0.0, started + every_s - time.time()))
    return {"rows": rows}


async def _loop_lag(lags: list[float], period: float) -> None:
    while True:
        t = time.monotonic()
        await asyncio.sleep(period)
        lags.append(time.monotonic() - t - period)


def _progress(row: dict) -> None:
    print("  " + json.dumps({k: round(v) if isinstance(v, float) else v for k, v in row.items()
                             if k in ("q", "text", "ttfa_ms", "silence_ms", "gateway_ms",
                                      "after_s", "error")}), file=sys.stderr, flush=True)


async def callers_main(plan: dict) -> dict:
    texts = [WARM_UP, STORY, STOP, *LOOP] + [q for s in SESSIONS for q in s]
    pcm = await clips(texts, Path(plan["cache"]))
    url, part = plan["url"], plan["part"]
    if part == "ttfa":
        return await ttfa_calls(url, pcm)
    if part == "barge":
        return await barge_calls(url, pcm, plan["trials"])
    if part == "load":
        return await load_calls(url, pcm, plan["n"], plan["seconds"])
    if part == "admission":
        return await admission_calls(url, plan["n"])
    return await soak_calls(url, pcm, plan["minutes"], plan["every_s"])


# ---- the server (this process) --------------------------------------------------------------

class SessionStats(logging.Handler):
    """The gateway logs each session's counters when it ends; keep them by session id."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_id: dict[str, dict] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("voice session %s ends") and isinstance(record.args[2], dict):
            self.by_id[record.args[0]] = record.args[2]


class Server:
    """The voice topology and its gateway, and what the figures read from them."""

    def __init__(self, max_sessions: int) -> None:
        os.environ["PATCHWIRE_VOICE_LOOPBACK"] = "1"
        os.environ["PATCHWIRE_VOICE_MAX_SESSIONS"] = str(max_sessions)
        self.tmp = Path(tempfile.mkdtemp(prefix="pw-voice-load-"))
        self.stats = SessionStats()
        log = logging.getLogger("topology.gateway.voice_session")
        log.setLevel(logging.INFO)
        log.addHandler(self.stats)

    async def __aenter__(self) -> "Server":
        from topology import spec as topo_spec
        from topology.app import Deployment
        from topology.gateway.start import start_gateway
        topo = topo_spec.override(topo_spec.load(ROOT / "topology/voice_agent.yaml"), [
            f"agent.notebook={self.tmp / 'voice.sqlite'}", f"agent.store={self.tmp / 'store.sqlite'}",
            "agent.remember=false"])
        self.dep = await Deployment.open(topo, None, "pwvoice", store_dir=self.tmp / "nats")
        await self.dep.start_operators()
        self.gateway = await start_gateway(self.dep, topo, 0)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.gateway.close()
        await self.dep.close()

    def runner(self, name: str):
        return next(r for r in self.dep.runners if r.spec.name == name)

    def dropped(self) -> dict[str, int]:
        return {r.spec.name: r.realtime.dropped for r in self.dep.runners if r.realtime}

    def listen_backlog(self) -> int:
        queue = self.runner("listen").realtime
        return max((q.queue.qsize() for q in getattr(queue, "shards", [queue])), default=0)

    def saved_kv_mib(self) -> float:
        """The LLM engine's saved KV states (its prefix cache, up to 512 MiB by design)."""
        engine = self.llama()
        for _ in range(3):             # the engine's worker thread may be changing it
            with contextlib.suppress(RuntimeError):
                states = engine.prefixes.states if engine is not None else {}
                return sum(map(len, list(states.values()))) / (1 << 20)
        return float("nan")

    def llama(self):
        from operators.generate.llama import LlamaEngine
        handle = self.runner("agent").op.engine
        engine = getattr(handle, "_engine", handle)       # SharedLlm wraps the engine
        return engine if isinstance(engine, LlamaEngine) else None

    async def callers(self, plan: dict, timeout: float) -> dict:
        plan = {"url": self.gateway.url, "cache": str(self.tmp / "clips")} | plan
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--callers",
                                                    json.dumps(plan), stdout=asyncio.subprocess.PIPE)
        self.caller_pid = proc.pid
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"the callers ({plan['part']}) exited {proc.returncode}")
        return json.loads(out.decode().strip().splitlines()[-1])


class GenerationLog:
    """Wraps the engine's `_run` and `_decode` (one generation, on its worker thread) to record
    each: when, tool choice or reply, its Usage (prompt and cached tokens, time to the first
    token, decode rate), whether it was stopped, the engine's own count of tokens decoded
    after the stop, and each token's wall time."""

    def __init__(self, engine) -> None:
        self.engine, self.records = engine, []
        run, decode = engine._run, engine._decode

        def timed_run(prompt, stop, emit, started):
            count = len(self.records)
            try:
                return run(prompt, stop, emit, started)
            finally:
                usage = engine.last_usage
                if len(self.records) > count and usage is not None:
                    self.records[-1] |= {"kind": "tool choice" if prompt.json_schema else "reply",
                                         "prompt": usage.prompt_tokens, "cached": usage.cached_tokens,
                                         "tokens": usage.completion_tokens, "ttft_s": usage.ttft_s,
                                         "rate": usage.tokens_per_s}

        def timed_decode(gen, limit, stop, text, emit):
            times, started = [], time.time()

            def timed():
                for token in gen:
                    times.append(time.time())
                    yield token
            try:
                return decode(timed(), limit, stop, text, emit)
            finally:
                self.records.append({"started": started, "ended": time.time(), "stopped": stop.is_set(),
                                     "after_stop": engine.last_tokens_after_stop, "times": times})
        engine._run, engine._decode = timed_run, timed_decode

    def close(self) -> None:
        del self.engine._run, self.engine._decode

    def summary(self) -> list[str]:
        """Per kind of generation, the medians of its Usage."""
        lines = []
        for kind in ("tool choice", "reply"):
            mine = [r for r in self.records if r.get("kind") == kind]
            if mine:
                med = lambda k: statistics.median(r[k] for r in mine)
                lines.append(f"- LLM {kind} ({len(mine)} generations, the warm-up's included; "
                             f"medians): prompt "
                             f"{med('prompt'):.0f} tokens of which {med('cached'):.0f} cached, "
                             f"first token after {med('ttft_s'):.2f} s (waiting for the engine, "
                             f"then the prompt's evaluation), {med('tokens'):.0f} tokens at "
                             f"{med('rate'):.1f} tokens/s")
        return lines


class Sampler:
    """Every `period` s: VmRSS of this process, its nats-server, its other children (the piper
    process) and the callers; CPU seconds of this process and of piper; listen's deepest
    queue; how late this event loop woke (its lag); the 1-minute load average."""

    def __init__(self, server: Server, period: float) -> None:
        self.server, self.period, self.samples = server, period, []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(self.period)
            self.samples.append(self.sample(time.monotonic() - t - self.period))

    def sample(self, lag: float) -> dict:
        from loadtests.memory import _cmdline, children, read_status
        mib = lambda pid: read_status(pid).get("VmRSS", 0) / 1024 if pid else 0.0
        callers = getattr(self.server, "caller_pid", None)
        kids = [c for c in children(os.getpid()) if c != callers]
        nats = [c for c in kids if "nats-server" in _cmdline(c)]
        others = [c for c in kids if c not in nats]
        own = os.times()
        return {"t": time.time(), "lag": lag, "rss": mib(os.getpid()),
                "nats": sum(map(mib, nats)), "piper": sum(map(mib, others)), "callers": mib(callers),
                "cpu": own.user + own.system, "piper_cpu": sum(map(cpu_seconds, others)),
                "backlog": self.server.listen_backlog(), "kv": self.server.saved_kv_mib(),
                "load": os.getloadavg()[0]}

    def stop(self) -> list[dict]:
        self.task.cancel()
        return self.samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(samples: list[dict], key: str = "cpu") -> float:
    """CPU used over the samples' span, in % of one core."""
    if len(samples) < 2 or samples[-1]["t"] <= samples[0]["t"]:
        return float("nan")
    return (samples[-1][key] - samples[0][key]) / (samples[-1]["t"] - samples[0]["t"]) * 100


def load_line(samples: list[dict], start: float) -> str:
    peak = max((s["load"] for s in samples), default=start)
    return (f"Load average (1 min): {start:.2f} at the start, {peak:.2f} at most while it ran, "
            f"{os.getloadavg()[0]:.2f} at the end.")


async def wait_for_load(limit: float, patience_s: float = 900) -> None:
    waited = 0.0
    while limit and os.getloadavg()[0] >= limit and waited < patience_s:
        if waited == 0:
            print(f"waiting for the 1-minute load average {os.getloadavg()[0]:.2f} < {limit}",
                  file=sys.stderr, flush=True)
        await asyncio.sleep(15)
        waited += 15


def header(title: str, command: str, samples: list[dict], load0: float) -> list[str]:
    return [f"### {title}", "", f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}  ",
            f"Command: `{command}`  ", "Machine: 2 CPU cores, shared. " + load_line(samples, load0),
            f"Receive buffers: the gateway's uplink {uplink_frames()} frame, the "
            f"scripted caller's {CALLER_BUFFER_FRAMES} frame (aiortc's default is 4 = 80 ms).", ""]


# ---- the parts -----------------------------------------------------------------------------

STAGES = [("in_ms", "in"), ("eot_ms", "end-of-turn wait"), ("to_agent_ms", "ASR left + hop"),
          ("agent_ms", "agent → 1st sentence"), ("tts_ms", "TTS + transport")]


async def part_ttfa(server: Server, args, command: str) -> str:
    engine = server.llama()
    gens = GenerationLog(engine) if engine is not None else None
    load0, sampler = os.getloadavg()[0], Sampler(server, 1.0)
    try:
        rows = (await server.callers({"part": "ttfa"}, 1800))["rows"]
    finally:
        samples = sampler.stop()
        if gens is not None:
            gens.close()
    ok = [r for r in rows if r.get("ttfa_ms") is not None]
    ttfa = [r["ttfa_ms"] for r in ok]
    f = lambda v: "" if v is None else f"{v:.0f}"
    lines = header("Time to first audio", command, samples, load0) + [
        "Per question, ms. **client** = first non-silent reply frame received − the caller's "
        "last voiced frame sent. Stages (they add up to it): **in** = listen's speech end "
        "(UserTurn.speech_end_unix: uplink, jitter buffer, VAD hangover, listen's queue) − "
        "the caller's; **eot** = end-of-turn decided − speech end; **asr** = the final "
        "decode's own time (asr_ms; it starts at the pause, so it overlaps eot); **turn** = "
        "decided → the UserTurn at the caller (what the final decode still took after the "
        "decision, and the hops); **agent** = UserTurn → first AgentSentence at the caller "
        "(tool choice, tool and LLM first sentence are the agent's own timings from "
        "AgentTurnDone, from when it took the turn; after the guardrail hop); **tts** = first "
        "AgentSentence → first audio at the caller (piper's first clause, the bus, playout, "
        "Opus, the downlink, the reply's leading silence). **gw** = the gateway's Latency "
        "(first reply frame sent − listen's speech end).", "",
        "| # | question | heard | tool | client | in | eot | asr | turn | agent | tool choice | "
        "tool | LLM 1st sentence | tts | gw |", "|---|---|---|---|" + "---:|" * 11]
    for i, r in enumerate(rows):
        lines.append(f"| {i + 1} | {r['q']} | {r.get('text', r.get('error', ''))[:40]} | "
                     f"{','.join(r.get('tools', [])) or '—'} | {f(r.get('ttfa_ms'))} | "
                     + " | ".join(f(r.get(k)) for k in ("in_ms", "eot_ms", "asr_ms", "to_agent_ms",
                                                       "agent_ms", "tool_choice_ms", "tool_ms",
                                                       "llm_first_sentence_ms", "tts_ms", "gateway_ms")) + " |")
    p50 = percentile(ttfa, .5)
    lines += ["", f"- time to first audio at the client, P50 / P95 (linear interpolation over "
              f"{len(ttfa)} of {len(rows)} questions): **{p50_p95(ttfa)} ms**; the seed's bar P50 "
              f"< {TTFA_TARGET_MS:.0f} ms: **{'met' if p50 < TTFA_TARGET_MS else 'not met'}**",
              f"- the gateway's own figure (Latency), P50 / P95: "
              f"{p50_p95([r['gateway_ms'] for r in ok if r.get('gateway_ms') is not None])} ms",
              where_time_goes(ok)]
    asked = lambda r: r.get("tool_choice_ms", 0) >= MODEL_STEP_MS     # noqa: E731
    groups = {"a tool ran, routed by its words (no model step)": lambda r: r.get("tools") and not asked(r),
              "a tool ran, chosen by the model's tool step": lambda r: r.get("tools") and asked(r),
              "the model's tool step ran and chose none": lambda r: not r.get("tools") and asked(r),
              "no tool: the model answered": lambda r: not r.get("tools") and not asked(r)}
    for label, pick in groups.items():
        part = [r["ttfa_ms"] for r in ok if pick(r)]
        lines.append(f"- {label}: P50 / P95 {p50_p95(part)} ms over {len(part)}")
    return "\n".join(lines + (gens.summary() if gens is not None else []))


def where_time_goes(rows: list[dict]) -> str:
    if not rows:
        return "- no question was answered"
    medians = {k: statistics.median(r[k] for r in rows) for k, _ in STAGES}
    total = sum(medians.values())
    return ("- where the time goes (median of each stage; its share of their sum, "
            f"{total:.0f} ms): " + "; ".join(f"{label} {medians[k]:.0f} ms ({medians[k] / total:.0%})"
                                          for k, label in STAGES))


async def part_barge(server: Server, args, command: str) -> str:
    engine = server.llama()
    if engine is None:
        raise SystemExit("the agent's engine is not the embedded llama.cpp one: no token count")
    gens, cancels = GenerationLog(engine), []
    async def on_cancel(msg) -> None:
        import msgspec
        from schemas import Cancel
        cancels.append((time.time(), msgspec.msgpack.decode(msg.data, type=Cancel).session_id))
    sub = await server.dep.bus.nc.subscribe(f"{server.dep.bus.subjects.root}._cancel.>",
                                            cb=on_cancel)
    load0, sampler = os.getloadavg()[0], Sampler(server, 1.0)
    try:
        rows = (await server.callers({"part": "barge", "trials": args.trials}, 1800))["rows"]
    finally:
        samples = sampler.stop()
        await sub.unsubscribe()
        gens.close()
    for r in rows:
        r |= cancel_tokens(r, cancels, gens.records)
    return barge_report(rows, header("Barge-in", command, samples, load0))


def cancel_tokens(row: dict, cancels: list, gens: list[dict]) -> dict:
    """The generation running when the trial's Cancel arrived, and its tokens after it."""
    at = next((t for t, sid in cancels if sid == row.get("session_id")), None)
    if at is None:
        return {"cancel": "no Cancel"}
    running = [g for g in gens if g["started"] <= at <= g["ended"]]
    if not running:
        return {"cancel": "idle", "after_stop": 0, "after_cancel": 0}
    g = running[-1]
    return {"cancel": "stopped" if g["stopped"] else "ran on", "after_stop": g["after_stop"],
            "after_cancel": tokens_after(g["times"], at),
            "cancel_to_stop_ms": (g["ended"] - at) * 1000}


def barge_report(rows: list[dict], lines: list[str]) -> str:
    f = lambda v: "" if v is None else f"{v:.0f}"
    lines += ["Per trial, ms from the speech onset (the caller sent the first voiced frame of "
              "\"Stop, wait.\"). **client** = last non-silent story frame received − onset; "
              "**gw** = the gateway's BargeIn (onset frame published → first silent frame out); "
              "**paused** / **interrupt** = Playback paused / Interrupt arriving at the caller; "
              "**over reply** = listen's SpeechStarted said during_playback (the frames said the "
              "agent's audio was playing when the onset was confirmed); **quiet before** = how "
              "long the story had been silent at the caller when the onset was sent (a pause "
              "between sentences). "
              "LLM: the generation running when the Cancel reached this process — **after stop** "
              "is the engine's last_tokens_after_stop, **after cancel** counts its tokens "
              "time-stamped after the Cancel arrived; *idle* = the story was fully generated "
              "before the barge-in.", "",
              "| after s | client | gw | paused | interrupt | quiet before | over reply | flushed | "
              "LLM at cancel | after stop | after cancel | cancel → stopped ms |",
              "|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['after_s']} | {f(r.get('silence_ms'))} | {f(r.get('gateway_ms'))} | "
                     f"{f(r.get('paused_ms'))} | {f(r.get('interrupt_ms'))} | {f(r.get('quiet_ms'))} | "
                     f"{ {True: 'yes', False: 'no'}.get(r.get('over_reply'), '?')} | "
                     f"{'yes' if r.get('flushed') else 'no'} | {r.get('cancel', r.get('error', ''))} | "
                     f"{r.get('after_stop', '')} | {r.get('after_cancel', '')} | {f(r.get('cancel_to_stop_ms'))} |")
    client = [r["silence_ms"] for r in rows if r.get("silence_ms") is not None]
    seen = [r["silence_ms"] for r in rows if r.get("silence_ms") is not None and r.get("over_reply")]
    gw = [r["gateway_ms"] for r in rows if r.get("gateway_ms") is not None]
    stopped = [r for r in rows if r.get("cancel") == "stopped"]
    worst = max((r["after_stop"] for r in stopped), default=0)
    worst_cancel = max((r["after_cancel"] for r in stopped), default=0)
    lines += ["", f"- onset → silence at the client, P50 / P95 over {len(client)} trials: "
              f"**{p50_p95(client)} ms**; target P95 ≤ {BARGE_TARGET_MS:.0f} ms: "
              f"**{'met' if client and percentile(client, .95) <= BARGE_TARGET_MS else 'not met'}**",
              f"- of those, the {len(seen)} trials where listen heard the speech as over the reply "
              f"(SpeechStarted.during_playback): P50 / P95 **{p50_p95(seen)} ms**; the others "
              f"({len(client) - len(seen)}) were taken for a new turn, so nothing paused the story",
              f"- the gateway's BargeIn, P50 / P95: {p50_p95(gw)} ms",
              f"- LLM still generating at the cancel in {len(stopped)} of {len(rows)} trials; tokens "
              f"after the stop (engine) max {worst}, after the Cancel arrived max {worst_cancel}; "
              f"target ≤ 1: **{'met' if worst <= 1 else 'not met'}** (engine count)"]
    return "\n".join(lines)


async def part_load(server: Server, args, command: str) -> str:
    load0, steps, all_samples = os.getloadavg()[0], [], []
    for n in args.sessions:
        await asyncio.sleep(5)                           # the last step's sessions wind down
        idle = Sampler(server, 0.25)
        await asyncio.sleep(3)
        idle_samples = idle.stop()
        idle_rss = statistics.median(s["rss"] for s in idle_samples)
        before, sampler = server.dropped(), Sampler(server, 0.25)
        result = await server.callers({"part": "load", "n": n, "seconds": args.step_s},
                                      args.step_s + 600)
        samples = sampler.stop()
        all_samples += samples
        after = server.dropped()
        steps.append(load_step(n, result, samples, idle_rss,
                               {k: after[k] - before.get(k, 0) for k in after},
                               server.stats.by_id) | {"idle_cpu": cpu_share(idle_samples)})
        print("  " + json.dumps({k: v for k, v in steps[-1].items() if k != "per_session"}),
              file=sys.stderr, flush=True)
    return load_report(steps, header("Concurrent callers", command, all_samples, load0), args)


def load_step(n: int, result: dict, samples: list[dict], idle_rss: float, dropped: dict,
              gateway: dict) -> dict:
    sessions = result["sessions"]
    rows = [r for s in sessions for r in s["rows"]]
    ttfa = [r["ttfa_ms"] for r in rows if r.get("ttfa_ms") is not None]
    lag = [r["in_ms"] for r in rows if r.get("in_ms") is not None]
    reply_min = sum(s["reply_s"] for s in sessions) / 60
    busy = samples[len(samples) // 2:] or samples
    rss = statistics.median(s["rss"] for s in busy) if busy else 0.0
    gw = [gateway.get(s["session_id"], {}) for s in sessions]
    return {"n": n, "connected": len(sessions), "errors": result["errors"][:3],
            "asked": sum(len(s["rows"]) + s["failed"] for s in sessions),
            "answered": sum(r.get("played", False) for r in rows),
            "ttfa": p50_p95(ttfa), "ttfa_p50": percentile(ttfa, .5),
            "gaps": sum(s["gaps"] for s in sessions), "stalls": sum(s["stalls"] for s in sessions),
            "reply_min": reply_min,
            "gaps_per_min": sum(s["gaps"] for s in sessions) / reply_min if reply_min else 0.0,
            "dropped": sum(dropped.values()), "dropped_by": {k: v for k, v in dropped.items() if v},
            "overflow": sum(g.get("overflow_drops", 0) for g in gw),
            "late_resets": sum(g.get("late_resets", 0) for g in gw),
            "listen_lag": p50_p95(lag),
            "listen_backlog_ms": max((s["backlog"] for s in samples), default=0) * 20,
            "loop_lag": f"{percentile([s['lag'] for s in samples], .99) * 1000:.0f} / "
                        f"{max((s['lag'] for s in samples), default=0) * 1000:.0f}",
            "caller_lag_p99": result["caller_lag_p99_ms"],
            "rss": rss, "rss_per_session": (rss - idle_rss) / n,
            "nats": max((s["nats"] for s in samples), default=0),
            "piper": max((s["piper"] for s in samples), default=0),
            "cpu": cpu_share(samples), "piper_cpu": cpu_share(samples, "piper_cpu"),
            "callers_rss": max((s["callers"] for s in samples), default=0),
            "cpu_load": max((s["load"] for s in samples), default=0)}


def load_report(steps: list[dict], lines: list[str], args) -> str:
    lines += [f"Each N: {args.step_s:.0f} s of N callers at once (connections 0.5 s apart), each "
              f"asking one of {len(LOOP)} small-talk questions in turn, hearing the whole reply, "
              "asking again; a question past the end finishes. **gaps** = received frames more "
              f"than {GAP_S * 1000:.0f} ms apart while a reply plays (per minute of reply audio); "
              f"**stalls** = silence ≥ {STALL_S} s between a reply's voiced frames (sentences "
              "not ready, or natural pauses); **dropped** = the runners' realtime drop counters; "
              "**overflow / resets** = the gateway's playout drops and pacing re-anchors; "
              "**listen lag** = UserTurn.speech_end_unix − the caller's speech end (P50 / P95 ms); "
              "**backlog** = listen's deepest queue × 20 ms; **loop lag** = this process's event "
              "loop waking late (P99 / max ms, 0.25 s samples); **RSS** = this process's VmRSS "
              "(median of the step's second half) and its growth over idle per session; "
              "**piper** = the piper TTS child process (peak MiB); **CPU** = % of one core used "
              "by this process / by piper over the step (2 cores = 200 %); **callers** = the "
              "caller process, for reference (it shares the cores).", "",
              "| N | asked / answered | client TTFA P50 / P95 ms | gaps (per min) | stalls | dropped | "
              "overflow / resets | listen lag ms | backlog ms | loop lag ms | caller loop P99 ms | "
              "RSS MiB | + per session MiB | piper MiB | nats MiB | callers MiB | CPU % | load | "
              "real-time |",
              "|---:|---|---|---|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for s in steps:
        drop = f"{s['dropped']} {s['dropped_by']}" if s["dropped"] else "0"
        lines.append(f"| {s['n']} | {s['asked']} / {s['answered']} | {s['ttfa']} | {s['gaps']} "
                     f"({s['gaps_per_min']:.1f}) | {s['stalls']} | {drop} | {s['overflow']} / "
                     f"{s['late_resets']} | {s['listen_lag']} | {s['listen_backlog_ms']} | "
                     f"{s['loop_lag']} | {s['caller_lag_p99']:.0f} | {s['rss']:.0f} | "
                     f"{s['rss_per_session']:+.1f} | {s['piper']:.0f} | {s['nats']:.0f} | "
                     f"{s['callers_rss']:.0f} | {s['cpu']:.0f} / {s['piper_cpu']:.0f} | "
                     f"{s['cpu_load']:.1f} | {'yes' if realtime_ok(s) else 'no'} |")
    ok = [s["n"] for s in steps if realtime_ok(s) and s["connected"] == s["n"]]
    quick = [s["n"] for s in steps if s["ttfa_p50"] < TTFA_TARGET_MS]
    lines += ["", "- real-time = no frame dropped, ≤ 1 gap per minute of reply audio, listen's "
              "backlog < 500 ms; every caller connected",
              f"- largest N real-time on this machine: **{max(ok) if ok else 'none'}**; largest N "
              f"still answering with client TTFA P50 < {TTFA_TARGET_MS:.0f} ms: "
              f"**{max(quick) if quick else 'none'}**"]
    lines.append("- this process's CPU with no call, just before each step: " + ", ".join(
        f"N={s['n']}: {s['idle_cpu']:.0f} %" for s in steps))
    lines += [f"- N={s['n']}: {s['errors']}" for s in steps if s["errors"]]
    return "\n".join(lines)


async def part_admission(server: Server, args, command: str) -> str:
    load0 = os.getloadavg()[0]
    r = await server.callers({"part": "admission", "n": args.crowd}, 600)
    return "\n".join(header("Admission", command, [], load0) + [
        f"{r['n']} offers posted at once (prepared first, then sent together) with "
        f"PATCHWIRE_VOICE_MAX_SESSIONS={args.max_sessions}: **{r['admitted']} admitted, "
        f"{r['refused']} refused** (HTTP statuses {r['statuses']}); a refusal is 503 "
        f"`{r['error'].get('code', '')}` with Retry-After: {r['retry_after'] or 'none'} and "
        f"the message “{r['error'].get('message', '')}”. The admitted sessions were hung up "
        f"(DELETE: {r['hung_up']} × 200). Admission is "
        f"{'as configured' if r['admitted'] == min(args.max_sessions, r['n']) else 'NOT as configured'}."])


async def part_soak(server: Server, args, command: str) -> str:
    load0, sampler = os.getloadavg()[0], Sampler(server, 10.0)
    result = await server.callers({"part": "soak", "minutes": args.soak_minutes, "every_s": 20.0},
                                  args.soak_minutes * 60 + 900)
    samples = sampler.stop()
    rows = result["rows"]
    rss = [(s["t"] - samples[0]["t"], s["rss"]) for s in samples]
    late = [p for p in rss if p[0] >= 300]
    ttfa = lambda part: [r["ttfa_ms"] for r in part if r.get("ttfa_ms") is not None]
    t0 = rows[0]["at"] if rows else 0
    first = [r for r in rows if r["at"] - t0 < 300]
    last = [r for r in rows if r["at"] - t0 >= args.soak_minutes * 60 - 300]
    return "\n".join(header("Soak", command, samples, load0) + [
        f"One caller, a question every 20 s (the 12 of the TTFA part in turn) for "
        f"{args.soak_minutes:g} min in one session; this process's VmRSS every 10 s "
        f"({len(rss)} samples).", "",
        f"- questions {len(rows)}, answered {sum(r.get('played', False) for r in rows)}, "
        f"failed {sum('error' in r for r in rows)}",
        f"- RSS start / peak / end: **{rss[0][1]:.0f} / {max(v for _, v in rss):.0f} / "
        f"{rss[-1][1]:.0f} MiB**; slope {slope_per_hour(rss):+.1f} MiB/h over the whole run, "
        f"{slope_per_hour(late):+.1f} MiB/h after the first 5 min (RSS at 5 min: "
        f"{late[0][1] if late else float('nan'):.0f} MiB)",
        f"- of which the LLM's saved KV states (its prefix cache, capped at 512 MiB): start / "
        f"end {samples[0]['kv']:.0f} / {samples[-1]['kv']:.0f} MiB; RSS less them: start / end "
        f"{rss[0][1] - samples[0]['kv']:.0f} / {rss[-1][1] - samples[-1]['kv']:.0f} MiB, slope "
        f"{slope_per_hour([(t, v - s['kv']) for (t, v), s in zip(rss, samples)]):+.1f} MiB/h "
        f"(after 5 min: {slope_per_hour([(t, v - s['kv']) for (t, v), s in zip(rss, samples) if t >= 300]):+.1f})",
        f"- piper process RSS start / peak / end: {samples[0]['piper']:.0f} / "
        f"{max(s['piper'] for s in samples):.0f} / {samples[-1]['piper']:.0f} MiB; slope "
        f"{slope_per_hour([(t, s['piper']) for (t, _), s in zip(rss, samples)]):+.1f} MiB/h",
        f"- nats-server RSS start / end: {samples[0]['nats']:.0f} / {samples[-1]['nats']:.0f} MiB",
        f"- CPU over the run: this process {cpu_share(samples):.0f} % of one core, piper "
        f"{cpu_share(samples, 'piper_cpu'):.0f} %",
        f"- client TTFA P50 / P95, first 5 min: {p50_p95(ttfa(first))} ms; last 5 min: "
        f"{p50_p95(ttfa(last))} ms"] if rss else ["no samples"])


PART_FNS = {"ttfa": part_ttfa, "barge": part_barge, "load": part_load,
            "admission": part_admission, "soak": part_soak}


async def main_async(args) -> int:
    command = "python loadtests/voice.py " + shlex.join(sys.argv[1:])
    async with Server(args.max_sessions) as server:
        for part in args.parts:
            await wait_for_load(args.wait_load)
            print(f"== {part} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            text = await PART_FNS[part](server, args, command)
            print(text, flush=True)
            if args.out:
                write_part(args.out, part, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="ttfa,barge,load,admission",
                    help=f"comma-separated, of {','.join(PARTS)} (soak also with --soak-minutes)")
    ap.add_argument("--sessions", default="1,2,4,8", help="load: N callers per step")
    ap.add_argument("--step-s", type=float, default=60.0)
    ap.add_argument("--trials", type=int, default=8, help="barge-in trials")
    ap.add_argument("--crowd", type=int, default=100, help="admission: offers at once")
    ap.add_argument("--max-sessions", type=int, default=16, help="PATCHWIRE_VOICE_MAX_SESSIONS")
    ap.add_argument("--soak-minutes", type=float, default=0.0)
    ap.add_argument("--wait-load", type=float, default=0.0,
                    help="before each part, wait (up to 15 min) for the 1-minute load below this")
    ap.add_argument("--out", type=Path, help="write the figures into this RESULTS.md")
    ap.add_argument("--callers", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.callers:                                       # the child process
        print(json.dumps(asyncio.run(callers_main(json.loads(args.callers)))))
        return 0
    args.parts = [p for p in args.parts.split(",") if p]
    if args.soak_minutes and "soak" not in args.parts:
        args.parts.append("soak")
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    args.sessions = [int(n) for n in args.sessions.split(",")]
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:       # the gateway's INFO is read, not shown
        handler.setLevel(logging.WARNING)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
