"""Sentence boundaries in a token stream, so speech can start on the first sentence."""
from __future__ import annotations

import re

# Words whose trailing period does not end a sentence.
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e",
                 "fig", "no", "approx", "inc", "ltd", "co"}
_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n+")  # a stop before whitespace, or a line end


class SentenceSplitter:
    """Feed text deltas; get back the sentences they completed. `flush()` returns the rest."""

    def __init__(self, min_chars: int = 8):
        self.buffer = ""
        self.min_chars = min_chars

    def feed(self, text: str) -> list[str]:
        self.buffer += text
        sentences, start = [], 0
        for m in _END.finditer(self.buffer):
            candidate = self.buffer[start:m.end()].strip()
            if len(candidate) < self.min_chars or self._abbreviation(candidate):
                continue
            sentences.append(candidate)
            start = m.end()
        self.buffer = self.buffer[start:]
        return sentences

    def flush(self) -> str:
        rest, self.buffer = self.buffer.strip(), ""
        return rest

    @staticmethod
    def _abbreviation(candidate: str) -> bool:
        if not candidate.endswith("."):
            return False
        last = candidate[:-1].rsplit(None, 1)[-1].lower()
        return last in ABBREVIATIONS or (len(last) == 1 and last.isalpha())
