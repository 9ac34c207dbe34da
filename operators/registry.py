"""Operator kinds and their engines, imported lazily so a heavy engine costs nothing until used."""
from __future__ import annotations

import importlib
from typing import Any

# kind -> "module:Class" of the operator
OPERATORS: dict[str, str] = {
    "decode": "operators.decode.operator:Decode",
    "vad": "operators.vad.operator:Vad",
    "asr": "operators.asr.operator:Asr",
    "generate": "operators.generate.operator:Generate",
    "chunk": "operators.ingest.chunk:Chunk",
    "embed": "operators.ingest.embed:Embed",
    "index": "operators.ingest.index:Index",
    "rewrite": "operators.qa.rewrite:Rewrite",
    "retrieve": "operators.qa.retrieve:Retrieve",
    "rerank": "operators.qa.rerank:Rerank",
    "answer": "operators.qa.answer:Answer",
    "verify": "operators.qa.verify:Verify",
    "diarize": "operators.diarize.operator:Diarize",
    "cleanup": "operators.meeting.cleanup:Cleanup",
    "summarize": "operators.meeting.summarize:Summarize",
    "archive": "operators.meeting.archive:Archive",
    "listen": "operators.voice.listen:Listen",
    "agent": "operators.voice.agent:Agent",
    "guardrail": "operators.voice.guardrail:Guardrail",
    "synthesize": "operators.voice.synthesize:Synthesize",
    "echo": "operators.echo:Echo",
    "failures": "operators.echo:FailureLog",
}

STORE = "operators.store.factory:embedded_store"   # SQLite FTS5 + numpy vectors

# kind -> engine name -> "module:factory"; a factory takes the operator's config.
ENGINES: dict[str, dict[str, str]] = {
    "vad": {"embedded": "operators.vad.silero:SileroVad"},
    "asr": {"embedded": "operators.asr.whisper:WhisperEngine"},
    "embed": {"embedded": "operators.ingest.embed:make_embedder"},
    "chunk": {"embedded": STORE},
    "index": {"embedded": STORE},
    "retrieve": {"embedded": STORE},
    "rewrite": {"embedded": "operators.generate.shared:shared_llama",
                "openai": "operators.generate.shared:shared_openai"},
    "answer": {"embedded": "operators.generate.shared:shared_llama",
               "openai": "operators.generate.shared:shared_openai"},
    "diarize": {"embedded": "operators.diarize.diarizer:Diarizer"},   # CAM++ in numpy
    "summarize": {"embedded": "operators.generate.shared:shared_llama",
                  "openai": "operators.generate.shared:shared_openai"},
    "agent": {"embedded": "operators.generate.shared:shared_llama",
              "openai": "operators.generate.shared:shared_openai"},
    "generate": {"embedded": "operators.generate.llama:LlamaEngine",
                 "openai": "operators.generate.openai:OpenAiEngine"},
    "synthesize": {"embedded": "operators.voice.tts.piper:PiperEngine",      # piper-tts CLI
                   "espeak": "operators.voice.tts.espeak:EspeakEngine"},
}


class RegistryError(LookupError):
    pass


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def operator_class(kind: str) -> type:
    """A registered kind, or your own operator named as "package.module:Class"."""
    if ":" in kind:
        return _load(kind)
    if kind not in OPERATORS:
        raise RegistryError(f"unknown operator kind {kind!r} (known: {', '.join(sorted(OPERATORS))})")
    return _load(OPERATORS[kind])


def engine_names(kind: str) -> list[str]:
    return sorted(ENGINES.get(kind, {}))


def engine_factory(kind: str, engine: str) -> Any:
    engines = ENGINES.get(kind, {})
    if not engines:
        if engine in ("", "embedded", "none"):
            return None
        raise RegistryError(f"operator kind {kind!r} takes no engine, got {engine!r}")
    if engine not in engines:
        raise RegistryError(
            f"unknown engine {engine!r} for {kind!r} (known: {', '.join(sorted(engines))})")
    return _load(engines[engine])
