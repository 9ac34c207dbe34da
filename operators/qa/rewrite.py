"""Rewrite: an AskRequest → a standalone query, or a clarifying question.

A first question is searched as it is (no model call, no latency). A follow-up ("and in
2019?", "who wrote it?") depends on the conversation, so the LLM rewrites it into a
question that stands alone, as JSON, before anything is searched. A first question that is
nothing but a reference ("what about it?") cannot be searched: the user is asked what they
mean instead.
"""
from __future__ import annotations

import re
import time
from typing import Annotated, AsyncIterator

import msgspec

from operators.base import Context, Operator, Reject
from operators.generate.engine import Prompt
from operators.generate.shared import LlmSettings, complete
from operators.qa.support import content_words, stem
from schemas import ChatMessage
from schemas.documents import AskRequest, Query

REFERENCES = frozenset("it this that these those they them he she his her its their there "
                       "one ones same above previous former latter".split())
REWRITE_SCHEMA = {"type": "object", "properties": {"query": {"type": "string", "minLength": 1}},
                  "required": ["query"]}
REWRITE_SYSTEM = ("Rewrite the user's last question so that it can be understood without the "
                  "conversation: replace pronouns and references with what they refer to. "
                  "Keep the language and the meaning; do not answer it. Reply as JSON "
                  '{"query": "..."}.')


class RewriteConfig(LlmSettings, frozen=True, forbid_unknown_fields=True):
    max_question_chars: Annotated[int, msgspec.Meta(ge=16)] = 4000
    history_turns: Annotated[int, msgspec.Meta(ge=0)] = 6


def needs_context(question: str) -> bool:
    """True when the question has no searchable words but references ("what about it?")."""
    words = re.findall(r"[a-z']+", question.lower())
    vague = {stem(w) for w in REFERENCES | {"about", "what", "tell", "more", "explain", "and"}}
    return bool(words) and any(w in REFERENCES for w in words) and not (
        content_words(question) - vague)


class Rewrite(Operator[AskRequest, Query]):
    kind = "rewrite"
    input_type = AskRequest
    output_type = Query
    Config = RewriteConfig

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()

    async def process(self, ask: AskRequest, ctx: Context) -> AsyncIterator[Query]:
        started = time.perf_counter()
        question = " ".join(ask.question.split())
        if not question:
            raise Reject("the question is empty")
        if len(question) > self.config.max_question_chars:
            raise Reject(f"the question is {len(question):,} characters; the limit is "
                         f"{self.config.max_question_chars:,}")
        ask = msgspec.structs.replace(ask, question=question)
        if ask.history:
            query = await self._standalone(ask, ctx)
        elif needs_context(question):
            yield Query(ask=ask, query=question, clarify=(
                "Could you say what you are asking about? The question refers to something "
                "(\"" + question + "\") but there is no earlier conversation to resolve it."))
            return
        else:
            query = question
        yield Query(ask=ask, query=query,
                    timings={"rewrite_ms": (time.perf_counter() - started) * 1000})

    async def _standalone(self, ask: AskRequest, ctx: Context) -> str:
        turns = ask.history[-self.config.history_turns:]
        convo = "\n".join(f"{t.role}: {t.content[:600]}" for t in turns)
        prompt = Prompt(messages=[ChatMessage(role="system", content=REWRITE_SYSTEM),
                                  ChatMessage(role="user", content=f"Conversation:\n{convo}\n\n"
                                              f"Last question: {ask.question}")],
                        json_schema=REWRITE_SCHEMA, max_tokens=96, temperature=0.0)
        text, _ = await complete(self.engine, prompt)
        try:
            query = msgspec.json.decode(text)["query"].strip()
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            query = ""
        return query or ask.question   # a failed rewrite still searches the words asked
