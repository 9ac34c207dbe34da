"""The embedded ASR engine: faster-whisper (CTranslate2, int8 on CPU) on a packaged model."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from operators.asr.operator import AsrConfig
from operators.models import model_path
from schemas import TranscriptSegment, Word


class WhisperEngine:
    """Loads the model once, on first use or on load(); safe to call from worker threads."""

    def __init__(self, config: AsrConfig | None = None):
        self.config = config or AsrConfig()
        self.model = self.config.model
        self._whisper: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:  # two first jobs at once must not load (or join) the model twice
            if self._whisper is None:
                self._whisper = _whisper_model(self.config)

    @property
    def multilingual(self) -> bool:
        self.load()
        return bool(self._whisper.model.is_multilingual)

    def transcribe(self, pcm: np.ndarray, prompt: str = "", language: str = "",
                   words: bool = True) -> list[TranscriptSegment]:
        """16 kHz float32 mono in; segments (with words unless `words` is False: a live
        partial needs none), times relative to the input."""
        self.load()
        segments, _info = self._whisper.transcribe(
            np.asarray(pcm, dtype=np.float32), language=language or None,
            initial_prompt=prompt or None, beam_size=self.config.beam_size,
            word_timestamps=words, vad_filter=False,  # the VAD operator has done that
            condition_on_previous_text=False)        # the operator passes its own prompt
        return [_segment(s) for s in segments]  # the generator decodes as it is consumed


def _whisper_model(config: AsrConfig) -> Any:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ImportError("the embedded ASR engine needs faster-whisper: "
                          "pip install faster-whisper==1.2.1 ctranslate2==4.8.5") from exc
    return WhisperModel(str(model_path(config.model)), device="cpu", compute_type="int8",
                        cpu_threads=config.cpu_threads)


def _segment(s: Any) -> TranscriptSegment:
    words = [Word(word=w.word.strip(), start=round(w.start, 3), end=round(w.end, 3),
                  probability=round(w.probability, 4)) for w in (s.words or [])]
    return TranscriptSegment(start=round(s.start, 3), end=round(s.end, 3), text=s.text.strip(),
                             words=words, avg_logprob=round(s.avg_logprob, 4),
                             no_speech_prob=round(s.no_speech_prob, 4))
