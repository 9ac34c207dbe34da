"""Which tool a request plainly asks for, and the arguments its own words already hold.

A 0.5B model choosing among six tools says "none" to "Take a note: buy milk" about one time in
three, and each choice costs a second or more of the reply's first audio on 2 cores. Requests
for a calendar, notes, the clock or the documents are said in a few stock ways, so these
patterns route them at once; only what they do not recognise goes to the model's tool step
(agent._choose_tool), and only arguments the words do not hold are asked of the model.

    route("Take a note: buy milk.")              -> "add_note"
    words_arguments("add_note", ...)             -> {"text": "Buy milk."}
    words_arguments("add_event", "Book lunch with Maria on Thursday at noon.")
                                                 -> {"title": "lunch with Maria",
                                                     "day": "thursday", "time": "12:00"}
The patterns favour precision: a request they miss still reaches the model. Writes are
tried first ("add a meeting about the travel policy" is an event, not a search).
"""
from __future__ import annotations

import re

WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
DAY = (rf"(?:(?:(?:today|tomorrow|yesterday|(?:next |this )?{WEEKDAY})"
       rf"(?: (?:morning|afternoon|evening|night))?)|tonight|this (?:morning|afternoon|evening)|"
       rf"\d{{4}}-\d{{2}}-\d{{2}})")
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve"]
TIME = (r"(?:noon|midday|midnight|(?:\d{1,2}(?::\d{2})?|" + "|".join(NUMBERS) + r")"
        r"(?:\s*o'?clock)?(?:\s*[ap]\.?m\.?)?)")
POLITE = r"^\s*(?:(?:hey|ok(?:ay)?|so|and)[, ]+)?(?:please[, ]+)?(?:(?:can|could|would|will) you(?: please)?\s+)?"

_I = re.IGNORECASE
INTENTS: list[tuple[str, re.Pattern]] = [
    ("add_note", re.compile(
        POLITE + r"(?:(?:take|make|add|write|create|jot)(?: down)? (?:a |this |that )?note\b|"
                 r"note (?:that|down)\b|write (?:this |that |it )?down\b|jot (?:this |that |it )?down\b|"
                 r"remember that\b|note:)", _I)),
    ("add_event", re.compile(
        POLITE + r"(?:add|put|schedule|book|set up|arrange|create)\b"
                 r"(?=.*\b(?:calendar|diary|meeting|appointment|call|lunch|dinner|breakfast|event|"
                 rf"{DAY}|at {TIME}))", _I)),
    ("search_documents", re.compile(
        r"\b(?:documents?|docs|handbook|manual|guide|policy|policies|wiki|knowledge base)\b", _I)),
    ("list_notes", re.compile(
        r"\b(?:(?:read|list|show|tell)(?: me)?(?: all)? (?:my|the) notes|"
        r"(?:what|which|any) notes (?:do|did) i\b|what(?:'s| is| are) in my notes|my notes\?)", _I)),
    ("list_events", re.compile(
        r"^\W*(?:so |and |ok(?:ay)? |hey |please )?(?:what|what's|whats|is|are|do|does|any|anything|tell me|"
        r"show me|read|check|how)\b.*\b(?:calendar|schedule|agenda|diary)\b|"
        r"\bwhat time is (?:my|the)\b.*\b(?:meeting|appointment|call|event)\b|"
        rf"\b(?:am i (?:free|busy)|do i have (?:anything|something|plans|meetings?)|"
        rf"anything (?:on|planned))\b.*\b{DAY}\b", _I)),
    ("current_time", re.compile(
        r"\bwhat time\b|\b(?:what(?:'s| is)|tell me) (?:the )?(?:time|date)\b|\btoday'?s date\b|"
        r"\bwhat(?:'s| is)? (?:the )?date\b|\b(?:what|which) day(?: of the week)? is it\b|"
        r"\bwhat (?:day|time) it is\b", _I)),
]

