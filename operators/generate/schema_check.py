"""What a grammar cannot enforce, checked after decoding.

llama.cpp's JSON-Schema grammar enforces structure, types, enums, string lengths and list
lengths, but not numeric bounds: "confidence" with maximum 1 can still come out as 3. Such an
answer must become a clear failure, never a silently wrong object.
"""
from __future__ import annotations

from typing import Any

BOUNDS = (("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b),
          ("exclusiveMinimum", lambda v, b: v > b), ("exclusiveMaximum", lambda v, b: v < b))


def bound_violations(value: Any, schema: dict, path: str = "$") -> list[str]:
    """Every numeric bound of `schema` that `value` breaks, each with its JSON path."""
    found: list[str] = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        found += [f"{path} = {value} breaks {key} {schema[key]}"
                  for key, ok in BOUNDS if key in schema and not ok(value, schema[key])]
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                found += bound_violations(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += bound_violations(item, schema["items"], f"{path}[{i}]")
    return found


def small_ranges_as_enums(schema: Any, limit: int = 64) -> Any:
    """Integer ranges of at most `limit` values become enums, which the grammar does enforce."""
    if isinstance(schema, list):
        return [small_ranges_as_enums(s, limit) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: small_ranges_as_enums(v, limit) for k, v in schema.items()}
    lo, hi = out.get("minimum"), out.get("maximum")
    if out.get("type") == "integer" and isinstance(lo, int) and isinstance(hi, int) and 0 <= hi - lo < limit:
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(lo, hi + 1))
    return out
