"""Decode any audio or video file to 16 kHz mono PCM."""
from operators.decode.operator import Decode, DecodeConfig

__all__ = ["Decode", "DecodeConfig"]
