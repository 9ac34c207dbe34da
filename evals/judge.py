"""An independent support judge: does this passage support this sentence? Asked of an LLM.

The verifier decides support lexically (operators/qa/support.py); scoring faithfulness with
that same test would only tell us the verifier agrees with itself. The judge instead asks an
embedded LLM (qwen2.5-coder-1.5b by default, larger than the 0.5B that answers) for a
yes/no entailment judgement, its output held to a JSON enum by the engine's grammar, so
every call yields a verdict and nothing needs parsing heuristics.

The passage goes first in the prompt and the sentence last: judgements of several sentences
against one passage share a prefix, which the engine's prefix cache does not evaluate again.
Verdicts are cached on disk by (judge model, prompt, sentence, passage), so reruns and
other answer models reuse them.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import msgspec

from operators.generate.engine import Prompt
from operators.generate.shared import complete, shared_llama
from schemas import ChatMessage

JUDGE_MODEL = "qwen2.5-coder-1.5b"
MAX_PASSAGE_CHARS = 6000          # ~1,600 tokens: the longest MTRAG passage fits whole

SYSTEM = (
    "You are a careful fact checker. You get a PASSAGE and a CLAIM. Decide whether the "
    "passage supports the claim: answer \"yes\" only if everything the claim states is "
    "stated in the passage or follows directly from it. Answer \"no\" if the claim adds "
    "facts, names or numbers the passage does not give, contradicts the passage, or is about "
    "something else. Judge only against the passage, never your own knowledge.")
SCHEMA = {"enum": ["yes", "no"]}     # '"yes"': 3 tokens to decode, not 7 for an object
VERSION = hashlib.sha256((SYSTEM + json.dumps(SCHEMA)).encode()).hexdigest()[:12]


class JudgeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The LLM fields shared_llama reads."""
    model: str = JUDGE_MODEL
    gguf: str = ""
    context_tokens: int = 4096
    threads: int = 2


def judge_messages(sentence: str, passage: str) -> list[ChatMessage]:
    text = passage.strip()[:MAX_PASSAGE_CHARS]
    return [ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=f"PASSAGE:\n<<<\n{text}\n>>>\n\nCLAIM: {sentence}\n\n"
                        "Does the passage support the claim? Answer \"yes\" or \"no\".")]


def verdict(text: str) -> bool:
    """The grammar guarantees the shape; a malformed reply is a bug, so it raises."""
    return json.loads(text) == "yes"


class SupportJudge:
    """`await supports(sentence, passage)` → bool; verdicts cached in a JSONL file."""

    def __init__(self, cache_dir: Path, model: str = JUDGE_MODEL, threads: int = 1):
        self.model = model
        self.engine = shared_llama(JudgeConfig(model=model, threads=threads))
        self.path = cache_dir / f"judge-{model}-{VERSION}.jsonl"
        self.verdicts = _read_cache(self.path)
        self.calls, self.seconds, self.prompt_tokens, self.cached_tokens = 0, 0.0, 0, 0

    async def open(self) -> None:
        await self.engine.load()

    async def close(self) -> None:
        await self.engine.close()

    def key(self, sentence: str, passage: str) -> str:
        return hashlib.sha256(f"{sentence}\x00{passage}".encode()).hexdigest()

    async def supports(self, sentence: str, passage: str) -> bool:
        key = self.key(sentence, passage)
        if key not in self.verdicts:
            self.verdicts[key] = await self._ask(sentence, passage)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({"key": key, "yes": self.verdicts[key]}) + "\n")
        return self.verdicts[key]

    async def _ask(self, sentence: str, passage: str) -> bool:
        started = time.perf_counter()
        prompt = Prompt(messages=judge_messages(sentence, passage), json_schema=SCHEMA,
                        max_tokens=16, temperature=0.0)
        text, last = await complete(self.engine, prompt)
        self.calls += 1
        self.seconds += time.perf_counter() - started
        if last.usage:
            self.prompt_tokens += last.usage.prompt_tokens
            self.cached_tokens += last.usage.cached_tokens
        return verdict(text)


def _read_cache(path: Path) -> dict[str, bool]:
    return {r["key"]: r["yes"] for r in read_jsonl(path)}


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a cache file; a line cut short by an interrupted run is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
