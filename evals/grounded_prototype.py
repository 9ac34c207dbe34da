"""A proposed verifier rule, measured on the cached drafts: drop sentences that only restate
the question.

The lexical test counts a sentence as supported when most of its content words occur in
the passage. Passages are retrieved *because* they share the question's words, so a
sentence made only of the question's words passes whatever it claims: "There should be
one." (question: "there should be one"), "The park is still available." (the passage says
it closed), "The three concepts are [1], [2], and [3]." (citations standing in for the
answer: stripped, nothing is left but the question). And a sentence of citations alone
("[1]") has no content word at all, which support() scores 1.0.

Rule: a sentence must hold at least one content word the question does not; otherwise it
is removed ("restates the question"), and when nothing is left the answer abstains. The
verifier decides each sentence on its own, so applying the rule to its output is the same
as applying it inside; every judge verdict needed is already in the records.
"""
from __future__ import annotations

from operators.qa.assemble import NOT_FOUND
from operators.qa.support import content_words
from operators.qa.verify import CLOSEST

REASON = "restates the question: nothing in it that a passage could support"


def informative(sentence: str, question: str) -> bool:
    return bool(content_words(sentence) - content_words(question))


def with_rule(record: dict) -> dict:
    """The record as the verifier with the rule would have produced it."""
    question = record["question"]
    drafted = [{**c, "removed": c["removed"] or not informative(c["sentence"], question)}
               for c in record["draft_claims"]]
    if record["outcome"] != "answered":
        return {**record, "draft_claims": drafted}
    kept = [c for c in record["answer_claims"] if informative(c["sentence"], question)]
    dropped = [f"{c['sentence']} — {REASON}" for c in record["answer_claims"] if c not in kept]
    return {**record, "draft_claims": drafted, "answer_claims": kept,
            "outcome": "answered" if kept else "abstained",
            "answer": " ".join(c["sentence"] for c in kept) or NOT_FOUND + CLOSEST, "removed": record["removed"] + dropped}
