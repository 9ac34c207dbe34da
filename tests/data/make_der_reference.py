"""Writes tests/data/der_reference.json: random diarization cases scored by pyannote.metrics.

Not run by the tests (pyannote.metrics is not a patchwire dependency); tests/test_der.py
checks evals/der.py against the figures it wrote. Run it in a throwaway venv:

    python3.11 -m venv /tmp/derref && /tmp/derref/bin/pip install pyannote.metrics==4.2.0
    /tmp/derref/bin/python tests/data/make_der_reference.py

Each speaker's own turns are merged first: pyannote counts a speaker's overlapping turns
twice where md-eval (and evals/der.py) counts that time once. pyannote's collar is the total
width, so its collar=0.5 is our (md-eval's) 0.25 either side.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import random
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

OUT = Path(__file__).with_name("der_reference.json")
CASES = 40


def merged(turns: list[list]) -> list[list]:
    out = []
    for speaker in sorted({t[2] for t in turns}):
        spans: list[list[float]] = []
        for s, e in sorted(t[:2] for t in turns if t[2] == speaker):
            if spans and s <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], e)
            else:
                spans.append([s, e])
        out += [[s, e, speaker] for s, e in spans]
    return out


def random_turns(rng: random.Random, speakers: int, n: int) -> list[list]:
    turns = []
    for _ in range(n):
        start = round(rng.uniform(0, 20), 2)
        turns.append([start, round(start + rng.uniform(0.1, 4), 2), f"S{rng.randrange(speakers)}"])
    return merged(turns)


def annotation(turns: list[list]) -> Annotation:
    a = Annotation()
    for i, (s, e, k) in enumerate(turns):
        a[Segment(s, e), i] = k
    return a


def main() -> None:
    rng = random.Random(7)
    cases = []
    for _ in range(CASES):
        ref = random_turns(rng, rng.randint(1, 4), rng.randint(1, 9))
        hyp = random_turns(rng, rng.randint(1, 5), rng.randint(0, 9))
        uem = [0.0, round(rng.uniform(10, 25), 2)]
        scores = {}
        for ours, theirs in ((0.0, 0.0), (0.25, 0.5)):
            d = DiarizationErrorRate(collar=theirs, skip_overlap=False)(
                annotation(ref), annotation(hyp), uem=Timeline([Segment(*uem)]), detailed=True)
            scores[str(ours)] = {k: round(d[k], 9) for k in
                                 ("total", "missed detection", "false alarm", "confusion")}
        cases.append({"reference": ref, "hypothesis": hyp, "uem": uem, "scores": scores})
    OUT.write_text(json.dumps({"scorer": f"pyannote.metrics {metadata.version('pyannote.metrics')}",
                               "cases": cases}) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
