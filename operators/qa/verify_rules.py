"""The citation check: every answer sentence must be supported by a passage it cites.

For each sentence of the draft:
  - cites [n] and passage n supports it            → kept, with a quote from passage n;
  - cites passages that do not support it, or cites none, but another passage given to the
    model does support it (small models misnumber) → kept, citing the passage that does;
  - otherwise                                      → removed, with the reason.
A sentence that only restates the question is removed too: it passes a lexical test without
answering. When nothing is left, or the model said it could not find the answer, the answer
abstains.
"""
from __future__ import annotations

import re

import msgspec

from operators.qa.assemble import NOT_FOUND
from operators.qa.support import (best_quote, citations, restates, sentences, strip_citations,
                                  support)
from schemas.documents import Citation, Passage


class Checked(msgspec.Struct, frozen=True, kw_only=True):
    text: str                        # the verified answer, citations renumbered
    citations: list[Citation] = []
    removed: list[str] = []          # "sentence — reason"
    abstained: bool = False


NOT_FOUND_PHRASES = re.compile(
    r"\b(?:could not|cannot|can't|couldn't|unable to) find\b|\b(?:do|does) not (?:contain|"
    r"mention|say|provide|include)\b|\bno (?:information|mention)\b|\bnot (?:mentioned|"
    r"provided|stated|specified) in the (?:documents?|passages?|context)\b", re.IGNORECASE)


def said_not_found(text: str) -> bool:
    """The model's own "the documents do not say" (worded many ways), at the answer's start."""
    head = text.strip()
    return head.lower().startswith(NOT_FOUND.lower()[:24]) or bool(
        NOT_FOUND_PHRASES.search(head[:160]) and len(head) < 240)


def check(draft: str, passages: list[Passage], threshold: float = 0.6,
          question: str = "") -> Checked:
    if said_not_found(draft) or not draft.strip():
        return Checked(text=NOT_FOUND, abstained=True)
    kept: list[tuple[str, int]] = []       # (sentence without citations, passage index)
    removed: list[str] = []
    for sentence in sentences(draft):
        if said_not_found(sentence):
            continue
        if question and restates(sentence, question):
            removed.append(f"{strip_citations(sentence)} — adds nothing to the question")
            continue
        which, reason = _supporting(sentence, passages, threshold)
        if which is None:
            removed.append(f"{strip_citations(sentence)} — {reason}")
        else:
            kept.append((sentence, which))
    if not kept:
        return Checked(text=NOT_FOUND, removed=removed, abstained=True)
    return _renumbered(kept, passages, removed)


def _supporting(sentence: str, passages: list[Passage], threshold: float) -> tuple[int | None, str]:
    cited = [n - 1 for n in citations(sentence) if 1 <= n <= len(passages)]
    scores = {i: support(sentence, passages[i].text) for i in range(len(passages))}
    for i in cited:
        if scores[i] >= threshold:
            return i, ""
    best = max(scores, key=scores.get, default=None)
    if best is not None and scores[best] >= threshold:
        return best, ""
    if not cited:
        return None, "cites no document and no document supports it"
    return None, f"not supported by the documents it cites ({_fmt(cited)})"


def _fmt(indexes: list[int]) -> str:
    return ", ".join(f"[{i + 1}]" for i in indexes)


def _renumbered(kept: list[tuple[str, int]], passages: list[Passage],
                removed: list[str]) -> Checked:
    """Citations numbered in the order the answer first uses them, each with its quote."""
    number: dict[int, int] = {}
    cites: list[Citation] = []
    out: list[str] = []
    for sentence, i in kept:
        if i not in number:
            number[i] = len(number) + 1
            cites.append(_citation(number[i], passages[i], sentence))
        out.append(f"{strip_citations(sentence).rstrip()} [{number[i]}]")
    return Checked(text=" ".join(_tidy(s) for s in out), citations=cites, removed=removed)


def _tidy(sentence: str) -> str:
    """"Paris is big. [1]" → "Paris is big [1]." so the mark sits inside the sentence."""
    body, _, mark = sentence.rpartition(" [")
    body = body.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else "."
    return f"{body.rstrip('.!?')} [{mark}{end}"


def _citation(n: int, p: Passage, sentence: str) -> Citation:
    start, end = best_quote(sentence, p.text)
    return Citation(n=n, chunk_id=p.chunk_id, key=p.key, title=p.title,
                    section_path=p.section_path, start=p.start + start, end=p.start + end,
                    quote=p.text[start:end])
