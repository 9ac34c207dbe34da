"""Voice activity detection: where in a recording someone speaks."""
from operators.vad.operator import SpeechDetector, SpeechStream, Vad, VadConfig

__all__ = ["SpeechDetector", "SpeechStream", "Vad", "VadConfig"]
