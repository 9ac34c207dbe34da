"""Every subject, stream and bucket name, derived in one place.

    {ns}.{topology}.{edge}.{key}      an edge; key is the job id (durable) or session id
    {ns}.{topology}._progress.{job}   progress events
    {ns}.{topology}._dead.{operator}  dead letters (the reason and the original message)
    {ns}.{topology}._cancel.{key}     Cancel for a session or job (barge-in): all replicas hear it

The namespace defaults to "pw"; tests give each run its own, so runs never collide.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
NO_KEY = "_"


def valid_token(token: str) -> bool:
    """A subject token that cannot escape its place (no '.', '*', '>' or spaces)."""
    return bool(_TOKEN.match(token))


class Subjects:
    def __init__(self, topology: str, namespace: str = "pw"):
        for label, value in (("topology name", topology), ("namespace", namespace)):
            if not _NAME.match(value):  # stream names upper-case: keep the mapping one-to-one
                raise ValueError(f"{label} {value!r} must match [a-z0-9_]+")
        self.topology = topology
        self.namespace = namespace
        self.root = f"{namespace}.{topology}"

    def edge(self, edge: str, key: str = "") -> str:
        return f"{self.root}.{edge}.{key or NO_KEY}"

    def edge_filter(self, edge: str) -> str:
        return f"{self.root}.{edge}.>"

    def progress(self, job: str = "") -> str:
        return f"{self.root}._progress.{job or NO_KEY}"

    def cancel(self, key: str = "") -> str:
        """Cancel control for a session or job: every replica of every operator listens."""
        return f"{self.root}._cancel.{key or NO_KEY}"

    def dead_letter(self, operator: str) -> str:
        return f"{self.root}._dead.{operator}"

    def _stream(self, suffix: str) -> str:
        return f"{self.namespace}_{self.topology}_{suffix}".upper()

    @property
    def work_stream(self) -> str:
        """Work-queue stream: durable edges that an operator consumes."""
        return self._stream("work")

    @property
    def events_stream(self) -> str:
        """Limits stream: results, errors, progress and dead letters, kept for reading."""
        return self._stream("events")

    @property
    def bucket(self) -> str:
        """Object-store bucket for large payloads."""
        return f"{self.namespace}_{self.topology}_blobs"

    def events_subjects(self, edges: list[str]) -> list[str]:
        return [self.edge_filter(e) for e in edges] + [
            f"{self.root}._progress.>", f"{self.root}._dead.>"]
