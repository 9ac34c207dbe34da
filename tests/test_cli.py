"""The command line: schemas, check, trace, and its errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import msgspec
import pytest

from schemas import MESSAGE_TYPES, Transcript, TranscriptSegment
from tests.conftest import ROOT


def patchwire(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "topology.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_schemas_export_every_message_as_json_schema(tmp_path):
    out = tmp_path / "schemas.json"
    assert patchwire("schemas", "--out", str(out)).returncode == 0
    doc = json.loads(out.read_text())
    assert set(MESSAGE_TYPES) <= set(doc["$defs"])
    assert doc["$defs"]["Transcript"]["properties"]["kind"]["enum"] == ["Transcript"]


def test_json_schema_validates_a_real_message():
    schema = msgspec.json.schema(Transcript)
    doc = msgspec.to_builtins(Transcript(job_id="j", segments=[TranscriptSegment(start=0, end=1, text="hi")]))
    assert doc["kind"] == "Transcript" and "job_id" in schema["$defs"]["Transcript"]["required"]


def test_check_accepts_transcribe_and_names_the_path_of_an_error(tmp_path):
    ok = patchwire("check", "topology/transcribe.yaml")
    assert ok.returncode == 0 and "ok (3 operators" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "topology/transcribe.yaml").read_text().replace("input: speech", "input: speach"))
    res = patchwire("check", str(bad))
    assert res.returncode == 2
    assert "$.operators[2].input: no edge named 'speach'" in res.stderr


def test_transcribe_missing_file_is_a_clear_error():
    res = patchwire("transcribe", "/nonexistent/file.wav")
    assert res.returncode == 2 and "no such file" in res.stderr


def test_trace_of_unknown_job_says_where_it_looked(tmp_path):
    res = patchwire("trace", "jnothing", "--file", str(tmp_path / "spans.jsonl"))
    assert res.returncode == 1 and "jnothing" in res.stderr


@pytest.mark.parametrize("setting", ["asr.model=whisper-huge", "nobody.x=1"])
def test_bad_setting_is_rejected_before_anything_runs(setting):
    res = patchwire("check", "topology/transcribe.yaml", "--set", setting)
    assert res.returncode == 2 and res.stderr.startswith("patchwire:")


def test_models_lists_every_model_verified():
    res = patchwire("models")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("whisper-tiny.en", "whisper-base", "silero-vad"):
        line = next(line for line in res.stdout.splitlines() if line.startswith(name))
        assert " ok " in line


def test_operators_never_import_nats():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "operators").rglob("*.py")
                 if any(line.lstrip().startswith(("import nats", "from nats", "import faststream",
                                                  "from faststream", "from topology", "import topology"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
