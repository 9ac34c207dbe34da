"""The agent's tools: typed specs the model chooses from, and the functions that run them.

Dates are resolved here, not by the model: a 0.5B model asked for "tomorrow" as a date gets
it wrong; it copies the user's words ("tomorrow", "friday", "2026-12-03") and `resolve_day`
turns them into a date in the agent's time zone. Results are short sentences the model can
read back, and the tool state is explicit: finished, or failed with why.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo

from schemas import ToolSpec

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
READ_NOTES = 5                # notes read aloud at once, newest first
STRING = {"type": "string", "minLength": 1, "maxLength": 200}

SPECS: dict[str, ToolSpec] = {s.name: s for s in [
    ToolSpec(name="search_documents", description="what the company documents (policies, "
             "handbook, guides) say about a topic: 'what do the docs say about vacation', "
             "'according to the handbook, how do I...'", parameters={"type": "object", "properties": {"query": STRING},
                                          "required": ["query"]}),
    ToolSpec(name="current_time", description="the date, the weekday or the time now: "
             "'what time is it', 'what's the date today'",
             parameters={"type": "object", "properties": {}}),
    ToolSpec(name="list_events", description="read the user's calendar for a day: "
             "'what's on my calendar tomorrow', 'do I have anything on Friday', 'am I free "
             "on Saturday'",
             parameters={"type": "object", "properties": {"day": STRING}, "required": ["day"]}),
    ToolSpec(name="add_event", description="put an event in the user's calendar: "
             "'add lunch with Maria on Thursday', 'book a meeting', 'schedule a call on Monday'",
             parameters={"type": "object", "properties": {
                 "title": STRING, "day": STRING, "time": {"type": "string", "maxLength": 20}},
                 "required": ["title", "day"]}),
    ToolSpec(name="add_note", description="write down a note: 'take a note', "
             "'write down that...', 'remember that...'",
             parameters={"type": "object", "properties": {"text": STRING}, "required": ["text"]}),
    ToolSpec(name="list_notes", description="read the user's notes: 'what notes "
             "do I have', 'read me my notes'",
             parameters={"type": "object", "properties": {}}),
]}
# Words that make a tool plausible where the stock phrasings (intents.py) did not match; only
# then does the model's tool step run. Words of small talk ("today", "time", "day") are left
# out: "How are you today?" must not pay a tool choice (two model calls on 2 cores, ~4 s).
HINTS = re.compile(r"\b(calendar|schedule|meeting|appointment|event|agenda|busy|free|plans?|"
                   r"planned|remind|note|notes|write down|jot|remember that|document|documents|"
                   r"docs|policy|handbook|manual|guide|according|look up|search)\b", re.I)


class ToolError(Exception):
    """A tool call that cannot run as given (the model is told, the user hears why)."""


def resolve_day(text: str, today: dt.date) -> dt.date:
    words = re.sub(r"\s*\b(?:morning|afternoon|evening|night)\b", "", text.strip().lower()).strip()
    if words in ("", "this", "today", "tonight"):
        return today
    if words in ("tomorrow", "tmrw"):
        return today + dt.timedelta(days=1)
    if words in ("yesterday",):
        return today - dt.timedelta(days=1)
    for i, name in enumerate(WEEKDAYS):
        if name in words:
            ahead = (i - today.weekday()) % 7 or (7 if "next" in words else 0)
            return today + dt.timedelta(days=ahead)
    try:
        return dt.date.fromisoformat(words[:10])
    except ValueError:
        raise ToolError(f"I could not tell which day {text!r} is") from None


class Toolbox:
    """The tools one agent may use, bound to its notebook, knowledge search and clock."""

    def __init__(self, notebook, search: Callable[[str, str], Awaitable[list[str]]] | None,
                 allowed: list[str], tz: str = "UTC", clock: Callable[[], dt.datetime] | None = None):
        unknown = set(allowed) - set(SPECS)
        if unknown:
            raise ValueError(f"unknown tools {sorted(unknown)} (known: {', '.join(SPECS)})")
        self.notebook, self.search = notebook, search
        self.allowed = [n for n in allowed if n != "search_documents" or search is not None]
        self.zone = ZoneInfo(tz)
        self.clock = clock or (lambda: dt.datetime.now(self.zone))

    @property
    def specs(self) -> list[ToolSpec]:
        return [SPECS[n] for n in self.allowed]

    async def run(self, name: str, args: dict[str, Any], user: str) -> str:
        if name not in self.allowed:
            raise ToolError(f"the tool {name!r} is not allowed here")
        return await getattr(self, "_" + name)(args, user or "anonymous")

    async def _search_documents(self, args: dict, user: str) -> str:
        passages = await self.search(args.get("query", ""), user)
        if not passages:
            return "The documents say nothing about that."
        return "From the documents:\n" + "\n".join(f"- {p[:400]}" for p in passages[:3])

    async def _current_time(self, args: dict, user: str) -> str:
        now = self.clock()
        return f"It is {now:%A, %B %d, %Y}, {now:%H:%M}."

    async def _list_events(self, args: dict, user: str) -> str:
        day = resolve_day(args.get("day", "today"), self.clock().date())
        events = self.notebook.events(user, day.isoformat())
        when = f"{day:%A, %B %d}"
        if not events:
            return f"Nothing is in the calendar for {when}."
        items = "; ".join(f"{t + ' ' if t else ''}{title}" for t, title in events)
        return f"On {when}: {items}."

    async def _add_event(self, args: dict, user: str) -> str:
        day = resolve_day(args.get("day", "today"), self.clock().date())
        title, at = args.get("title", "").strip(), args.get("time", "").strip()
        if not title:
            raise ToolError("the event needs a title")
        self.notebook.add_event(user, day.isoformat(), title, at)
        return f"Added {title!r} on {day:%A, %B %d}{' at ' + at if at else ''}."

    async def _add_note(self, args: dict, user: str) -> str:
        text = args.get("text", "").strip()
        if not text:
            raise ToolError("the note is empty")
        self.notebook.add_note(user, text)
        return f"Noted: {text}"

    async def _list_notes(self, args: dict, user: str) -> str:
        notes = self.notebook.notes(user, READ_NOTES)
        if not notes:
            return "You have no notes."
        older = self.notebook.count_notes(user) - len(notes)
        said = "; ".join(notes)
        if older:   # read aloud, five is plenty; the rest are not silently missing
            return f"Your {len(notes)} newest notes: {said}; and {older} older one{'s' * (older > 1)}."
        return f"Your notes: {said}"


def might_need_tool(text: str) -> bool:
    return bool(HINTS.search(text))
