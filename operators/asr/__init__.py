"""Speech recognition: speech segments in, a transcript with word timestamps out."""
from operators.asr.operator import Asr, AsrConfig, Transcriber, plan_windows

__all__ = ["Asr", "AsrConfig", "Transcriber", "plan_windows"]
