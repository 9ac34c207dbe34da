"""Who may read which document, and which documents a query asks for, as one SQL condition.

Both searches use this one condition so they cannot disagree: the keyword search puts it in
the WHERE clause of its BM25 query, and the vector search runs it once per (tenant, readable
entries, collections, filters) to build the mask it applies before taking its top k.

The rule is Principal.may_read: the document's tenant is the principal's, and its ACL holds
"*", "user:<user>" or one of the principal's groups (exactly the entries of
Principal.readable). ACL entries live one per row in `acl` (primary key (doc, entry)), so the
check is an index probe, not a scan of a JSON list.
"""
from __future__ import annotations

from typing import Any

from schemas.documents import Principal


def document_filter(principal: Principal, collections: list[str],
                    filters: dict[str, str], alias: str = "d") -> tuple[str, list[Any]]:
    """(SQL condition on documents AS alias, its parameters); live documents only."""
    readable = principal.readable
    clauses = [
        f"{alias}.version IS NOT NULL",
        f"{alias}.tenant = ?",
        f"EXISTS (SELECT 1 FROM acl AS a WHERE a.doc = {alias}.id "
        f"AND a.entry IN ({_marks(readable)}))",
    ]
    params: list[Any] = [principal.tenant, *readable]
    if collections:
        clauses.append(f"{alias}.collection IN ({_marks(collections)})")
        params += collections
    for key, value in sorted(filters.items()):
        clauses.append(f"EXISTS (SELECT 1 FROM doc_meta AS m WHERE m.doc = {alias}.id "
                       "AND m.key = ? AND m.value = ?)")
        params += [key, value]
    return " AND ".join(clauses), params


def filter_key(principal: Principal, collections: list[str],
               filters: dict[str, str]) -> tuple:
    """What the condition depends on: the cache key of a vector mask."""
    return (principal.tenant, tuple(principal.readable), tuple(sorted(set(collections))),
            tuple(sorted(filters.items())))


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))