_DAY_RE = re.compile(rf"\b{DAY}\b", _I)
_TIME_RE = re.compile(rf"\bat ({TIME})(?!\s*(?:days?|weeks?|percent))\b", _I)
_NOTE_PREFIX = re.compile(
    POLITE + r"(?:(?:take|make|add|write|create|jot)(?: down)? (?:a |this |that )?note(?: for me)?"
             r"(?: that)?[:,]?|note (?:that|down)[:,]?|write (?:this |that |it )?down(?: that)?[:,]?|"
             r"jot (?:this |that |it )?down(?: that)?[:,]?|remember that|note:)\s*", _I)
_EVENT_VERB = re.compile(POLITE + r"(?:add|put|schedule|book|set up|arrange|create)\s+", _I)
_CALENDAR = re.compile(r"\s*\b(?:in|to|on|into) (?:my|the) (?:calendar|diary|schedule|agenda)\b", _I)
_EVENING = re.compile(r"\b(?:tonight|evening|dinner)\b", _I)
_LEAD = re.compile(r"^(?:an?|the|new)\s+", _I)


def route(text: str, allowed: list[str] | None = None) -> str | None:
    """The tool the words plainly ask for (among `allowed`), else None."""
    for name, pattern in INTENTS:
        if (allowed is None or name in allowed) and pattern.search(text):
            return name
    return None


def words_arguments(tool: str, text: str, defaults: bool = True) -> dict[str, str]:
    """The arguments of `tool` that the request's own words hold (with `defaults`: a
    calendar read with no day named is today's, a search is for the whole request)."""
    args: dict[str, str] = {}
    if tool in ("list_events", "add_event"):
        day = _DAY_RE.search(text)
        if day:
            args["day"] = day.group(0).lower()
        elif tool == "list_events" and defaults:
            args["day"] = "today"
    if tool == "add_event":
        at = _TIME_RE.search(text)
        if at:
            args["time"] = clock_time(at.group(1), evening=bool(_EVENING.search(text)))
        title = event_title(text)
        if title:
            args["title"] = title
    elif tool == "add_note":
        rest = _NOTE_PREFIX.sub("", text, count=1).strip()
        if rest.strip(" .,!?:;") and rest != text.strip():
            args["text"] = rest[0].upper() + rest[1:]
    elif tool == "search_documents" and defaults:
        args["query"] = text.strip()
    return args


def event_title(text: str) -> str:
    """'Add lunch with Maria on Thursday at noon.' -> 'lunch with Maria' ('' if unclear)."""
    rest = _EVENT_VERB.sub("", text, count=1)
    if rest == text:
        return ""
    rest = _CALENDAR.sub("", rest)
    rest = _TIME_RE.sub("", rest)
    rest = re.sub(rf"\s*\b(?:on|for|this|next)?\s*{DAY}\b", "", rest, flags=_I)
    rest = _LEAD.sub("", rest.strip(" .,!?"))
    words = rest.split()
    return " ".join(words) if 0 < len(words) <= 8 else ""


def clock_time(said: str, evening: bool = False) -> str:
    """'noon' -> '12:00', '3 pm' -> '15:00', '9' -> '09:00', '9:30 a.m.' -> '09:30'; an hour
    said without am/pm is in the afternoon from 1 to 7 ('at 3'), and in the evening when
    the request says so ('dinner tonight at 8')."""
    said = re.sub(r"\s*o'?clock", "", said.lower().replace(".", "")).strip()
    first, _, rest = said.partition(" ")
    if first in NUMBERS:
        said = f"{NUMBERS.index(first) + 1} {rest}".strip()
    if said in ("noon", "midday"):
        return "12:00"
    if said == "midnight":
        return "00:00"
    m = re.match(r"(\d{1,2})(?::(\d{2}))?\s*([ap]m)?$", said)
    if not m:
        return said
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if (half == "pm" or (half is None and (1 <= hour <= 7 or evening))) and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else said
