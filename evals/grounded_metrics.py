"""The arithmetic of the grounded-answering eval: claims, overlap scores, the summary.

A *claim* is one answer sentence with the passages it cites (0-based indexes into the
passages the model was given). A draft's citations are its [n] marks; an answer's are the
verifier's renumbered [n], mapped back through Citation.chunk_id. Per claim the record
keeps the judge's verdict for each cited passage and the lexical support score, so every
figure here is computed from cached records alone, without a model.

Answer correctness is measured against the reference answer with two overlap scores on
normalised tokens (lower case, punctuation, articles and [n] marks dropped):
token F1 (SQuAD-style, bag of tokens) and ROUGE-L recall (longest common subsequence over
the reference's length: how much of the reference, in order, the answer says).
"""
from __future__ import annotations

import math
import re
import statistics
from collections import Counter

from operators.qa.support import citations, sentences, strip_citations
from operators.qa.verify_rules import said_not_found

ARTICLES = frozenset({"a", "an", "the"})
TOKEN = re.compile(r"[a-z0-9]+")
LEXICAL_THRESHOLD = 0.6     # the verifier's default (VerifyConfig.threshold)


def tokens(text: str) -> list[str]:
    return [t for t in TOKEN.findall(strip_citations(text).lower()) if t not in ARTICLES]


def token_f1(answer: str, reference: str) -> float:
    a, r = tokens(answer), tokens(reference)
    common = sum((Counter(a) & Counter(r)).values())
    if not a or not r or not common:
        return float(not a and not r)
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, one row at a time."""
    row = [0] * (len(b) + 1)            # row[j]: LCS of the a-prefix so far and b[:j]
    for x in a:
        diagonal = 0                    # the previous row's row[j-1]
        for j, y in enumerate(b, 1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l_recall(answer: str, reference: str) -> float:
    r = tokens(reference)
    return lcs(tokens(answer), r) / len(r) if r else 0.0


def draft_claims(text: str, n_passages: int) -> list[dict]:
    """The draft's sentences and the passages each cites; "not found" sentences skipped,
    as the verifier skips them. Out-of-range [n] are counted, not cited."""
    out = []
    for s in sentences(text):
        if said_not_found(s):
            continue
        marks = citations(s)
        out.append({"sentence": strip_citations(s),
                    "cited": [n - 1 for n in marks if 1 <= n <= n_passages],
                    "bad_marks": sum(not 1 <= n <= n_passages for n in marks)})
    return out


def answer_claims(text: str, cited_chunks: dict[int, str], chunk_ids: list[str]) -> list[dict]:
    """The verified answer's sentences; `cited_chunks` maps its [n] to a chunk id, which
    `chunk_ids` (the passages in prompt order) turns back into a passage index."""
    out = []
    for s in sentences(text):
        cited = [chunk_ids.index(cited_chunks[n]) for n in citations(s) if n in cited_chunks]
        out.append({"sentence": strip_citations(s), "cited": cited, "bad_marks": 0})
    return out


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def faithfulness(claims: list[dict], key: str = "judge") -> dict:
    """Share of claims supported by at least one passage they cite (a claim citing nothing
    is unsupported), and share of (claim, cited passage) pairs that support: precision."""
    pairs = [v for c in claims for v in c.get(key, [])]
    supported = sum(any(c.get(key, [])) for c in claims)
    anywhere = [c["judge_any"] for c in claims if "judge_any" in c]
    return {"sentences": len(claims), "supported": _share(supported, len(claims)),
            "citations": len(pairs), "precision": _share(sum(pairs), len(pairs)),
            "uncited": _share(sum(not c["cited"] for c in claims), len(claims)),
            "supported_anywhere": _share(sum(anywhere), len(anywhere))}


def lexical(claims: list[dict], threshold: float = LEXICAL_THRESHOLD) -> dict:
    """The verifier's own test applied to the claims (scores stored per cited passage).
    Supported by any passage, to this test, is what the verifier kept: it keeps a sentence
    exactly when some passage given reaches the threshold."""
    marked = [{**c, "ok": [s >= threshold for s in c.get("lexical", [])]} for c in claims]
    for c in marked:
        c.pop("judge_any", None)
        if "removed" in c:
            c["judge_any"] = not c["removed"]
    return faithfulness(marked, "ok")


def verifier_vs_judge(claims: list[dict]) -> dict[str, int]:
    """The verifier's keep/remove decisions on draft sentences against the judge's verdict
    (supported by any passage given): where the two disagree is where to look."""
    cells = Counter((("removed" if c["removed"] else "kept") + "_" +
                     ("supported" if c["judge_any"] else "unsupported")) for c in claims)
    return {k: cells[k] for k in ("kept_supported", "kept_unsupported", "removed_supported",
                                  "removed_unsupported")}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a share: honest at small n and near 0 or 1."""
    if not total:
        return None
    p, z2 = hits / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _abstained(rows: list[dict]) -> dict:
    """How often the outcome was "abstained", and which step decided it: the model (its
    draft said it could not find the answer) or the verifier (it removed every sentence)."""
    by_model = sum(r["outcome"] == "abstained" and r["draft_not_found"] for r in rows)
    by_verifier = sum(r["outcome"] == "abstained" and not r["draft_not_found"] for r in rows)
    return {"tasks": len(rows), "abstained": _share(by_model + by_verifier, len(rows)),
            "count": by_model + by_verifier, "ci95": wilson(by_model + by_verifier, len(rows)),
            "by_model": _share(by_model, len(rows)), "by_verifier": _share(by_verifier, len(rows))}


