"""Keyword search: user text → a safe FTS5 MATCH expression, and the BM25 query itself.

FTS5's query language gives meaning to `"`, `*`, `^`, `:`, `-`, `(`, `)`, AND/OR/NOT/NEAR;
a question typed by a person (`"foo" AND (bar`, `NEAR*`, `-x`) would either raise a syntax
error or silently mean something else. So the text is never passed through: it is cut into
word tokens (Unicode letters and digits), each token becomes a quoted string (inside quotes
FTS5 treats everything as text, and the table's tokenizer, porter + unicode61, still stems it),
and the tokens are OR-ed. BM25 then ranks chunks by how many of the rarer terms they hold.

Very common English words are dropped first: OR-ing "the" makes nearly every chunk a match,
which costs time (every match is scored) and adds noise to the ranking. When a question is
made of stop words only ("what is it"), they are kept, so it still finds something.

Permissions and filters are part of the same SQL statement (operators/store/filters.py), so
the LIMIT applies to readable chunks only.
"""
from __future__ import annotations

import re
import sqlite3

from operators.store.engine import SearchQuery
from operators.store.filters import document_filter

# FTS5 column weights for bm25(): the chunk's own text counts most; the document title and
# section headings repeat on every chunk of a section, so a match there says less.
WEIGHTS = (1.0, 0.4, 0.4)      # text, title, section_path
MAX_TERMS = 32                 # a pasted page should not become a 500-way OR

_WORD = re.compile(r"[^\W_]+")   # letters and digits; `_` and punctuation separate words
STOP_WORDS = frozenset("""
a an and are as at be been but by can could did do does for from had has have how i if in
into is it its may me my no not of on or our she should so such than that the their them
then there these they this to was we were what when where which who whom why will with
would you your
""".split())


def terms(text: str) -> list[str]:
    """The distinct lower-cased word tokens of `text` worth searching for, in order."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    content = [w for w in words if w not in STOP_WORDS]
    return (content or words)[:MAX_TERMS]


def match_expression(text: str) -> str | None:
    """`"term1" OR "term2" …`, or None when the text has no word at all."""
    found = terms(text)
    return " OR ".join(f'"{t}"' for t in found) if found else None


def keyword_search(conn: sqlite3.Connection, query: SearchQuery, n: int) -> list[tuple[int, float]]:
    """The n best readable live chunks for query.text: (chunk rowid, BM25 score, larger better).

    CROSS JOIN pins the join order: the FTS index yields its matches first and each is checked
    against its chunk and document; the planner would otherwise be free to walk the tenant's
    documents and probe the full-text index once per chunk.
    """
    match = match_expression(query.text)
    if match is None or n <= 0:
        return []
    where, params = document_filter(query.principal, query.collections, query.filters)
    sql = f"""
        SELECT f.rowid, -bm25(chunks_fts, {', '.join(map(str, WEIGHTS))}) AS score
        FROM chunks_fts AS f
        CROSS JOIN chunks AS c ON c.id = f.rowid
        CROSS JOIN documents AS d ON d.id = c.doc
        WHERE chunks_fts MATCH ? AND d.version = c.version AND {where}
        ORDER BY score DESC, f.rowid
        LIMIT ?"""
    return [(int(r), float(s)) for r, s in conn.execute(sql, [match, *params, n])]
