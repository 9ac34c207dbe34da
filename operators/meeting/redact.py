"""Redaction of personal data before a transcript is stored or summarised.

Patterns, each checked beyond its shape where the data allows:

    email   local@domain.tld
    card    12–19 digits, spaces or dashes between groups, passing the Luhn check
    iban    country, check digits, 11–30 letters/digits (spaces allowed), passing mod-97
    ssn     US social security number NNN-NN-NNNN with the ranges the SSA never issues excluded
    phone   7–15 digits in groups (+country, (area), spaces, dots, dashes, an extension);
            dates, IPv4 addresses, cards, SSNs and numbers followed by a capitalised word
            on the same line (a house number before its street) are not phones
    name    the names the user gives (whole words, any case); names are not guessed

What was redacted where is returned as (kind, start, end) in the original text, never the
value itself: the record of a redaction must not leak what it removed. ASR writes numbers as
digits only sometimes ("five five five …" passes unseen), so redaction is a safeguard, not a
guarantee.
"""
from __future__ import annotations

import enum
import re
from typing import Iterable

import msgspec

from schemas import Transcript, TranscriptSegment, Word


class Pii(str, enum.Enum):
    EMAIL = "email"
    IBAN = "iban"
    CARD = "card"
    SSN = "ssn"
    PHONE = "phone"
    NAME = "name"


ALL = frozenset(Pii)
PRIORITY = list(Pii)        # on overlapping matches of equal length, the earlier kind wins

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b",
                  re.IGNORECASE)   # compact, or printed in groups of four
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){11,18}(?![\d-])")
SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,12}(?:[ .-]{1,2}\d{1,10}){0,5}"
                   r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w:])")   # not followed by ":": a time
STREET_AFTER = re.compile(r" (?!I\b)[A-Z][a-z]")   # "370 3911 Fourth Avenue": a house number
DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


class Found(msgspec.Struct, frozen=True, array_like=True):
    kind: Pii
    start: int
    end: int


class Redacted(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    found: list[Found] = []


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d)
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    s = text.replace(" ", "").upper()
    return s[2:4].isdigit() and int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def ssn_valid(m: re.Match) -> bool:
    area, group, serial = m.groups()
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def is_phone(text: str) -> bool:
    digits = re.sub(r"\D", "", re.split(r"\s?(?:x|ext)", text)[0])
    if not 7 <= len(digits) <= 15 or DATE.search(text) or IPV4.fullmatch(text):
        return False
    if SSN.fullmatch(text) or (len(digits) >= 12 and luhn(digits) and CARD.fullmatch(text)):
        return False
    return True


def find(text: str, names: Iterable[str] = (), kinds: frozenset = ALL) -> list[Found]:
    """Every piece of personal data of `kinds` in `text`, overlaps resolved, in order."""
    found = [Found(Pii.EMAIL, m.start(), m.end()) for m in EMAIL.finditer(text)]
    found += [Found(Pii.IBAN, m.start(), m.end()) for m in IBAN.finditer(text) if iban_valid(m.group())]
    found += [Found(Pii.CARD, m.start(), m.end()) for m in CARD.finditer(text)
              if luhn(re.sub(r"\D", "", m.group()))]
    found += [Found(Pii.SSN, m.start(), m.end()) for m in SSN.finditer(text) if ssn_valid(m)]
    found += [Found(Pii.PHONE, m.start(), m.end()) for m in PHONE.finditer(text)
              if is_phone(m.group()) and not STREET_AFTER.match(text, m.end())]
    found += [Found(Pii.NAME, m.start(), m.end()) for m in _names(names).finditer(text)] if names else []
    return _resolve([f for f in found if f.kind in kinds])


def _names(names: Iterable[str]) -> re.Pattern:
    alts = sorted({" ".join(n.split()) for n in names if n.strip()}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alts)
                      + r")(?!\w)", re.IGNORECASE)


def _resolve(found: list[Found]) -> list[Found]:
    """Longest first (then by kind's priority); a match overlapping a kept one is dropped."""
    kept: list[Found] = []
    for f in sorted(found, key=lambda f: (f.start - f.end, PRIORITY.index(f.kind), f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def mask(kind: Pii) -> str:
    return f"[{kind.value.upper()}]"


def redact(text: str, names: Iterable[str] = (), kinds: frozenset = ALL) -> Redacted:
    """`text` with each piece of personal data replaced by its kind ("[PHONE]"), and where
    each was (offsets in the original text)."""
    found = find(text, names, kinds)
    parts, at = [], 0
    for f in found:
        parts += [text[at:f.start], mask(f.kind)]
        at = f.end
    return Redacted(text="".join(parts) + text[at:], found=found)


# ---- transcripts -------------------------------------------------------------------------

class SegmentRedaction(msgspec.Struct, frozen=True, array_like=True):
    """One redaction in a transcript: the segment, the kind, offsets in its original text."""

    segment: int
    kind: Pii
    start: int
    end: int


def redact_words(words: list[Word], names: Iterable[str], kinds: frozenset) -> list[Word]:
    """Words of a redacted run become one word, the mask, spanning the run's times; data
    split over several words (a phone number said in groups) is found on the joined text."""
    text, spans = "", []
    for w in words:     # ASR words come stripped: join them with spaces, as they were said
        text += "" if not text or w.word.startswith(" ") else " "
        spans.append((len(text), len(text) + len(w.word)))
        text += w.word
    out: list[Word] = []
    found = find(text, names, kinds)
    for w, (a, b) in zip(words, spans):
        hit = next((f for f in found if a < f.end and b > f.start), None)
        if hit is None:
            out.append(w)
        elif out and out[-1].word.strip() == mask(hit.kind) and a > hit.start:
            out[-1] = msgspec.structs.replace(out[-1], end=w.end)
        else:
            lead = " " if w.word.startswith(" ") else ""
            out.append(msgspec.structs.replace(w, word=lead + mask(hit.kind)))
    return out


def redact_segment(seg: TranscriptSegment, names: Iterable[str], kinds: frozenset = ALL
                   ) -> tuple[TranscriptSegment, list[Found]]:
    names = list(names)
    done = redact(seg.text, names, kinds)
    words = redact_words(seg.words, names, kinds) if seg.words else seg.words
    return msgspec.structs.replace(seg, text=done.text, words=words), done.found


def redact_transcript(t: Transcript, names: Iterable[str] = (), kinds: frozenset = ALL
                      ) -> tuple[Transcript, list[SegmentRedaction]]:
    """The transcript with personal data masked in every segment's text and words; and
    where (segment index, kind, offsets in that segment's original text)."""
    names, segments, where = list(names), [], []
    for i, seg in enumerate(t.segments):
        done, found = redact_segment(seg, names, kinds)
        segments.append(done)
        where += [SegmentRedaction(i, f.kind, f.start, f.end) for f in found]
    return msgspec.structs.replace(t, segments=segments), where
