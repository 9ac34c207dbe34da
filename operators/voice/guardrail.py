"""Guardrail: what the agent will not do, checked on the way in and on the way out.

In (operators/voice/agent.py calls `screen_request` before the model sees a turn):
requests for the system prompt or to drop its rules, and requests for serious harm
(weapons, attacking people or systems, self-harm methods), get a fixed refusal; the model
never reads them. Out (the Guardrail operator, between agent and synthesize): a sentence that
repeats a run of the system prompt is replaced before it is spoken; a tool the agent may not
use is reported as refused. Keyword rules are a floor, not a classifier: they are measured
on the Tensor Trust attacks (`patchwire eval voice`) and say so.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator

import msgspec

from operators.base import Context, Operator
from schemas import AgentEvent, AgentSentence, ToolActivity

EXTRACTION = re.compile(
    r"(system|initial|original|hidden|secret|pre-?)\s*(prompt|instructions?|message|rules)"
    r"|(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+|your\s+)*(previous|prior|above|"
    r"earlier|preceding)?\s*(instructions?|rules|prompts?|directions)"
    r"|(repeat|print|reveal|show|output|tell me|say|recite|convert)\b.{0,40}\b(instructions|prompt|"
    r"everything above|text above|words above|rules)"
    r"|you are now\b|new instructions|developer mode|jailbreak|\bDAN\b", re.I | re.S)
HARM = re.compile(
    r"\b(make|build|create|assemble|synthesi[sz]e|cook)\b.{0,30}\b(bomb|explosive|weapon|nerve "
    r"agent|meth|poison|malware|ransomware|virus)\b"
    r"|\b(kill|hurt|poison|stab|shoot)\b.{0,20}\b(someone|somebody|people|him|her|them|my)\b"
    r"|\b(hack|break) into\b|\bsteal\b.{0,20}\b(password|credit card|identity)\b"
    r"|\b(kill|hurt|harm) myself\b|\bsuicide (method|methods)\b", re.I | re.S)
REFUSE_EXTRACTION = "I can't share or change my instructions, but I'm happy to help otherwise."
REFUSE_HARM = "I can't help with that."
LEAK_NGRAM = 6


def screen_request(text: str) -> str:
    """The refusal for a request the agent must not follow, or ''."""
    if HARM.search(text):
        return REFUSE_HARM
    if EXTRACTION.search(text):
        return REFUSE_EXTRACTION
    return ""


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def leaks(sentence: str, secret: str, n: int = LEAK_NGRAM) -> bool:
    """True when the sentence repeats `n` consecutive words of the secret text."""
    return bool(_ngrams(sentence, n) & _ngrams(secret, n))


class GuardrailConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system_prompt: str = ""          # what must not be repeated; "" = the agent's default prompt
    allowed_tools: list[str] = []    # empty: every tool the agent registers is allowed


class Guardrail(Operator[AgentEvent, AgentEvent]):
    kind = "guardrail"
    input_type = AgentEvent
    output_type = AgentEvent
    Config = GuardrailConfig

    async def start(self) -> None:
        from operators.voice.agent import SYSTEM_PROMPT
        self.secret = self.config.system_prompt or SYSTEM_PROMPT

    async def process(self, event, ctx: Context) -> AsyncIterator[AgentEvent]:
        if not hasattr(self, "secret"):
            await self.start()
        if isinstance(event, AgentSentence) and leaks(event.text, self.secret):
            event = msgspec.structs.replace(event, text=REFUSE_EXTRACTION)
        elif isinstance(event, ToolActivity) and self.config.allowed_tools \
                and event.name not in self.config.allowed_tools:
            event = msgspec.structs.replace(event, state="refused", result="not allowed")
        yield event
