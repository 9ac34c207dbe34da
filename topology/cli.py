"""The patchwire command line. The environment is read here and nowhere deeper."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import msgspec

from topology import cli_docs, cli_meeting
from topology import spec as topo_spec

HERE = Path(__file__).resolve().parent
TRANSCRIBE_YAML = HERE / "transcribe.yaml"
log = logging.getLogger("patchwire")


def _namespace() -> str:
    return os.environ.get("PATCHWIRE_NAMESPACE", "pw")


async def _warn_if_unreachable() -> None:
    from topology.server import answers
    url = os.environ.get("NATS_URL")
    if url and not await answers(url):
        print(f"patchwire: NATS_URL={url} does not answer; starting an embedded nats-server",
              file=sys.stderr)


def _load(path: str | Path, settings: list[str]) -> topo_spec.TopologySpec:
    return topo_spec.override(topo_spec.load(path), settings or [])


async def cmd_up(args) -> int:
    from topology.app import Deployment
    topo = _load(args.topology, args.set)
    await _warn_if_unreachable()
    dep = await Deployment.open(topo, os.environ.get("NATS_URL"), _namespace())
    gateway = None
    try:
        await dep.start_operators()
        where = "embedded nats-server" if dep.server else "NATS_URL"
        print(f"patchwire: {topo.name} up on {dep.url} ({where}); "
              f"{len(dep.runners)} operators; Ctrl-C to stop", flush=True)
        if topo.gateway is not None and not args.no_gateway:
            from topology.gateway.start import start_gateway
            gateway = await start_gateway(dep, topo, args.port)
            print(f"patchwire: web page and API at {gateway.url}/", flush=True)
        await dep.wait_for_signal()
    finally:
        if gateway is not None:
            await gateway.close()
        await dep.close()
    return 0


async def cmd_operator(args) -> int:
    from topology.app import Deployment
    from topology.server import answers
    topo = _load(args.topology, args.set)
    topo.operator(args.name)  # a clear error before anything starts
    url = os.environ.get("NATS_URL")
    if not await answers(url):  # a replica on a private server would serve nobody
        print(f"patchwire: operator needs a running NATS server; NATS_URL={url or '(unset)'} "
              "does not answer (start one with `patchwire up`)", file=sys.stderr)
        return 2
    dep = await Deployment.open(topo, url, _namespace())
    try:
        await dep.start_operators([args.name])
        print(f"patchwire: operator {args.name} serving on {dep.url}", flush=True)
        await dep.wait_for_signal()
    finally:
        await dep.close()
    return 0


async def cmd_transcribe(args) -> int:
    from topology.app import Deployment
    from topology.jobs import JobFailed, transcribe_file
    from topology.render import progress_line, transcript_text
    path = Path(args.file)
    if not path.is_file():
        print(f"patchwire: no such file: {path}", file=sys.stderr)
        return 2
    settings = list(args.set or []) + ([f"asr.model={args.model}"] if args.model else [])
    topo = _load(TRANSCRIBE_YAML, settings)
    url = os.environ.get("NATS_URL")
    await _warn_if_unreachable()
    with tempfile.TemporaryDirectory(prefix="pw-transcribe-") as store:
        dep = await Deployment.open(topo, url, _namespace(), store_dir=Path(store))
        try:
            if dep.server:  # nobody answered at NATS_URL: stand the topology up ourselves
                await dep.start_operators()
            show = (lambda p: print(progress_line(p), file=sys.stderr)) if args.progress else None
            transcript = await transcribe_file(dep.bus, dep.blobs, path, timeout=args.timeout,
                                               on_progress=show)
        except JobFailed as e:
            print(f"patchwire: cannot transcribe {path}: {e}", file=sys.stderr)
            return 1
        finally:
            await dep.close()
    if args.json:
        print(json.dumps(msgspec.to_builtins(transcript), indent=2))
    else:
        print(transcript_text(transcript))
    return 0


def cmd_trace(args) -> int:
    from topology import tracing
    path = Path(args.file) if args.file else tracing.trace_file()
    spans = tracing.read_spans(path, args.job)
    if not spans:
        print(tracing.format_missing(args.job, path), file=sys.stderr)
        return 1
    print(tracing.waterfall(spans))
    return 0


def cmd_models(args) -> int:
    from operators.models import MODELS, ModelError, model_path, model_status
    problems = []
    if not args.no_join:
        for name in MODELS:  # join multi-part weights once and verify their sha256
            try:
                model_path(name)
            except ModelError as e:
                problems.append(str(e))
    rows = model_status()
    print(f"{'model':18} {'kind':5} {'state':16} {'size':>9}  path / install")
    for r in rows:
        size = f"{r.size / 1e6:.1f} MB" if r.size else ""
        where = r.path or "pip install " + " ".join(r.packages)
        print(f"{r.name:18} {r.kind:5} {r.state.value:16} {size:>9}  {where}")
    for problem in problems:
        print(f"patchwire: {problem}", file=sys.stderr)
    return 0 if all(r.state.value == "ok" for r in rows) and not problems else 1


def cmd_schemas(args) -> int:
    from schemas.export import json_schemas
    text = json.dumps(json_schemas(), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


def cmd_check(args) -> int:
    from topology.graph import check
    topo = _load(args.topology, args.set)
    bound = check(topo)
    print(f"{args.topology}: ok ({len(bound)} operators, {len(topo.edges)} edges)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchwire", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    setting = {"action": "append", "metavar": "OP.KEY=VALUE", "help": "override an operator's config"}
    up = sub.add_parser("up", help="run every operator of a topology in this process")
    up.add_argument("topology")
    up.add_argument("--set", **setting)
    up.add_argument("--port", type=int, help="the gateway's HTTP port (0: any free one)")
    up.add_argument("--no-gateway", action="store_true", help="operators only, no HTTP")
    op = sub.add_parser("operator", help="run one operator of a topology (a replica)")
    op.add_argument("name")
    op.add_argument("--topology", required=True)
    op.add_argument("--set", **setting)
    tr = sub.add_parser("transcribe", help="transcribe an audio or video file")
    tr.add_argument("file")
    tr.add_argument("--json", action="store_true", help="print the transcript as JSON")
    tr.add_argument("--model", help="whisper-tiny.en (default) or whisper-base")
    tr.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    tr.add_argument("--progress", action="store_true", help="print progress events on stderr")
    tr.add_argument("--set", **setting)
    t = sub.add_parser("trace", help="print a job's waterfall from the trace file")
    t.add_argument("job")
    t.add_argument("--file", help="JSONL span file (default: PATCHWIRE_TRACE_FILE or the data dir)")
    m = sub.add_parser("models", help="list the embedded models, joining and verifying them once")
    m.add_argument("--no-join", action="store_true", help="only look; join nothing")
    s = sub.add_parser("schemas", help="export the wire messages as JSON Schema")
    s.add_argument("--out")
    c = sub.add_parser("check", help="validate a topology file")
    c.add_argument("topology")
    c.add_argument("--set", **setting)
    COMMANDS.update(cli_docs.add_commands(sub, setting))
    COMMANDS.update(cli_meeting.add_commands(sub, setting))
    return p


COMMANDS = {"up": cmd_up, "operator": cmd_operator, "transcribe": cmd_transcribe,
            "trace": cmd_trace, "models": cmd_models, "schemas": cmd_schemas, "check": cmd_check}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from topology import tracing
    tracing.setup_tracing(f"patchwire-{args.cmd}")
    fn = COMMANDS[args.cmd]
    try:
        result = asyncio.run(fn(args)) if asyncio.iscoroutinefunction(fn) else fn(args)
    except topo_spec.TopologyError as e:
        print(f"patchwire: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        tracing.shutdown_tracing()
    return result


if __name__ == "__main__":
    sys.exit(main())
