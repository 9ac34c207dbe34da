"""Text to speech latency: time to the first audio piece and the real-time factor, for short
and long agent sentences, through the Synthesize operator with a real engine.

Each sentence is one AgentSentence driven through `process()`, as the runner would (no bus:
see loadtests/bus_overhead.py for that hop). Per sentence: time to first piece (from the call
to the first SpeechAudio) and real-time factor (wall time to the last piece / seconds of audio
made; below 1 is faster than it plays). With --sessions N, N sessions speak at once (the
operator's `concurrency`), sharing the engine, so the figures include the queueing.

    python loadtests/tts.py [--engine embedded|espeak] [--rounds 3] [--sessions 1] [--processes 1]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHORT = ["Sure, I can help with that.", "The meeting is at 3:30 pm.", "Yes, that is right.",
         "Let me check the calendar.", "It costs $12.50 per month.", "Good morning!",
         "I found two documents about it.", "Would you like me to book it?"]
LONG = [
    "I looked at the three documents you sent me, and the second one, the contract from March, "
    "says the payment is due within thirty days of delivery.",
    "The quarterly report shows that revenue grew by twelve percent, mostly because of the new "
    "subscription plans, while costs stayed flat compared with last year.",
    "If you want to change the booking, I can move it to Thursday afternoon, but the room on the "
    "second floor is only free between two and four o'clock.",
    "According to the policy, employees who travel for more than five days can claim a daily "
    "allowance for meals, and the receipts have to be submitted within two weeks.",
    "Before we start the installation, please make sure the device is plugged in and connected "
    "to the same network as your phone, otherwise the setup will fail.",
    "The summary of the call is that the team agreed to ship the first version next month and to "
    "collect feedback from ten customers before planning the next release.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def speak(op, text: str, session: str, index: int) -> tuple[float, float]:
    """(seconds to the first piece, real-time factor) of one sentence."""
    from operators.base import Context
    from schemas import AgentSentence
    msg = AgentSentence(session_id=session, turn=1, index=index, text=text)
    ctx = Context(operator=op.name, session_id=session)
    started, first, samples = time.perf_counter(), None, 0
    async for audio in op.process(msg, ctx):
        first = first if first is not None else time.perf_counter() - started
        samples += len(audio.pcm) // 2
    wall = time.perf_counter() - started
    return first, wall / (samples / op.engine.sample_rate)


async def session(op, sentences: list[str], rounds: int, name: str) -> list[tuple[float, float]]:
    out = []
    for r in range(rounds):
        for i, text in enumerate(sentences):
            out.append(await speak(op, text, f"{name}-{r}", i))
    return out


async def measure(op, sentences: list[str], rounds: int, sessions: int) -> list[tuple]:
    runs = await asyncio.gather(*(session(op, sentences, rounds, f"s{i}") for i in range(sessions)))
    return [m for run in runs for m in run]


def row(label: str, sentences: list[str], results: list[tuple[float, float]]) -> str:
    ttfp = [f * 1000 for f, _ in results]
    rtf = [r for _, r in results]
    words = statistics.mean(len(s.split()) for s in sentences)
    return (f"| {label} | {words:.0f} | {len(results)} | {statistics.median(ttfp):.0f} | "
            f"{percentile(ttfp, 0.95):.0f} | {statistics.median(rtf):.3f} | "
            f"{percentile(rtf, 0.95):.3f} |")


async def main(args: argparse.Namespace) -> None:
    from operators.registry import engine_factory
    from operators.voice.synthesize import Synthesize, SynthesizeConfig
    config = SynthesizeConfig(processes=args.processes)
    engine = engine_factory("synthesize", args.engine)(config)
    op = Synthesize("synthesize", config, engine)
    started = time.perf_counter()
    await op.start()
    print(f"engine {args.engine}: started in {time.perf_counter() - started:.2f} s; "
          f"{args.sessions} session(s) at once, {args.rounds} round(s), "
          f"{args.processes} piper process(es)")
    await measure(op, SHORT[:2], 1, 1)   # warm-up
    print("| sentences | words (mean) | n | first piece ms (median) | p95 | RTF (median) | p95 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, sentences in (("short", SHORT), ("long", LONG)):
        print(row(label, sentences, await measure(op, sentences, args.rounds, args.sessions)),
              flush=True)
    await op.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="embedded", choices=("embedded", "espeak"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
