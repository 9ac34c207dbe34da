"""`patchwire ingest` and `patchwire ask`: the document QA bot from the command line.

Both use a running deployment when NATS_URL answers (fast: the models are loaded already);
otherwise they start an embedded nats-server and the operators they need in this process.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import msgspec

HERE = Path(__file__).resolve().parent
DOC_QA_YAML = HERE / "doc_qa.yaml"
INGEST_OPERATORS = ["chunk", "embed", "index"]
ASK_OPERATORS = ["rewrite", "retrieve", "rerank", "answer", "verify"]
SUFFIXES = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".pdf", ".json", ".vtt", ".srt"}
IN_FLIGHT = 8


def documents_under(paths: list[str]) -> list[tuple[Path, str]]:
    """(file, doc id) for every supported file: a folder gives ids relative to itself."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            found.append((root, root.name))
        elif root.is_dir():
            for f in sorted(root.rglob("*")):
                rel = f.relative_to(root)
                if f.is_file() and f.suffix.lower() in SUFFIXES and \
                        not any(p.startswith(".") for p in rel.parts):
                    found.append((f, rel.as_posix()))
        else:
            raise FileNotFoundError(f"no such file or folder: {root}")
    return found


async def _open(settings: list[str], operators: list[str]):
    from topology import spec as topo_spec
    from topology.app import Deployment
    topo = topo_spec.override(topo_spec.load(DOC_QA_YAML), settings or [])
    dep = await Deployment.open(topo, os.environ.get("NATS_URL"),
                                os.environ.get("PATCHWIRE_NAMESPACE", "pw"))
    if dep.server:                      # nobody else serves: run what this command needs
        await dep.start_operators(operators)
    return dep


def principal_for(user: str | None, users_file: str | None):
    from schemas.documents import Principal
    if not user:
        return Principal()
    path = users_file or os.environ.get("PATCHWIRE_USERS")
    if path:
        from topology.gateway.auth import load_users
        found = load_users(Path(path)).by_name(user)
        if found is None:
            raise KeyError(f"no user {user!r} in {path}")
        return found
    return Principal(user=user)


