"""Cleanup: the attributed transcript made fit to store, search and summarise.

Whisper already punctuates and cases; what is left:
- domain terms: the participants' names and the agenda's proper nouns and acronyms are the
  spelling of record; a word that is one of them but cased otherwise ("ana", "api"), or a
  near-miss of a long one ("Kubernetis"), is respelled (the ASR prompt made most of these
  right already; this catches the windows the prompt did not reach);
- disfluencies, on request: fillers ("um", "uh") and a word stuttered twice go from the
  words and the text; timestamps stay those of the words kept;
- personal data, on request: masked in text and words (operators/meeting/redact.py) before
  anything is stored, indexed or shown to the summariser.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import AsyncIterator, Iterable

import msgspec

from operators.base import Context, Operator, Reject
from operators.meeting.redact import Pii, redact_transcript
from schemas import MeetingInfo, Transcript, TranscriptSegment, Word

FILLERS = frozenset({"um", "uh", "er", "erm", "ah", "eh", "hmm", "mm", "mhm", "uhm"})
TERM = re.compile(r"\b(?:[A-Z][a-z]+(?:[A-Z][a-z]+)*|[A-Z]{2,}[a-z]?|[A-Za-z]+\d+[A-Za-z\d]*)\b")
EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)
COMMON = frozenset("""The A An And Or But If When What Who Why How We I You It This That These
Those Our Your Their Agenda Meeting Item Items Next Review Update Updates Discussion Budget
Plan Q1 Q2 Q3 Q4 AOB Any Other Business Notes""".split())
NEAR = 0.86          # difflib ratio for a respelling; below it two real words are too alike


class CleanupConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fuzzy_min_chars: int = 6     # shorter words are only re-cased, never respelled


def domain_terms(info: MeetingInfo | None) -> list[str]:
    """Names and agenda terms (capitalised words, acronyms, model numbers), deduplicated."""
    if info is None:
        return []
    found = [w for name in info.participants for w in name.split()]
    found += [t for t in TERM.findall(info.agenda) if t not in COMMON]
    return list(dict.fromkeys(t for t in found if len(t) > 1))


def respell(word: str, terms: dict[str, str], min_chars: int) -> str:
    """The word with a domain term's spelling, punctuation around it kept."""
    lead, core, trail = EDGE.match(word).groups()
    if not core:
        return word
    exact = terms.get(core.lower())
    if exact is not None:
        return lead + exact + trail
    if len(core) >= min_chars and core[:1].isupper():
        close = difflib.get_close_matches(core.lower(), list(terms), n=1, cutoff=NEAR)
        if close and close[0][:1] == core[:1].lower():
            return lead + terms[close[0]] + trail
    return word


def _spoken(word: str) -> str:
    return EDGE.match(word).group(2).lower()


def drop_disfluencies(words: list[Word]) -> list[Word]:
    kept: list[Word] = []
    for w in words:
        core = _spoken(w.word)
        if core in FILLERS:
            continue
        if kept and core and core == _spoken(kept[-1].word) and w.start - kept[-1].end < 0.3:
            continue     # "I I think": one "I"
        kept.append(w)
    return kept


def clean_segment(seg: TranscriptSegment, terms: dict[str, str], fillers: bool,
                  min_chars: int) -> TranscriptSegment | None:
    words = drop_disfluencies(seg.words) if fillers else list(seg.words)
    words = [msgspec.structs.replace(w, word=respell(w.word, terms, min_chars)) for w in words]
    if seg.words:
        if not words:
            return None          # nothing but "um"
        text = " ".join(w.word for w in words)
    else:
        text = " ".join(respell(w, terms, min_chars) for w in seg.text.split()
                        if not (fillers and _spoken(w) in FILLERS))
    return msgspec.structs.replace(seg, words=words, text=text)


def clean(t: Transcript, info: MeetingInfo | None, config: CleanupConfig = CleanupConfig()
          ) -> Transcript:
    terms = {term.lower(): term for term in domain_terms(info)}
    fillers = bool(info and info.remove_disfluencies)
    segments = [clean_segment(s, terms, fillers, config.fuzzy_min_chars) for s in t.segments]
    t = msgspec.structs.replace(t, segments=[s for s in segments if s is not None])
    if info and (info.redact or info.redact_names):
        kinds = _kinds(info.redact) | ({Pii.NAME} if info.redact_names else set())
        names = list(info.participants) + list(info.speakers.values())
        t, where = redact_transcript(t, names if info.redact_names else (), frozenset(kinds))
        t = msgspec.structs.replace(t, warnings=[*t.warnings, f"redacted {len(where)} "
                                                 "personal data spans"])
    return t


def _kinds(names: Iterable[str]) -> set[Pii]:
    try:
        return {Pii(n) for n in names}
    except ValueError:
        known = ", ".join(p.value for p in Pii)
        raise Reject(f"unknown personal data kind in redact={list(names)} (known: {known})") from None


class Cleanup(Operator[Transcript, Transcript]):
    kind = "cleanup"
    input_type = Transcript
    output_type = Transcript
    Config = CleanupConfig

    async def process(self, msg: Transcript, ctx: Context) -> AsyncIterator[Transcript]:
        info = msg.audio.meeting if msg.audio else None
        yield clean(msg, info, self.config)
