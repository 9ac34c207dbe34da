"""`patchwire up`: SIGTERM drains in-flight work, then exits cleanly; the job's later stages wait
in their durable queue and finish when the topology is back, exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.audio_fixtures import WENET, needs_data
from tests.conftest import ROOT


@needs_data
@pytest.mark.slow
def test_sigterm_finishes_the_job_in_flight_then_exits(tmp_path, nats_server):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NATS_URL": nats_server.url,
           "PATCHWIRE_NAMESPACE": "tshutdown", "PATCHWIRE_DATA_DIR": str(tmp_path)}
    up = _up(env)
    second = None
    try:
        client = subprocess.Popen([sys.executable, "-m", "topology.cli", "transcribe", "--progress",
                                   str(WENET)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        for line in client.stderr:  # wait until the job is inside the pipeline
            if line.startswith("vad: started"):
                break
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0  # vad's message drained, then a clean exit
        second = _up(env)                # asr's input waited in the work queue
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        assert "sorrow" in out.lower()
        assert err.count("asr: started") == 1 and err.count("vad: done") == 1  # nothing twice
    finally:
        for proc in (up, second):
            if proc is not None and proc.poll() is None:
                proc.kill()


def _up(env: dict) -> subprocess.Popen:
    up = subprocess.Popen([sys.executable, "-m", "topology.cli", "up", "topology/transcribe.yaml"],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert " up on " in up.stdout.readline()
    return up
