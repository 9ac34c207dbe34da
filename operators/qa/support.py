"""Does a passage support a sentence? A lexical test, fast and explainable.

A sentence is supported by a passage when most of its content words occur in the passage
(after lower-casing and a light suffix stemming) and every number it states occurs there
too. It cannot tell "X causes Y" from "X does not cause Y" when both are worded alike;
it does catch what small models get wrong most: facts, names and figures that are not in
the cited text. The quote is the passage sentence that shares the most content words.
"""
from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A sentence ends at . ! ? before a space (so "3.5" stays whole), but not after a known
# abbreviation ("e.g.", "Dr.") or a list number at the start of a line ("1.").
SENTENCE = re.compile(
    r"(?:^[ \t]*\d{1,2}\.[ \t]+)?[^\n]+?"
    r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bMrs)(?<!\bNo)"
    r"(?<!\bFig)(?<!\bal)(?:[.!?]+[\"')\]]*(?=\s|$)|(?=\n)|$)", re.MULTILINE)
LEADING_CITATIONS = re.compile(r"^((?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\]\s*)+)")
CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves may might must
shall also however therefore thus according document documents passage says said stated
""".split())


def stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ational", "ations", "ation", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    return w


def content_words(text: str) -> set[str]:
    return {_normal(w) for w in WORD.findall(text)
            if w[0].isdigit() or (len(w) > 1 and w.lower() not in STOPWORDS)}


def _normal(word: str) -> str:
    return word.replace(",", "") if word[0].isdigit() else stem(word)


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def support(sentence: str, passage: str) -> float:
    """Share of the sentence's content words found in the passage; 0 if a number is missing."""
    words = content_words(strip_citations(sentence))
    if not words:             # "[1]", "1.", "Yes." say nothing a passage could support
        return 0.0
    if not numbers(strip_citations(sentence)) <= numbers(passage):
        return 0.0
    return len(words & content_words(passage)) / len(words)


def restates(sentence: str, question: str) -> bool:
    """True when the sentence adds no content word to the question ("There should be one."
    for "should there be one?"): it passes a lexical test without answering anything."""
    return content_words(strip_citations(sentence)) <= content_words(question)


def best_quote(sentence: str, passage: str) -> tuple[int, int]:
    """The [start, end) of the passage sentence sharing the most content words with `sentence`."""
    target = content_words(strip_citations(sentence))
    best, span = -1.0, (0, len(passage))
    for m in SENTENCE.finditer(passage):
        if not m.group().strip():
            continue
        overlap = len(target & content_words(m.group()))
        if overlap > best:
            best = overlap
            start, end = m.span()
            while start < end and passage[start].isspace():
                start += 1
            while end > start and passage[end - 1].isspace():
                end -= 1
            span = (start, end)
    return span


def citations(sentence: str) -> list[int]:
    """The [n] numbers a sentence cites, in order, without repeats."""
    seen: list[int] = []
    for group in CITATION.findall(sentence):
        for n in group.split(","):
            if int(n) not in seen:
                seen.append(int(n))
    return seen


def strip_citations(sentence: str) -> str:
    text = CITATION.sub("", sentence)
    return re.sub(r"\s+([.!?,;:])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()


ONLY_CITATIONS = re.compile(r"(\[\d{1,3}(?:\s*,\s*\d{1,3})*\]\s*)+[.!?]?")


def sentences(text: str) -> list[str]:
    """Answer sentences; a citation after the full stop ("… end. [2]") stays with its sentence."""
    out: list[str] = []
    for m in SENTENCE.finditer(text):
        piece = m.group().strip()
        if not piece:
            continue
        if out and ONLY_CITATIONS.fullmatch(piece):
            out[-1] = f"{out[-1]} {piece}"
            continue
        lead = LEADING_CITATIONS.match(piece)
        if out and lead:   # "… end. [2] Next": the [2] belongs to the sentence before
            out[-1] = f"{out[-1]} {lead.group().strip()}"
            piece = piece[lead.end():].strip()
        if piece:
            out.append(piece)
    return out
