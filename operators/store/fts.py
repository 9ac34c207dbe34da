"""Keyword search: user text → a safe, selective FTS5 MATCH expression, and the BM25 query.

Safety: FTS5's query language gives meaning to `"`, `*`, `^`, `:`, `-`, `(`, `)`, AND/OR/NOT/
NEAR; a question typed by a person (`"foo" AND (bar`, `NEAR*`, `-x`) would raise a syntax
error or silently mean something else. So the text is never passed through: it is cut into
word tokens (Unicode letters and digits), and each chosen word becomes a quoted string
(inside quotes FTS5 treats everything as text, and the table's tokenizer, porter +
unicode61, still stems it); the words are OR-ed.

Speed: FTS5 scores every row that matches (no WAND-style early exit; a few microseconds a
row for bm25() and the permission join), and with OR one common word ("show", "effects")
matches a large share of all chunks: at 100,000 chunks a typical SciFact question matched
40 % of them and took over 100 ms. Two things bound that work. FTS5 only visits the
principal's tenant: its chunks take one id range (operators/store/schema.py), given as
`rowid BETWEEN`, which FTS5 uses to seek in its posting lists. And the words are split by
how many of the tenant's chunks hold them (counted with a MATCH per word, stopped past the
`common` threshold, so a common word costs no more to count than a rare one):

    selecting words   the rarest, in order, while each is in at most `common` chunks
                      (COMMON_SHARE of the tenant's, never under MIN_COMMON) and their
                      rows add up to at most MAX_POSTINGS; at least one word selects
    scoring words     the rest: `(sel1 OR sel2) AND (sel1 OR sel2 OR sco1 …)` matches
                      exactly the rows of the selecting words, yet bm25() sums over every
                      phrase in the expression, so the common words still rank those rows
                      (the selecting words, written twice, count double: common words get
                      half weight, which suits their low IDF)

On SciFact (5,183 abstracts, 300 test queries, keyword mode) nDCG@10 is 0.686 with every
word and 0.682 with these limits; with the limits scaled to what they are for a tenant of
50,000 chunks (the load test's), 0.646 when the common words are left out entirely and
0.674 when they score as above. A short list of English stop words is dropped first.

Permissions and filters are part of the same SQL statement (operators/store/filters.py), so
the LIMIT applies to readable chunks only.
"""
from __future__ import annotations

import re
import sqlite3

from operators.store.engine import SearchQuery
from operators.store.filters import document_filter
from operators.store.tables import tenant_rows

# FTS5 column weights for bm25(): the chunk's own text counts most; the document title and
# section headings repeat on every chunk of a section, so a match there says less.
WEIGHTS = (1.0, 0.4, 0.4)      # text, title, section_path
MAX_WORDS = 32                 # a pasted page should not become a 500-way OR
COMMON_SHARE = 0.05            # a word in more than this share of chunks is left out …
MIN_COMMON = 1_000             # (but a word in fewer rows than this is never common)
MAX_SCORING = 8                # common words that only score: the rarest few (cost ∝ phrases)
MAX_POSTINGS = 5_000           # the selecting words' rows add up to at most this many
RECOUNT_LIMIT = 4              # all words common: count each up to 4 × common to find the rarest

_WORD = re.compile(r"[^\W_]+")   # letters and digits; `_` and punctuation separate words
STOP_WORDS = frozenset("""
a an and are as at be been but by can could did do does for from had has have how i if in
into is it its may me my no not of on or our she should so such than that the their them
then there these they this to was we were what when where which who whom why will with
would you your
""".split())


def words(text: str) -> list[str]:
    """The distinct lower-cased words of `text` worth searching for, in order."""
    found = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    content = [w for w in found if w not in STOP_WORDS]
    return (content or found)[:MAX_WORDS]


def match_expression(chosen: list[str], scored: list[str] = ()) -> str | None:
    """`"w1" OR "w2"`; with `scored` words: `("w1" OR "w2") AND ("w1" OR "w2" OR "s1" …)`,
    which matches the same rows but lets BM25 count the scored words too."""
    if not chosen:
        return None
    either = " OR ".join(f'"{w}"' for w in chosen)
    if not scored:
        return either
    return f"({either}) AND ({either} OR {' OR '.join(f'{chr(34)}{w}{chr(34)}' for w in scored)})"


def common_above(corpus: int) -> int:
    """The row count above which a word is common in a store of `corpus` chunks."""
    return max(int(COMMON_SHARE * corpus), MIN_COMMON)


def choose(frequencies: dict[str, int], common: int) -> tuple[list[str], list[str]]:
    """(words that select the rows, words that only add to their score); see module doc.

    Words at or under `common` rows select, rarest first, until their rows add up to
    MAX_POSTINGS (at least one word always selects: the rarest, common or not).
    """
    present = sorted((df, w) for w, df in frequencies.items() if df > 0)
    chosen, postings = [], 0
    for df, word in present:
        if chosen and (df > common or postings + df > MAX_POSTINGS):
            break
        chosen.append(word)
        postings += df
    return chosen, [w for _, w in present if w not in chosen][:MAX_SCORING]


class KeywordSearch:
    """BM25 over the live chunks, on the store's connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def search(self, query: SearchQuery, n: int, corpus: int) -> list[tuple[int, float]]:
        """The n best readable live chunks for query.text: (chunk rowid, BM25, larger better);
        `corpus`: how many live chunks the principal's tenant has.

        CROSS JOIN pins the join order: the FTS index yields its matches (in the tenant's id
        range only) and each is checked against its chunk and document; the planner would
        otherwise be free to walk the tenant's documents and probe the index once per chunk.
        """
        rows = tenant_rows(self.conn, query.principal.tenant)
        if rows is None or n <= 0:
            return []
        common = common_above(corpus)
        counts = self.frequencies(words(query.text), common, rows)
        match = match_expression(*choose(counts, common))
        if match is None:
            return []
        where, params = document_filter(query.principal, query.collections, query.filters)
        sql = f"""
            SELECT f.rowid, -bm25(chunks_fts, {', '.join(map(str, WEIGHTS))}) AS score
            FROM chunks_fts AS f
            CROSS JOIN live_chunks AS c ON c.id = f.rowid
            CROSS JOIN documents AS d ON d.id = c.doc
            WHERE chunks_fts MATCH ? AND f.rowid BETWEEN ? AND ? AND {where}
            ORDER BY score DESC, f.rowid
            LIMIT ?"""
        return [(int(r), float(s)) for r, s in
                self.conn.execute(sql, [match, *rows, *params, n])]

    def frequencies(self, found: list[str], common: int,
                    rows: tuple[int, int]) -> dict[str, int]:
        """Each word's number of chunks in the id range `rows`, counted up to common + 1:
        past that the count matters only when every word is common (the rarest of them
        then selects), and is counted on, up to RECOUNT_LIMIT × common, for those."""
        counts = {w: self._count(w, common + 1, rows) for w in found}
        if counts and min(counts.values()) > common:
            counts = {w: self._count(w, RECOUNT_LIMIT * common, rows) for w in found}
        return counts

    def _count(self, word: str, limit: int, rows: tuple[int, int]) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? "
            "AND rowid BETWEEN ? AND ? LIMIT ?)", (f'"{word}"', *rows, limit)).fetchone()[0]
