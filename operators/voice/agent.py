"""Agent: the voice agent's brain. A finished user turn in; sentences (as soon as each is
complete), tool use and the end of the reply out.

Per session the operator keeps the conversation (the engine keeps its prefix in the KV cache:
`Prompt.session_id`), and per user a few sentences of memory from earlier sessions
(operators/voice/notebook.py). A turn goes:

    screen (guardrail.screen_request)  a refused request never reaches the model
    tool   a request said in a stock way ("take a note: ...", "what's on my calendar
           tomorrow") is routed at once (operators/voice/intents.py); otherwise, when the
           words make a tool plausible (tools.might_need_tool), one grammar-constrained step
           picks a tool or "none"; the tool runs, its result is one more system line
    answer streamed; each sentence goes out the moment it is complete, so speech starts
           on the first while the model writes the second

Barge-in cancels this operator's work for the session (a Cancel naming `agent`); what had
been generated is kept until the gateway's `Spoken` says what the user actually heard, which
then replaces it. A tool that had started has finished (its writes are one transaction) and
stays in the history as done.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from operators.base import Context, Operator
from operators.generate.engine import EngineQueue, Prompt
from operators.generate.prompting import NO_TOOL, tool_choice_schema, tool_instructions
from operators.generate.sentences import SentenceSplitter
from operators.generate.shared import LlmSettings, complete
from operators.voice.guardrail import screen_request
from operators.voice.intents import route, words_arguments
from operators.voice.notebook import Notebook
from operators.voice.tools import SPECS, ToolError, Toolbox, might_need_tool
from schemas import (AgentEvent, AgentSentence, AgentTurnDone, ChatMessage, HearEvent,
                     SessionClosed, Spoken, ToolActivity, UserTurn)

SYSTEM_PROMPT = ("You are Patch, a friendly voice assistant talking with the user out loud. "
                 "Answer in one to three short spoken sentences: no lists, no markdown, no "
                 "emojis. When a tool result is given, answer from it. If you do not know, "
                 "say so briefly.")
MEMORY_PROMPT = ("Write one sentence that a friend would remember from this conversation: what "
                 "the user wanted and any facts about them. Reply with the sentence only.")


# Tools whose result is already the spoken answer: said as it is, no second model call
# (a 0.5B model reading "Nothing is in the calendar for Monday" back gets it wrong).
SPOKEN_RESULTS = frozenset({"current_time", "list_events", "add_event", "add_note", "list_notes"})


class AgentConfig(LlmSettings, frozen=True, forbid_unknown_fields=True):
    max_tokens: int = 120
    temperature: float = 0.3
    history_turns: int = 12               # user+assistant pairs kept in the prompt
    tools: list[str] = msgspec.field(default_factory=lambda: list(SPECS))
    timezone: str = "UTC"
    notebook: str = ""                    # SQLite file for calendar, notes, memories
    store: str = ""                       # the QA store search_documents reads ("" = default)
    collections: list[str] = []
    embed_model: str = "all-minilm-l6-v2"
    remember: bool = True                 # a sentence of memory per named user and session
    idle_s: float = 900.0
    slots: int = 1
    waiting: int = 8


class AgentSession:
    def __init__(self, session_id: str, user: str):
        self.id, self.user = session_id, user
        self.history: list[ChatMessage] = []
        self.replies: dict[int, int] = {}       # turn -> index of its reply in history
        self.heard: dict[int, Spoken] = {}       # Spoken that came before its reply ended
        self.window = 0                          # history[window:] is what the model sees
        self.last_seen = time.monotonic()


class Agent(Operator[HearEvent, AgentEvent]):
    kind = "agent"
    input_type = HearEvent
    output_type = AgentEvent
    Config = AgentConfig

    def __init__(self, name: str, config: AgentConfig | None = None, engine: Any = None):
        super().__init__(name, config, engine)
        self.sessions: dict[str, AgentSession] = {}
        self.queue = EngineQueue(self.config.slots, self.config.waiting)
        self.notebook: Notebook | None = None
        self.toolbox: Toolbox | None = None
        self._search = None

    async def start(self) -> None:
        self.notebook = Notebook(self.config.notebook or _data_dir() / "voice.sqlite")
        search = self._search_documents if "search_documents" in self.config.tools else None
        self.toolbox = Toolbox(self.notebook, search, self.config.tools, self.config.timezone)
        if hasattr(self.engine, "load"):
            await self.engine.load()

    async def stop(self) -> None:
        if self.notebook is not None:
            self.notebook.close()
        if self._search is not None:
            await self._search[0].close()
            await self._search[1].close()
        if self.engine is not None and hasattr(self.engine, "close"):
            await self.engine.close()

    async def process(self, event: Any, ctx: Context) -> AsyncIterator[AgentEvent]:
        if self.toolbox is None:
            await self.start()
        if isinstance(event, UserTurn) and event.text.strip():
            session = self._session(event.session_id, event.user)
            async with contextlib.aclosing(self._reply(session, event)) as replies:
                async for out in replies:
                    yield out
        elif isinstance(event, Spoken):
            self._heard(event)
        elif isinstance(event, SessionClosed):
            await self._close(event)
        self._sweep()

    def cancellable(self, event: Any) -> bool:
        """Only a reply is stopped by barge-in; the Spoken that follows the Cancel is not."""
        return isinstance(event, UserTurn)

    def _session(self, session_id: str, user: str) -> AgentSession:
        s = self.sessions.get(session_id) or self.sessions.setdefault(
            session_id, AgentSession(session_id, user))
        s.user, s.last_seen = user or s.user, time.monotonic()
        return s

    # -- one turn ----------------------------------------------------------------------------
    async def _reply(self, s: AgentSession, turn: UserTurn) -> AsyncIterator[AgentEvent]:
        started, timings = time.perf_counter(), {}
        refusal = screen_request(turn.text)
        s.history.append(ChatMessage(role="user", content=turn.text))
        if refusal:
            self._answered(s, turn.turn, refusal)
            yield AgentSentence(session_id=s.id, turn=turn.turn, index=0, text=refusal)
            yield AgentTurnDone(session_id=s.id, turn=turn.turn, text=refusal, refused=True)
            return
        async with self.queue.slot():
            used: list[tuple[str, str]] = []           # (tool, result)
            if self.toolbox.specs:
                async for out in self._use_tool(s, turn, used, timings):
                    yield out
            parts: list[str] = []
            try:
                if used and used[0][0] in SPOKEN_RESULTS:   # the result is the answer
                    parts.append(used[0][1])
                    yield AgentSentence(session_id=s.id, turn=turn.turn, index=0, text=used[0][1])
                else:
                    async for out in self._answer(s, turn, used, parts, timings, started):
                        yield out
            finally:    # interrupted or not, what was generated is the reply so far
                self._answered(s, turn.turn, "".join(parts).strip())
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        yield AgentTurnDone(session_id=s.id, turn=turn.turn, text="".join(parts).strip(),
                            timings={k: round(v, 1) for k, v in timings.items()})

    async def _use_tool(self, s: AgentSession, turn: UserTurn, used: list[tuple[str, str]],
                        timings: dict) -> AsyncIterator[AgentEvent]:
        t0 = time.perf_counter()
        name, args = await self._choose_tool(s, turn.text)
        timings["tool_choice_ms"] = (time.perf_counter() - t0) * 1000
        if name == NO_TOOL:
            return
        yield ToolActivity(session_id=s.id, turn=turn.turn, name=name, arguments=args)
        try:
            result, state = await self.toolbox.run(name, args, s.user), "finished"
        except ToolError as e:
            result, state = f"The tool failed: {e}", "failed"
        timings["tool_ms"] = (time.perf_counter() - t0) * 1000 - timings["tool_choice_ms"]
        used.append((name, result) if state == "finished" else ("", result))
        s.history.append(ChatMessage(role="system", content=f"({name} {state}: {result})"))
        yield ToolActivity(session_id=s.id, turn=turn.turn, name=name, arguments=args,
                           state=state, result=result)

    async def _choose_tool(self, s: AgentSession, text: str) -> tuple[str, dict]:
        """A tool the words plainly ask for is taken as asked (the model fills in only the
        arguments they lack); otherwise, where a tool is plausible, the model chooses. A day
        or time in the user's own words beats the model's copy of it."""
        routed = route(text, self.toolbox.allowed)
        if routed:
            args = words_arguments(routed, text)
            missing = [p for p in SPECS[routed].parameters.get("required", []) if p not in args]
            if not missing:
                return routed, args
            _, asked = await self._ask_model(s, [SPECS[routed]], allow_none=False)
            return routed, {**asked, **args}
        if not might_need_tool(text):
            return NO_TOOL, {}
        name, asked = await self._ask_model(s, self.toolbox.specs)
        return name, {**asked, **words_arguments(name, text, defaults=False)}

    async def _ask_model(self, s: AgentSession, specs: list, allow_none: bool = True
                         ) -> tuple[str, dict]:
        prompt = Prompt(messages=[tool_instructions(specs), *self._recent(s)], max_tokens=96,
                        json_schema=tool_choice_schema(specs, allow_none), temperature=0.0)
        text, _ = await complete(self.engine, prompt)
        try:
            choice = json.loads(text)
        except json.JSONDecodeError:
            return NO_TOOL, {}
        return choice.get("tool", NO_TOOL), choice.get("arguments") or {}

    async def _answer(self, s: AgentSession, turn: UserTurn, used: list[tuple[str, str]],
                      parts: list[str], timings: dict, started: float) -> AsyncIterator[AgentEvent]:
        messages = [self._system(s), *self._recent(s)]
        if used:    # a small model reads a result best inside the question it answers
            messages = [m for m in messages if not m.content.startswith("(")][:-1] + [
                ChatMessage(role="user", content=f"{used[0][1]}\n\nQuestion: {turn.text}\n"
                            "Answer in one short sentence, using only what is written above.")]
        prompt = Prompt(messages=messages,
                        max_tokens=self.config.max_tokens, temperature=self.config.temperature,
                        session_id=s.id)
        splitter, index = SentenceSplitter(), 0
        async with contextlib.aclosing(self.engine.stream(prompt)) as stream:
            async for delta in stream:
                if delta.text and not parts:
                    timings["llm_first_token_ms"] = (time.perf_counter() - started) * 1000
                parts.append(delta.text)
                pieces = splitter.feed(delta.text)
                if index == 0 and not pieces:      # speech may start on a first clause
                    pieces = first_clause(splitter)
                for sentence in pieces:
                    if index == 0:
                        timings["llm_first_sentence_ms"] = (time.perf_counter() - started) * 1000
                    yield AgentSentence(session_id=s.id, turn=turn.turn, index=index, text=sentence)
                    index += 1
        rest = splitter.flush()
        if rest:
            yield AgentSentence(session_id=s.id, turn=turn.turn, index=index, text=rest)

    # -- history and memory ------------------------------------------------------------------
    def _system(self, s: AgentSession) -> ChatMessage:
        now = dt.datetime.now(self.toolbox.zone)
        lines = [SYSTEM_PROMPT, f"Today is {now:%A, %B %d, %Y}."]
        memories = self.notebook.memories(s.user) if s.user else []
        if memories:
            lines.append("From earlier conversations with this user: " + " ".join(memories))
        return ChatMessage(role="system", content=" ".join(lines))

    def _recent(self, s: AgentSession) -> list[ChatMessage]:
        """The conversation the model sees. Its start moves in jumps, not by one turn each
        turn: a window that slides changes the prompt's first messages every turn, so the
        engine's saved KV state never matches and every reply pays for the whole history
        again (a 30-minute call went from 1.9 s to 5 s to first audio). Past 2 × history_turns
        messages it drops to the newest history_turns, starting at a user's message."""
        keep = 2 * self.config.history_turns
        if len(s.history) - s.window > keep:
            s.window = len(s.history) - self.config.history_turns
            while s.window < len(s.history) - 1 and s.history[s.window].role != "user":
                s.window += 1
        return s.history[s.window:]

    def _answered(self, s: AgentSession, turn: int, text: str) -> None:
        s.replies[turn] = len(s.history)
        s.history.append(ChatMessage(role="assistant", content=text or "…"))
        if turn in s.heard:                     # the user stopped it before it was over
            self._heard(s.heard.pop(turn))

    def _heard(self, spoken: Spoken) -> None:
        """Keep only what the user heard of an interrupted reply. It comes on the immediate
        lane, so it may arrive while the reply is still being cancelled: then it waits."""
        s = self.sessions.get(spoken.session_id)
        if s is None:
            return
        at = s.replies.get(spoken.turn)
        if at is None:
            s.heard[spoken.turn] = spoken
            return
        text = spoken.text.strip() + (" —" if spoken.interrupted else "")
        s.history[at] = ChatMessage(role="assistant", content=text.strip() or "…")

    async def _close(self, closed: SessionClosed) -> None:
        s = self.sessions.pop(closed.session_id, None)
        user = (s.user if s else "") or closed.user
        if s is None or not self.config.remember or not user or user == "anonymous" \
                or len(s.history) < 2:
            return
        convo = "\n".join(f"{m.role}: {m.content}" for m in s.history[-12:])
        prompt = Prompt(messages=[ChatMessage(role="system", content=MEMORY_PROMPT),
                                  ChatMessage(role="user", content=convo)],
                        max_tokens=60, temperature=0.0)
        async with self.queue.slot():
            text, _ = await complete(self.engine, prompt)
        if text.strip():
            self.notebook.remember(user, text.strip().split("\n")[0][:300])

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self.sessions.items() if now - s.last_seen > self.config.idle_s]:
            del self.sessions[key]

    # -- knowledge search --------------------------------------------------------------------
    async def _search_documents(self, query: str, user: str) -> list[str]:
        from operators.embed.engine import Kind
        from operators.store.engine import SearchQuery
        from schemas.documents import Principal
        if self._search is None:
            self._search = await self._open_search()
        embedder, store = self._search
        vector = (await embedder.embed([query], Kind.QUERY))[0].tolist()
        hits = await store.search(SearchQuery(principal=Principal(user=user), text=query,
                                              vector=vector, k=3,
                                              collections=self.config.collections))
        return [h.chunk.text for h in hits]

    async def _open_search(self):
        from operators.ingest.embed import make_embedder
        from operators.store.factory import embedded_store
        conf = msgspec.defstruct("SearchConf", [("model", str), ("batch_size", int),
                                                ("threads", int), ("store", str)])
        c = conf(self.config.embed_model, 8, 1, self.config.store)
        embedder, store = make_embedder(c), embedded_store(c)
        await store.open(embedder.name, embedder.dim)
        return embedder, store


def first_clause(splitter: SentenceSplitter, min_words: int = 4) -> list[str]:
    """The buffered text up to a comma, colon or semicolon once it has `min_words` words:
    the first thing said need not wait for the end of a long first sentence."""
    text = splitter.buffer
    cut = max(text.rfind(", "), text.rfind(": "), text.rfind("; "))
    if cut < 0 or len(text[:cut].split()) < min_words:
        return []
    splitter.buffer = text[cut + 1:]
    return [text[:cut + 1].strip()]


def _data_dir() -> Path:
    from operators.store.factory import default_store_path
    return default_store_path().parent.parent      # the data dir, as the store finds it
