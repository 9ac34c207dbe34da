"""Topology YAML: msgspec Structs, loaded with errors that name the path ($.operators[2].input)."""
from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml


class Mode(str, enum.Enum):
    DURABLE = "durable"    # JetStream work queue: at-least-once, job-keyed, redelivered
    REALTIME = "realtime"  # core NATS: at-most-once, bounded queues that drop and count


class Edge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: str
    mode: Mode = Mode.DURABLE
    description: str = ""


class OperatorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: str
    input: str
    output: str | None = None
    engine: str = "embedded"
    config: dict[str, Any] = {}
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1  # messages in flight per replica
    queue: Annotated[int, msgspec.Meta(ge=1)] = 256  # realtime: buffered before drops are counted
    # realtime: one session's messages are handled in order, one at a time (sessions are
    # spread over `concurrency` workers); for operators that keep per-session stream state
    ordered: bool = False
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0


Positive = Annotated[float, msgspec.Meta(gt=0)]


class Durability(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ack_wait_s: Positive = 30.0
    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 5
    backoff_s: tuple[Annotated[float, msgspec.Meta(ge=0)], ...] = (1.0, 5.0, 30.0)
    duplicate_window_s: Positive = 24 * 3600.0  # outputs of a redelivered job are dropped within it
    max_age_s: Positive = 7 * 24 * 3600.0
    stall_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0  # no progress this long: retry (0: never)

    def backoff(self, attempt: int, empty: float = 0.0) -> float:
        """The delay before redelivering after `attempt`; the last one repeats."""
        if not self.backoff_s:
            return empty
        return self.backoff_s[min(max(attempt, 1), len(self.backoff_s)) - 1]


class GatewaySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The HTTP gateway `patchwire up` serves for a product (its page, JSON and SSE)."""

    service: str                          # "qa" (document QA), "meetings", "voice"
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    users: str = ""                       # users file (tokens → principals); "" = anonymous


class TopologySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    edges: dict[str, Edge]
    operators: list[OperatorSpec]
    inputs: list[str]
    outputs: list[str] = []
    errors: str = "errors"
    description: str = ""
    durability: Durability = Durability()
    gateway: GatewaySpec | None = None

    def operator(self, name: str) -> OperatorSpec:
        for op in self.operators:
            if op.name == name:
                return op
        known = ", ".join(o.name for o in self.operators)
        raise TopologyError("$.operators", f"no operator named {name!r} (known: {known})")

    def index_of(self, name: str) -> int:
        return [o.name for o in self.operators].index(name)


class TopologyError(ValueError):
    """A topology that cannot run; `path` points into the YAML."""

    def __init__(self, path: str, message: str, source: str = ""):
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}")
        self.path = path
        self.reason = message


def _split_msgspec_error(err: msgspec.ValidationError) -> tuple[str, str]:
    text = str(err)
    if " - at `" in text:
        message, _, rest = text.rpartition(" - at `")
        return rest.rstrip("`"), message
    return "$", text


def parse(text: str, source: str = "<topology>") -> TopologySpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TopologyError("$", f"not valid YAML: {e}", source) from None
    if not isinstance(raw, dict):
        raise TopologyError("$", "expected a mapping at the top level", source)
    edges = raw.get("edges")
    if isinstance(edges, dict):  # msgspec names dict entries `[...]`; name them ourselves
        for name, edge in edges.items():
            try:
                msgspec.convert(edge, Edge)
            except msgspec.ValidationError as e:
                path, message = _split_msgspec_error(e)
                raise TopologyError(f"$.edges.{name}{path[1:]}", message, source) from None
    try:
        return msgspec.convert(raw, TopologySpec)
    except msgspec.ValidationError as e:
        path, message = _split_msgspec_error(e)
        raise TopologyError(path, message, source) from None


def load(path: str | Path) -> TopologySpec:
    p = Path(path)
    if not p.exists():
        raise TopologyError("$", f"no such file: {p}", str(p))
    return parse(p.read_text(), str(p))


def convert_config(cls: type, raw: dict[str, Any], path: str) -> Any:
    """An operator's config, validated against its Config Struct, errors prefixed with `path`."""
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as e:
        sub, message = _split_msgspec_error(e)
        raise TopologyError(path + sub[1:], message) from None


def override(topo: TopologySpec, settings: list[str]) -> TopologySpec:
    """Apply `operator.key=value` settings (values parsed as YAML) to operator configs."""
    ops = list(topo.operators)
    for setting in settings:
        target, eq, value = setting.partition("=")
        name, dot, key = target.partition(".")
        if not eq or not dot or not key:
            raise TopologyError("--set", f"{setting!r}: expected OPERATOR.KEY=VALUE")
        i = topo.index_of(topo.operator(name).name)
        field = key.split(".", 1)[0]
        if field in ("engine", "concurrency", "queue"):
            ops[i] = msgspec.structs.replace(ops[i], **{field: yaml.safe_load(value)})
        else:
            ops[i] = msgspec.structs.replace(ops[i], config={**ops[i].config, key: yaml.safe_load(value)})
    raw = msgspec.to_builtins(msgspec.structs.replace(topo, operators=ops))
    try:  # validate again: replace() does not
        return msgspec.convert(raw, TopologySpec)
    except msgspec.ValidationError as e:
        path, message = _split_msgspec_error(e)
        raise TopologyError(path, f"{message} (after --set)") from None
