"""Peak memory of `patchwire up topology/transcribe.yaml`, idle and while transcribing.

Used by loadtests/transcribe.py (`--skip-rtf --skip-bus` runs only this part). The `up`
process runs with PATCHWIRE_DATA_DIR in a temp dir, so it starts its own nats-server; jobs are
sent by `patchwire transcribe FILE` with NATS_URL set. A thread reads /proc/<pid>/status every
50 ms for the `up` process and for its nats-server child and keeps, per phase, the largest
VmRSS seen and the VmHWM (the kernel's own peak, cumulative since the process started).
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r" up on (nats://\S+)")
PERIOD_S = 0.05
ABOUT = ("Peak memory of `python -m topology.cli up topology/transcribe.yaml` "
         "(PATCHWIRE_DATA_DIR in a temp dir, so it starts its own nats-server child), "
         "sampled from /proc/<pid>/status every 50 ms. Jobs are sent one at a time by "
         "`NATS_URL=<url> python -m topology.cli transcribe FILE` (a separate process, not "
         "counted). The asr operator loads its model in `start()`, before the ready line, "
         "so 'idle after startup' already holds the model; 'idle after' a job shows what "
         "the first inference adds (buffers, arenas).")


def parse_status(text: str) -> dict[str, int]:
    """The Vm* lines of /proc/<pid>/status, in kB: {"VmRSS": 123456, "VmHWM": ...}."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            fields[key] = int(value.split()[0])
    return fields


def parse_up_url(line: str) -> str | None:
    """The NATS URL from `patchwire up`'s ready line, or None for any other line."""
    found = READY.search(line)
    return found.group(1).rstrip(";,") if found else None


def read_status(pid: int) -> dict[str, int]:
    try:
        return parse_status(Path(f"/proc/{pid}/status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return {}


def children(pid: int) -> list[int]:
    """Direct children of pid (every thread's children file; a scan of /proc if unsupported)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            return [int(p.name) for p in Path("/proc").glob("[0-9]*") if _ppid(p) == pid]
    return found


def _ppid(proc_dir: Path) -> int:
    try:
        return int(proc_dir.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


class Sampler(threading.Thread):
    """Samples the `up` process and its nats-server child; figures are kept per phase, in kB."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pids = {"up": pid}
        self.phase = "startup"
        self.peaks: dict[str, dict[str, int]] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(PERIOD_S):
            self.sample()

    def sample(self) -> None:
        if "nats-server" not in self.pids:
            kids = [c for c in children(self.pids["up"]) if "nats-server" in _cmdline(c)]
            self.pids.update({"nats-server": kids[0]} if kids else {})
        peaks = self.peaks.setdefault(self.phase, {})
        for name, pid in list(self.pids.items()):
            status = read_status(pid)
            if status:
                peaks[f"{name} rss"] = max(peaks.get(f"{name} rss", 0), status.get("VmRSS", 0))
                peaks[f"{name} hwm"] = status.get("VmHWM", 0)

    def enter(self, phase: str) -> None:
        self.sample()          # close the previous phase with a last reading
        self.phase = phase
        self.sample()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def spawn_up(data_dir: Path, log_path: Path) -> subprocess.Popen:
    """`patchwire up topology/transcribe.yaml` with its own nats-server (no NATS_URL)."""
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update(PATCHWIRE_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "topology.cli", "up", "topology/transcribe.yaml"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, stderr=log)


def ready_url(proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> str:
    """The URL from the ready line; stops the process and raises if it never comes."""
    url = _wait_ready(proc, timeout)
    if url is None:
        stop_up(proc)
        raise RuntimeError(f"patchwire up did not get ready: {log_path.read_text()[-2000:]}")
    return url


def _wait_ready(proc: subprocess.Popen, timeout: float) -> str | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            url = parse_up_url(proc.stdout.readline())
            if url:
                return url
    return None


def stop_up(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def send_job(url: str, path: Path, timeout: float) -> tuple[float, str]:
    """`patchwire transcribe` against the running deployment: (seconds, "" or the error)."""
    env = {**os.environ, "NATS_URL": url, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "topology.cli", "transcribe", str(path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, f"no transcript after {timeout:.0f} s"
    error = "" if done.returncode == 0 else f"rc {done.returncode}: {done.stderr.strip()[-1000:]}"
    return time.perf_counter() - started, error


def measure(jobs: list[tuple[str, Path]], workdir: Path, idle_s: float = 3.0,
            timeout: float = 1800.0) -> list[dict]:
    """Phases in order: startup, idle, then per job: transcribing it, idle after it."""
    started = time.perf_counter()
    proc = spawn_up(workdir / "data", workdir / "up.log")
    sampler = Sampler(proc.pid)
    sampler.start()
    url = ready_url(proc, workdir / "up.log")
    times = {"startup": time.perf_counter() - started}
    errors: dict[str, str] = {}
    try:
        _phase(sampler, times, "idle after startup", lambda: time.sleep(idle_s))
        for label, path in jobs:
            errors[f"transcribing {label}"] = _phase(sampler, times, f"transcribing {label}",
                                                     lambda p=path: send_job(url, p, timeout)[1])
            _phase(sampler, times, f"idle after {label}", lambda: time.sleep(idle_s))
    finally:
        sampler.enter("stopping")
        sampler.stopped.set()
        stop_up(proc)
    return [{"phase": p, "seconds": round(times.get(p, 0.0), 2), **_mb(sampler.peaks.get(p, {})),
             "error": errors.get(p) or ""} for p in times]


def _phase(sampler: Sampler, times: dict, name: str, work) -> object:
    sampler.enter(name)
    started = time.perf_counter()
    result = work()
    times[name] = time.perf_counter() - started
    return result


def _mb(peaks: dict[str, int]) -> dict[str, float]:
    return {key: round(kb / 1024, 1) for key, kb in peaks.items()}


def table(rows: list[dict]) -> list[str]:
    """Markdown: one row per phase, MiB."""
    lines = ["| phase | s | `up` max VmRSS MiB | `up` VmHWM MiB | nats-server max VmRSS MiB | "
             "nats-server VmHWM MiB |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [r.get(k, "–") for k in ("up rss", "up hwm", "nats-server rss", "nats-server hwm")]
        note = f" (**error**: {r['error']})" if r.get("error") else ""
        lines.append(f"| {r['phase']}{note} | {r['seconds']} | " + " | ".join(map(str, cells)) + " |")
    return lines


def peak_ratio(rows: list[dict], short: str, long: str, key: str = "up rss") -> float | None:
    """max VmRSS while transcribing `long` / while transcribing `short`."""
    by_phase = {r["phase"]: r for r in rows}
    a, b = by_phase.get(f"transcribing {short}", {}), by_phase.get(f"transcribing {long}", {})
    return round(b[key] / a[key], 3) if a.get(key) and b.get(key) else None


def section(rows: list[dict], labels: list[str]) -> list[str]:
    lines = table(rows) + [""]
    for key in ("up rss", "nats-server rss"):
        for short in labels[:-1]:
            ratio = peak_ratio(rows, short, labels[-1], key)
            lines.append(f"- {key.split()[0]} max VmRSS while transcribing, {labels[-1]} / {short}: "
                         f"**{ratio}**")
    return lines + ["- no target; VmHWM is cumulative (the process's peak so far), max VmRSS is per phase"]
