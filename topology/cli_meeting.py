"""`patchwire meeting FILE`: a recording in; the diarized transcript, the minutes, and the
meeting searchable with `patchwire ask`.

Against a running deployment when NATS_URL answers (`patchwire up
topology/meeting_transcriber.yaml`); otherwise the topology runs in this process on an
embedded nats-server, and the meeting is indexed into the same QA store `ask` reads.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEETING_YAML = HERE / "meeting_transcriber.yaml"
FORMATS = ("md", "json", "srt", "vtt", "rttm", "summary")


def _info(args):
    from topology.meeting import meeting_info
    agenda = Path(args.agenda).read_text(errors="replace") if args.agenda else ""
    return meeting_info(title=args.title or Path(args.file).stem, participants=args.participants,
                        agenda=agenda, speakers=args.speakers, acl=args.acl, tenant=args.tenant,
                        collection=args.collection, redact=args.redact,
                        redact_names=args.redact_names, disfluencies=args.no_disfluencies,
                        summarize=not args.no_summary, index=not args.no_index,
                        keep_audio=True)


async def cmd_meeting(args) -> int:
    from topology import spec as topo_spec
    from topology.app import Deployment
    from topology.jobs import JobFailed
    from topology.meeting import MeetingError, render_minutes, transcribe_meeting, write_all
    from topology.render import progress_line
    path = Path(args.file)
    if not path.is_file():
        print(f"patchwire: no such file: {path}", file=sys.stderr)
        return 2
    if args.agenda and not Path(args.agenda).is_file():
        print(f"patchwire: no such agenda file: {args.agenda}", file=sys.stderr)
        return 2
    try:
        info = _info(args)
    except MeetingError as e:
        print(f"patchwire: {e}", file=sys.stderr)
        return 2
    settings = list(args.set or []) + ([f"asr.model={args.model}"] if args.model else [])
    topo = topo_spec.override(topo_spec.load(MEETING_YAML), settings)
    show = (lambda p: print(progress_line(p), file=sys.stderr)) if args.progress else None
    with tempfile.TemporaryDirectory(prefix="pw-meeting-") as store:
        dep = await Deployment.open(topo, os.environ.get("NATS_URL"),
                                    os.environ.get("PATCHWIRE_NAMESPACE", "pw"),
                                    store_dir=Path(store))
        try:
            if dep.server:
                await dep.start_operators()
            minutes, indexed = await transcribe_meeting(dep.bus, dep.blobs, path, info,
                                                        timeout=args.timeout, on_progress=show)
        except JobFailed as e:
            print(f"patchwire: cannot transcribe the meeting {path}: {e}", file=sys.stderr)
            return 1
        finally:
            await dep.close()
    for warning in minutes.warnings + minutes.transcript.warnings:
        print(f"patchwire: warning: {warning}", file=sys.stderr)
    if indexed is not None:
        print(f"patchwire: searchable as {minutes.document_id or indexed.key.doc_id} in "
              f"collection {info.collection} (patchwire ask \"…\" --collection "
              f"{info.collection})", file=sys.stderr)
    if args.out:
        for written in write_all(minutes, Path(args.out)):
            print(f"patchwire: wrote {written}", file=sys.stderr)
        return 0
    try:
        sys.stdout.buffer.write(render_minutes(args.format, minutes))
    except MeetingError as e:
        print(f"patchwire: {e}", file=sys.stderr)
        return 1
    sys.stdout.write("\n")
    return 0


def add_commands(sub, setting: dict) -> dict:
    m = sub.add_parser("meeting", help="transcribe a meeting: speakers, minutes, searchable")
    m.add_argument("file", help="an audio or video recording")
    m.add_argument("--participants", default="", help='comma-separated names: "Ana,Tom"')
    m.add_argument("--agenda", help="a text file: its terms guide the ASR and the spelling")
    m.add_argument("--title", help="the meeting's title (default: the file name)")
    m.add_argument("--speakers", default="", help='name speakers: "SPEAKER_00=Ana,SPEAKER_01=Tom"')
    m.add_argument("--format", choices=FORMATS, default="md",
                   help="what to print: md minutes (default), json (everything), srt, vtt, "
                        "rttm, summary (the summary's JSON)")
    m.add_argument("--out", help="write every format into this folder instead")
    m.add_argument("--acl", default="", help="who may find it with ask (default: everyone)")
    m.add_argument("--tenant", default="default")
    m.add_argument("--collection", default="meetings")
    m.add_argument("--redact", default="", help="mask personal data: email,phone,card,iban,ssn")
    m.add_argument("--redact-names", action="store_true", help="also mask the participants' names")
    m.add_argument("--no-disfluencies", action="store_true", help='drop "um", "uh" and stutters')
    m.add_argument("--no-summary", action="store_true")
    m.add_argument("--no-index", action="store_true", help="do not make it searchable")
    m.add_argument("--model", help="ASR model: whisper-base (default) or whisper-tiny.en")
    m.add_argument("--timeout", type=float, default=None)
    m.add_argument("--progress", action="store_true", help="print each stage's progress on stderr")
    m.add_argument("--set", **setting)
    return {"meeting": cmd_meeting}