def _overlap(rows: list[dict], field: str) -> dict:
    return {"f1": mean([token_f1(r[field], r["target"]) for r in rows]),
            "rouge_l_recall": mean([rouge_l_recall(r[field], r["target"]) for r in rows]),
            "tasks": len(rows)}


def is_claim(claim: dict) -> bool:
    """A piece with a word in it. The sentence splitter also yields list numbers ("1."),
    bare marks ("[1]" → "") and the like: nothing a passage can support or not, so they are
    left out of the faithfulness figures and counted apart."""
    return any(ch.isalpha() for ch in claim["sentence"])


def _faithful(rows: list[dict]) -> dict:
    drafts = [c for r in rows if not r["draft_not_found"] for c in r["draft_claims"]]
    answers = [c for r in rows if r["outcome"] == "answered" for c in r["answer_claims"]]
    fragments = [c for c in drafts if not is_claim(c)]
    drafts, answers = [c for c in drafts if is_claim(c)], [c for c in answers if is_claim(c)]
    return {"judge_draft": faithfulness(drafts), "judge_answer": faithfulness(answers),
            "lexical_draft": lexical(drafts), "verifier_vs_judge": verifier_vs_judge(drafts),
            "fragments": {"drafted": len(fragments),
                          "removed": sum(c["removed"] for c in fragments)}}


def unsupported_answers(rows: list[dict]) -> float | None:
    """Share of tasks answered where the judge supports not one sentence of the answer: a
    wrong answer shown as verified, worse than an abstention."""
    bad = sum(r["outcome"] == "answered" and not any(
        any(c["judge"]) for c in r["answer_claims"] if is_claim(c)) for r in rows)
    return _share(bad, len(rows))


def summarise(records: list[dict], answerable: str = "ANSWERABLE",
              unanswerable: str = "UNANSWERABLE") -> dict:
    """Every figure of the report, from the per-task records."""
    yes = [r for r in records if r["label"] == answerable]
    no = [r for r in records if r["label"] == unanswerable]
    answered = [r for r in yes if r["outcome"] == "answered"]
    return {
        "tasks": {"answerable": len(yes), "unanswerable": len(no)},
        "abstention_unanswerable": _abstained(no),
        "abstention_answerable": _abstained(yes),
        "faithfulness": _faithful(records),
        "faithfulness_answerable": _faithful(yes),
        "correctness": {"answer": _overlap(yes, "answer"), "draft": _overlap(yes, "draft"),
                        "answer_when_answered": _overlap(answered, "answer")},
        "answered_unsupported": {"answerable": unsupported_answers(yes),
                                 "unanswerable": unsupported_answers(no)},
        "removed_sentences": sum(len(r["removed"]) for r in records),
        "time_ms": {k: median([r["ms"][k] for r in records if k in r["ms"]])
                    for k in ("task", "generate", "first_token", "verify", "judge")},
        "total_s": sum(r["ms"].get("task", 0) + r["ms"].get("judge", 0) for r in records) / 1000,
        "tokens": {k: median([r["tokens"][k] for r in records if r["tokens"]])
                   for k in ("prompt", "completion")},
    }
