"""Speaker-attributed word error rate for meetings.

cpWER (concatenated minimum-permutation WER, as CHiME-6 and meeteval define it): every
speaker's words are concatenated in time order, on both sides; hypothesis speakers are
matched one-to-one to reference speakers so that the summed edits are smallest, and a
speaker left without a partner counts whole: all its reference words deleted, or all its
hypothesis words inserted. Words given to the wrong speaker are therefore paid twice, a
deletion in one stream and an insertion in another.

`speaker_free` gives each hypothesis segment whichever reference speaker makes the total
smallest: cpWER with the best segment-level attribution, i.e. the WER with speakers ignored
(the references here are per-speaker texts without word times, so there is no single
time-ordered reference to score plainly).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Callable, NamedTuple

import numpy as np

from evals.normalize import normalize
from evals.wer import _result, align
from operators.diarize.cluster import assign

_SPELLED = re.compile(r"\b((?:[A-Za-z]_)+)")     # AMI spells acronyms letter by letter: L_C_D_
_FRAGMENT = re.compile(r"(?<![\w'])(?![ai]\b)[b-z](?![\w'])", re.IGNORECASE)


class CpWer(NamedTuple):
    errors: int
    words: int                  # reference words, all speakers
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    mapping: dict[str, str]     # hypothesis speaker -> reference speaker ("" when unmatched)


def ami_reference(text: str) -> str:
    """An AMI words_joined transcript as plain text: "L_C_D_" -> "LCD", and the single-letter
    stubs of cut-off words ("too many b buttons") dropped, "a" and "I" kept. Longer stubs
    ("di display") cannot be told from words and stay in the reference."""
    text = _SPELLED.sub(lambda m: m.group(1).replace("_", ""), text)
    return _FRAGMENT.sub(" ", text)


def by_speaker(segments: Sequence) -> dict[str, str]:
    """Each speaker's segment texts, joined in time order (segments with .start, .speaker)."""
    out: dict[str, list[str]] = {}
    for seg in sorted(segments, key=lambda s: s.start):
        out.setdefault(seg.speaker, []).append(seg.text.strip())
    return {speaker: " ".join(texts) for speaker, texts in out.items()}


def cpwer(refs: Mapping[str, str], hyps: Mapping[str, str],
          normalizer: Callable[[str], str] | None = normalize) -> CpWer:
    """cpWER of per-speaker hypothesis texts against per-speaker reference texts."""
    norm = normalizer or (lambda text: text)
    ref_ids, hyp_ids = list(refs), list(hyps)
    size = max(len(ref_ids), len(hyp_ids))
    ref_words = [norm(refs[r]).split() for r in ref_ids] + [[]] * (size - len(ref_ids))
    hyp_words = [norm(hyps[h]).split() for h in hyp_ids] + [[]] * (size - len(hyp_ids))
    # padding makes the matrix square: an unmatched speaker meets an empty one
    edits = [[align(r, h) for h in hyp_words] for r in ref_words]
    pairs = assign(np.array([[sum(e) for e in row] for row in edits], dtype=float))
    s, d, i = (sum(edits[r][h][k] for r, h in pairs) for k in range(3))
    words = sum(len(r) for r in ref_words)
    mapping = {hyp_ids[h]: ref_ids[r] if r < len(ref_ids) else "" for r, h in pairs
               if h < len(hyp_ids)}
    return CpWer(*_result(s, d, i, words)[:3], s, d, i, mapping)


def speaker_free(refs: Mapping[str, str], pieces: Sequence[tuple[str, str]],
                 normalizer: Callable[[str], str] | None = normalize,
                 max_sweeps: int = 5) -> CpWer:
    """cpWER after giving each hypothesis piece (label, text), in time order, the reference
    speaker that lowers the total most: local search from the pieces' own labels where they
    name a reference speaker. An upper bound on the exact optimum (a search over every
    labelling is exponential): a move that helps only with another piece's is not found."""
    norm = normalizer or (lambda text: text)
    ids = list(refs)
    if not ids:
        return cpwer(refs, {"": " ".join(text for _, text in pieces)}, normalizer)
    ref_words = {r: norm(refs[r]).split() for r in ids}
    words = [norm(text).split() for _, text in pieces]
    labels = [label if label in refs else ids[0] for label, _ in pieces]

    def stream(r: str) -> tuple[int, int, int]:
        return align(ref_words[r], [w for lab, ws in zip(labels, words) if lab == r for w in ws])

    cost = {r: stream(r) for r in ids}
    for _ in range(max_sweeps):
        improved = False
        for k in range(len(pieces)):
            improved |= _move_best(k, labels, cost, stream, ids)
        if not improved:
            break
    return cpwer(refs, _joined(labels, pieces), normalizer)


def _move_best(k: int, labels: list[str], cost: dict, stream, ids: list[str]) -> bool:
    """Give piece k the reference speaker that lowers the two streams it touches most."""
    here, best, best_gain = labels[k], None, 0
    labels[k] = None                       # piece k out: its present stream without it
    without = stream(here)
    for r in ids:
        if r == here:
            continue
        labels[k] = r
        with_it = stream(r)
        gain = sum(cost[here]) + sum(cost[r]) - sum(without) - sum(with_it)
        if gain > best_gain:
            best, best_gain, best_cost = r, gain, with_it
    labels[k] = best or here
    if best is None:
        return False
    cost[here], cost[best] = without, best_cost
    return True


def _joined(labels: list[str], pieces: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for label, (_, text) in zip(labels, pieces):
        out.setdefault(label, []).append(text)
    return {label: " ".join(texts) for label, texts in out.items()}
