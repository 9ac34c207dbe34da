"""Task completion of the voice agent: 40 scripted tool-using requests, judged by their effect.

    python -m evals.voice_tasks [--model qwen2.5-coder-0.5b] [--out evals/RESULTS.md]

The agent operator (operators/voice/agent.py) runs with the real LLM on a seeded world: a
calendar with events on known days, notes, and three short company documents in a private QA
store. Each request is a finished user turn (text, as the ASR would deliver it) and is done
right when its check passes: the right tool ran and either the world changed as asked (the
event is in the calendar on the right day, the note is written) or the reply says the fact
the world holds. Nothing is judged by an LLM. The seed's bar: more than 85 %.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import msgspec

from schemas import AgentSentence, ToolActivity, UserTurn

TARGET = 0.85
USER = "ana"
DOCS = {
    "vacation": "# Vacation policy\n\nEvery employee has 25 days of paid vacation a year. "
                "Unused days can be carried over until March 31 of the next year.",
    "it-help": "# IT handbook\n\nTo reset your password, open reset.example.com and follow the "
               "link sent to your phone. The help desk is on the second floor.",
    "expenses": "# Expense guide\n\nSubmit expense reports within 30 days of the purchase, with "
                "the receipts attached. The office address is 12 Harbour Street, Lisbon.",
}


class Task(msgspec.Struct, frozen=True):
    text: str
    tool: str
    check: str            # "said:WORD" (reply holds it), "event:DAY:WORD", "note:WORD", "clock"
    set: str = "stock"    # "stock": the first 20; "reworded": 20 more, said differently


def day_after(today: dt.date, weekday: int) -> dt.date:
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7)


def tasks(today: dt.date) -> list[Task]:
    tomorrow = today + dt.timedelta(days=1)
    thursday = day_after(today, 3)
    monday, saturday = day_after(today, 0), day_after(today, 5)
    tuesday = day_after(today, 1) + (dt.timedelta(days=7) if today.weekday() == 1 else dt.timedelta())
    return [
        Task("What's on my calendar tomorrow?", "list_events", "said:standup"),
        Task("Do I have anything on Friday?", "list_events", "said:yoga"),
        Task("Add lunch with Maria on Thursday at noon.", "add_event", f"event:{thursday}:lunch"),
        Task("Put a dentist appointment in my calendar for tomorrow at 9.", "add_event",
             f"event:{tomorrow}:dentist"),
        Task("Schedule a call with the bank on Monday.", "add_event", f"event:{monday}:bank"),
        Task("What time is it?", "current_time", "clock"),
        Task("What's today's date?", "current_time", f"said:{today.day}"),
        Task("What day of the week is it today?", "current_time", f"said:{today:%A}"),
        Task("Take a note: buy milk and eggs.", "add_note", "note:milk"),
        Task("Please write down that the wifi password is on the fridge.", "add_note", "note:wifi"),
        Task("Make a note that Tom's birthday is in March.", "add_note", "note:march"),
        Task("Read me my notes.", "list_notes", "said:passport"),
        Task("What notes do I have?", "list_notes", "said:passport"),
        Task("What do the documents say about vacation days?", "search_documents", "said:25"),
        Task("According to the IT handbook, how do I reset my password?", "search_documents",
             "said:reset.example.com"),
        Task("Search the documents for the office address.", "search_documents", "said:harbour"),
        Task("What is on my schedule today?", "list_events", "said:dinner"),
        Task("Book a meeting with Sam next Tuesday at 3 pm.", "add_event", f"event:{tuesday}:sam"),
        Task("Look up what the expense guide says about the deadline for reports.",
             "search_documents", "said:30"),
        Task("Am I free on Saturday?", "list_events", f"said:{saturday:%A}"),
    ] + reworded(today)


def reworded(today: dt.date) -> list[Task]:
    """The same needs said other ways; written after the intent patterns
    (operators/voice/intents.py) and not tuned against them: some of them the patterns do not
    know, and the model chooses."""
    tomorrow, wednesday, saturday = (today + dt.timedelta(days=1), day_after(today, 2),
                                     day_after(today, 5))
    friday = day_after(today, 4)
    r = "reworded"
    return [
        Task("Anything planned for tomorrow?", "list_events", "said:standup", r),
        Task(f"What have I got on {friday:%A}?", "list_events", "said:yoga", r),
        Task("Tell me what's on today.", "list_events", "said:dinner", r),
        Task("Is my evening free today?", "list_events", "said:dinner", r),
        Task("Could you add a haircut on Wednesday at 4 pm?", "add_event",
             f"event:{wednesday}:haircut", r),
        Task("Please book dinner with Lea on Saturday at 8.", "add_event", f"event:{saturday}:lea", r),
        Task("Set up a call with the landlord tomorrow morning.", "add_event",
             f"event:{tomorrow}:landlord", r),
        Task("What's the time?", "current_time", "clock", r),
        Task("Which day is it today?", "current_time", f"said:{today:%A}", r),
        Task("What's the date?", "current_time", f"said:{today.day}", r),
        Task("Note that the gym closes at nine.", "add_note", "note:gym", r),
        Task("Jot down: renew the car insurance.", "add_note", "note:insurance", r),
        Task("Remember that my locker code is 4512.", "add_note", "note:4512", r),
        # by now the notes are seven: the tool reads the newest five, so the check is the newest
        Task("Can you read back my notes?", "list_notes", "said:locker", r),
        Task("Show me my notes.", "list_notes", "said:locker", r),
        Task("How many vacation days do I get according to the policy?", "search_documents",
             "said:25", r),
        Task("What does the expense guide say about receipts?", "search_documents",
             "said:receipt", r),
        Task("Where is the help desk, according to the handbook?", "search_documents",
             "said:second", r),
        Task("Check the docs: where is the office?", "search_documents", "said:harbour", r),
        Task("Do I have anything on Saturday?", "list_events", f"said:{saturday:%A}", r),
    ]


def seed(notebook, today: dt.date) -> None:
    notebook.add_event(USER, (today + dt.timedelta(days=1)).isoformat(), "Team standup", "09:30")
    notebook.add_event(USER, day_after(today, 4).isoformat(), "Yoga class", "18:00")
    notebook.add_event(USER, today.isoformat(), "Dinner with Joe", "20:00")
    notebook.add_note(USER, "Renew the passport before June")


async def seed_store(path: Path) -> None:
    from evals.scifact_index import prepare_markdown
    from operators.ingest.embed import make_embedder, title_prefixed
    from operators.store.factory import embedded_store
    from schemas.documents import DocumentKey
    conf = msgspec.defstruct("C", [("model", str), ("batch_size", int), ("threads", int),
                                   ("store", str)])("all-minilm-l6-v2", 8, 1, str(path))
    embedder, store = make_embedder(conf), embedded_store(conf)
    await store.open(embedder.name, embedder.dim)
    for name, text in DOCS.items():
        p = prepare_markdown(text.encode(), DocumentKey(doc_id=name), ["*"])
        vectors = await embedder.embed(title_prefixed(p.batch), "passage")
        await store.put_chunks(p.doc, p.batch.chunks, vectors)
        await store.commit(p.doc)
    await store.close()
    await embedder.close()


def judge(task: Task, events: list, notebook) -> tuple[bool, str]:
    ran = [e for e in events if isinstance(e, ToolActivity) and e.state == "finished"]
    said = " ".join(e.text for e in events if isinstance(e, AgentSentence))
    if not any(e.name == task.tool for e in ran):
        return False, f"tools {[e.name for e in ran] or 'none'}, wanted {task.tool}"
    kind, _, rest = task.check.partition(":")
    if kind == "clock":   # the hour now, or a minute ago (the reply may straddle the hour)
        now = dt.datetime.now()
        hours = {f"{now:%H}", f"{now - dt.timedelta(minutes=1):%H}"}
        return any(h in said for h in hours), said
    if kind == "said":
        return rest.lower() in said.lower(), said
    if kind == "note":
        notes = " ".join(notebook.notes(USER, 50)).lower()
        return rest in notes, said
    day, _, word = rest.partition(":")
    titles = " ".join(title for _, title in notebook.events(USER, day)).lower()
    return word in titles, f"{said} | events on {day}: {titles or 'none'}"


async def evaluate(model: str, only: Callable[[int], bool] = lambda i: True) -> list[dict]:
    from operators.base import Context
    from operators.generate.shared import shared_llama
    from operators.testing import drive
    from operators.voice.agent import Agent, AgentConfig
    tmp = Path(tempfile.mkdtemp(prefix="pw-voice-eval-"))
    await seed_store(tmp / "store.sqlite")
    config = AgentConfig(model=model, notebook=str(tmp / "voice.sqlite"),
                         store=str(tmp / "store.sqlite"))
    agent = Agent("agent", config, shared_llama(config))
    await agent.start()
    today = dt.date.today()
    seed(agent.notebook, today)
    rows = []
    for i, task in enumerate(tasks(today)):
        if not only(i):
            continue
        started = time.perf_counter()
        ctx = Context(operator="agent", session_id=f"task{i}")     # a fresh conversation each
        events = await drive(agent, UserTurn(session_id=f"task{i}", turn=1, text=task.text,
                                             user=USER), ctx)
        ok, detail = judge(task, events, agent.notebook)
        rows.append({"task": task.text, "tool": task.tool, "set": task.set, "ok": ok,
                     "detail": detail[:200],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(f"{'PASS' if ok else 'FAIL'} {rows[-1]['seconds']:5.1f}s {task.text} -> {detail[:120]}",
              flush=True)
    await agent.stop()
    return rows


def report(rows: list[dict], model: str, command: str) -> str:
    done = sum(r["ok"] for r in rows)
    share = done / len(rows)
    per_set = "; ".join(f"{name}: {sum(r['ok'] for r in mine)}/{len(mine)}"
                        for name in ("stock", "reworded")
                        if (mine := [r for r in rows if r["set"] == name]))
    lines = [f"## Voice agent: task completion ({len(rows)} scripted tool requests, {model})", "",
             f"Command: `{command}`  ",
             "Sets: **stock**, the 20 requests the intent patterns (operators/voice/intents.py) "
             "were written against; **reworded**, 20 more written afterwards and not tuned, "
             "some of which only the model's tool step can route.  ",
             f"Done right: **{done}/{len(rows)} ({share:.0%})** ({per_set}), target > {TARGET:.0%}: "
             f"{'met' if share > TARGET else 'not met'}; median {statistics.median(r['seconds'] for r in rows):.1f} s "
             "a request on the shared 2-core machine (tool choice + tool + reply).", "",
             "| set | request | tool | done | reply / why |", "|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['task']} | {r['tool']} | {'yes' if r['ok'] else 'no'} | "
              f"{r['detail'].replace('|', '/')[:140]} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows = asyncio.run(evaluate(args.model))
    text = report(rows, args.model, "python -m evals.voice_tasks " + shlex.join(argv or sys.argv[1:]))
    print(text)
    if args.out:
        from loadtests.results import replace_block
        replace_block(args.out, "voice-tasks", text)
    return 0 if sum(r["ok"] for r in rows) / len(rows) > TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