async def cmd_ingest(args) -> int:
    from schemas.documents import DocumentKey
    from topology.gateway.service import Upload
    from topology.qa import QaClient
    acl = [a.strip() for a in (args.acl or "*").split(",") if a.strip()]
    try:
        files = [] if args.delete else documents_under(args.paths)
    except FileNotFoundError as e:
        print(f"patchwire: {e}", file=sys.stderr)
        return 2
    if args.doc_id and len(files) != 1:
        print("patchwire: --doc-id names one document; give one file", file=sys.stderr)
        return 2
    dep = await _open(args.set, INGEST_OPERATORS)
    client = QaClient(dep.bus, dep.blobs)
    limit = asyncio.Semaphore(IN_FLIGHT)
    key = lambda doc_id: DocumentKey(tenant=args.tenant, collection=args.collection, doc_id=doc_id)

    async def one(path: Path | None, doc_id: str) -> str:
        async with limit:
            if path is None:
                ticket = await client.delete(key(doc_id))
            else:
                ticket = await client.ingest(Upload(filename=path.name, path=path),
                                             key(args.doc_id or doc_id), acl)
            async for event in client.job_events(ticket.job_id):
                if event.final:
                    mark = {"done": "+", "unchanged": "=", "deleted": "-"}.get(event.stage, "!")
                    print(f"{mark} {doc_id}: {event.stage}{': ' + event.note if event.note else ''}",
                          flush=True)
                    return event.stage
        return "failed"

    try:
        work = [(None, d) for d in args.paths] if args.delete else files
        stages = await asyncio.gather(*(one(p, d) for p, d in work))
    finally:
        await dep.close()
    counts = {s: stages.count(s) for s in sorted(set(stages))}
    print("patchwire: " + ", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    return 1 if "failed" in counts else 0


async def cmd_ask(args) -> int:
    from schemas.documents import Answer, AnswerDelta, AskRequest
    from topology.qa import QaClient, new_request_id
    from topology.render import answer_text
    try:
        principal = principal_for(args.as_user, args.users)
    except KeyError as e:
        print(f"patchwire: {e.args[0]}", file=sys.stderr)
        return 2
    request = AskRequest(request_id=new_request_id(), question=args.question, principal=principal,
                         collections=args.collection or [], mode=args.mode)
    dep = await _open(args.set, ASK_OPERATORS)
    streaming = sys.stderr.isatty() and not args.json
    answer = None
    try:
        async for event in QaClient(dep.bus, dep.blobs).ask(request):
            if isinstance(event, AnswerDelta) and streaming:
                print(event.text, end="", file=sys.stderr, flush=True)
            elif isinstance(event, Answer):
                answer = event
    finally:
        await dep.close()
    if streaming:
        print("\n" + "─" * 40, file=sys.stderr)
    if args.json:
        print(json.dumps(msgspec.to_builtins(answer), indent=2, ensure_ascii=False))
    else:
        print(answer_text(answer))
    return 0 if answer.outcome != "rejected" else 1


EVAL_PARTS = {"qa": ("retrieval", "leak", "grounded"),
              "meeting": ("wer", "sawer", "der", "summary"),
              "voice": ("tasks",)}
EVAL_DEFAULTS = {"qa": "retrieval,leak", "meeting": "wer,sawer,der", "voice": "tasks"}


def cmd_eval(args) -> int:
    """`patchwire eval qa`: SciFact retrieval, the permission leak test, grounded answering on
    MTRAG (slow: an LLM answers and another judges). `patchwire eval meeting`: evals/meeting.py
    (ASR WER, speaker-attributed WER, DER, QMSum summaries). `patchwire eval voice`:
    evals/voice_tasks.py (40 scripted tool requests to the voice agent). Each part writes its
    block in --out."""
    known = EVAL_PARTS[args.product]
    parts = [p.strip() for p in (args.parts or EVAL_DEFAULTS[args.product]).split(",") if p.strip()]
    unknown = set(parts) - set(known)
    if unknown:
        print(f"patchwire: eval {args.product} {sorted(unknown)}: known parts: "
              f"{','.join(known)}", file=sys.stderr)
        return 2
    out = ["--out", str(args.out)] if args.out else []
    if args.product == "voice":
        from evals.voice_tasks import main as voice_tasks
        return voice_tasks(out)
    if args.product == "meeting":
        from evals.meeting import main as meeting
        return meeting(["--parts", ",".join(parts)] + out +
                       (["--limit", str(args.limit)] if args.limit else []))
    failed = False
    if "retrieval" in parts:
        from evals.scifact import main as retrieval
        failed |= retrieval(out + (["--limit", str(args.limit)] if args.limit else [])) != 0
    if "leak" in parts:
        from evals.leak import main as leak
        failed |= leak(out) != 0
    if "grounded" in parts:
        from evals.grounded import main as grounded
        failed |= grounded(out + ["--limit", str(args.tasks)]) != 0
    return 1 if failed else 0


def add_commands(sub, setting: dict) -> dict:
    ing = sub.add_parser("ingest", help="add, replace or delete documents for `ask`")
    ing.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (or ids with --delete)")
    ing.add_argument("--collection", default="default")
    ing.add_argument("--acl", help="comma-separated groups that may read (default: * = everyone)")
    ing.add_argument("--tenant", default="default")
    ing.add_argument("--doc-id", help="the document's id (one file only; default: its path)")
    ing.add_argument("--delete", action="store_true", help="remove the documents with these ids")
    ing.add_argument("--set", **setting)
    ask = sub.add_parser("ask", help="ask the ingested documents a question")
    ask.add_argument("question")
    ask.add_argument("--as", dest="as_user", metavar="USER", help="ask as this user (users file)")
    ask.add_argument("--users", help="users file (default: PATCHWIRE_USERS)")
    ask.add_argument("--collection", action="append", help="search only this collection")
    ask.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    ask.add_argument("--set", **setting)
    ev = sub.add_parser("eval", help="quality figures: `patchwire eval qa|meeting|voice`")
    ev.add_argument("product", choices=list(EVAL_PARTS))
    ev.add_argument("--parts", help="comma-separated; qa: retrieval, leak (default), grounded "
                    "(slow, ~1 min a task); meeting: wer, sawer, der (default), summary (slow, "
                    "~8 min a meeting); voice: tasks (default)")
    ev.add_argument("--limit", type=int, help="qa retrieval: only the first N claims; "
                    "meeting summary: N QMSum meetings (default 3)")
    ev.add_argument("--tasks", type=int, default=36, help="grounded: MTRAG tasks (half unanswerable)")
    ev.add_argument("--out", type=Path, help="write the figures into this RESULTS.md")
    return {"ingest": cmd_ingest, "ask": cmd_ask, "eval": cmd_eval}
