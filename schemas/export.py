"""`patchwire schemas`: JSON Schema for every wire message."""
from __future__ import annotations

import msgspec

from schemas import MESSAGE_TYPES


def json_schemas() -> dict:
    """One document: a component per message type, plus the tagged union of all."""
    types = list(MESSAGE_TYPES.values())
    (_, components) = msgspec.json.schema_components(types)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "patchwire wire messages",
        "description": "MessagePack on the wire; each message carries its type in 'kind'.",
        "anyOf": [{"$ref": f"#/$defs/{t.__name__}"} for t in types],
        "$defs": components,
    }
