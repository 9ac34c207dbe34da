"""The wire base: every message is a tagged, frozen msgspec Struct encoded as MessagePack.

Evolution rules (see schemas/EVOLUTION.md): new fields get defaults, nothing is retyped,
a tag is never reused. Wire messages never forbid unknown fields, so a newer producer does
not break an older consumer during a rolling upgrade.
"""
from __future__ import annotations

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag=True):
    """Base of every message on a subject. The tag is the class name."""


class ObjectRef(msgspec.Struct, frozen=True, kw_only=True):
    """A large payload kept in the JetStream Object Store (or any blob store)."""

    bucket: str
    name: str
    size: int = 0
    sha256: str = ""
    content_type: str = ""


# Header names: session, trace context and deadline travel in headers, not in bodies.
class Headers:
    JOB = "Pw-Job"
    SESSION = "Pw-Session"
    DEADLINE = "Pw-Deadline"  # absolute unix time in seconds (float, as text)
    PRIORITY = "Pw-Priority"  # "immediate": skip the session's line in an ordered operator
    TRACEPARENT = "traceparent"
    TRACESTATE = "tracestate"
    MSG_ID = "Nats-Msg-Id"
    CONTENT_TYPE = "Content-Type"


# Every body is MessagePack. Publishers outside patchwire may say so in Content-Type; the
# runner does not add the header (each nats-py header costs throughput on the hot path).
CONTENT_TYPE = "application/msgpack"


def _numpy_scalar(obj):
    """Operators compute with numpy; a numpy scalar goes on the wire as the Python number."""
    item = getattr(obj, "item", None)
    if item is not None and type(obj).__module__ == "numpy":
        return item()
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


def encoder() -> msgspec.msgpack.Encoder:
    """The one encoder for the wire (numpy scalars allowed)."""
    return msgspec.msgpack.Encoder(enc_hook=_numpy_scalar)


def decoder(kind: type) -> msgspec.msgpack.Decoder:
    """A typed decoder, to be created once per subject and reused."""
    return msgspec.msgpack.Decoder(kind)
