"""Diarization engine: the numpy CAM++ port against the torch model, speaker separation on
real AMI speech, clustering with an unknown speaker count, streaming, bad input.
tests/data/campplus_reference.json was written by tests/data/make_campplus_reference.py."""
from __future__ import annotations

import io
import itertools
import json
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from operators.diarize import DiarizeConfig, Diarizer, Turn, read_rttm, read_uem, write_rttm
from operators.diarize.cluster import SpeakerRegistry, agglomerate, assign
from operators.diarize.embedder import sliding_windows
from operators.diarize.fbank import fbank, num_frames
from operators.diarize.rttm import RttmError, write_uem
from operators.diarize.torch_zip import TorchZipError, load_state_dict
from evals.diarization import union
from tests.audio_fixtures import DATA, load_16k

MIXTURE = DATA / "diarization" / "ami_mixture_es2004a"
REFERENCE = json.loads((Path(__file__).parent / "data" / "campplus_reference.json").read_text())
needs_mixture = pytest.mark.skipif(not MIXTURE.exists(), reason=f"no shared data at {DATA}")


@pytest.fixture(scope="module")
def diarizer() -> Diarizer:
    return Diarizer(DiarizeConfig())



# --- without the model -------------------------------------------------------------------

def test_fbank_shape_and_silence():
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(16_000) == 98
    feats = fbank(np.zeros(16_000, np.float32))        # log of zero energy: floored, finite
    assert feats.shape == (98, 80) and np.isfinite(feats).all()
    assert fbank(np.zeros(100, np.float32)).shape == (0, 80)


def _fake_torch(monkeypatch):
    """Modules named like torch's, so pickle writes the globals a real torch.save writes."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        pass

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", \
        "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return FloatStorage, _rebuild_tensor_v2


def _torch_zip(path: Path, monkeypatch, storage: np.ndarray, offset: int, size, stride) -> None:
    storage_cls, rebuild = _fake_torch(monkeypatch)

    class Tensor:
        def __reduce__(self):
            return rebuild, (_Storage(), offset, size, stride, False, {})

    class _Storage:
        pass

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", storage_cls, "0", "cpu", storage.size) \
                if isinstance(obj, _Storage) else None

    buf = io.BytesIO()
    Writer(buf, protocol=2).dump({"w": Tensor()})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/data/0", storage.astype("<f4").tobytes())


def test_torch_zip_reader_rebuilds_strided_tensors(tmp_path, monkeypatch):
    """A transposed view at an offset, as torch.save writes a non-contiguous tensor."""
    storage = np.arange(20, dtype=np.float32)
    _torch_zip(tmp_path / "w.pt", monkeypatch, storage, 2, (3, 4), (1, 3))
    monkeypatch.delitem(sys.modules, "torch")
    got = load_state_dict(tmp_path / "w.pt")["w"]
    np.testing.assert_array_equal(got, storage[2:14].reshape(4, 3).T)


def test_torch_zip_reader_refuses_code_and_non_zip(tmp_path):
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(TorchZipError, match="os.system is not allowed"):
        load_state_dict(evil)
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(TorchZipError, match="not a zip"):
        load_state_dict(tmp_path / "legacy.pt")


def test_sliding_windows_cover_the_region():
    assert sliding_windows(0, 4_000, 24_000, 12_000) == []             # under 0.3 s
    assert sliding_windows(0, 10_000, 24_000, 12_000) == [(0, 10_000)]
    assert sliding_windows(0, 40_000, 24_000, 12_000) == [(0, 24_000), (12_000, 36_000),
                                                          (16_000, 40_000)]


def _brute_force(cost: np.ndarray) -> float:
    if len(cost) > cost.shape[1]:
        return _brute_force(cost.T)
    return min(sum(cost[r, c] for r, c in enumerate(cols))
               for cols in itertools.permutations(range(cost.shape[1]), len(cost)))


def test_assignment_is_optimal():
    rng = np.random.default_rng(3)
    for rows, cols in itertools.product(range(1, 6), range(1, 6)):
        cost = rng.random((rows, cols))
        pairs = assign(cost)
        assert len(pairs) == min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(_brute_force(cost))


def _speakers(rng, k: int, per: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """k random directions in 192-d and `per` noisy unit vectors around each."""
    centres = rng.standard_normal((k, 192))
    labels = np.repeat(np.arange(k), per)
    x = centres[labels] / np.sqrt(192) + noise * rng.standard_normal((k * per, 192)) / np.sqrt(192)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_clustering_finds_the_number_of_well_separated_speakers(k):
    x, truth = _speakers(np.random.default_rng(k), k, 12, noise=0.8)
    labels = agglomerate(x, threshold=0.25, min_size=3)
    assert len(set(labels)) == k
    for group in range(k):    # each true speaker is one cluster, whole
        assert len(set(labels[truth == group])) == 1


def test_small_clusters_fold_into_the_nearest_large_one():
    x, _ = _speakers(np.random.default_rng(0), 2, 10, noise=0.5)
    outlier = np.random.default_rng(1).standard_normal((1, 192))
    x = np.vstack([x, outlier / np.linalg.norm(outlier)])
    assert len(set(agglomerate(x, 0.25, min_size=1))) == 3
    assert len(set(agglomerate(x, 0.25, min_size=3))) == 2


def test_registry_keeps_identities_across_chunks():
    x, truth = _speakers(np.random.default_rng(5), 3, 20, noise=0.8)
    registry = SpeakerRegistry(threshold=0.55, dim=192)
    first = registry.match(np.stack([x[truth == i][:10].sum(0) for i in (0, 1)]),
                           np.array([10, 10]))
    second = registry.match(np.stack([x[truth == i][10:].sum(0) for i in (2, 1, 0)]),
                            np.array([10, 10, 10]))
    assert list(first) == [0, 1] and list(second) == [2, 1, 0] and len(registry) == 3


def test_rttm_and_uem_round_trip():
    turns = [Turn(0.5, 1.25, "A"), Turn(1.0, 3.0, "B")]
    assert read_rttm(write_rttm("rec1", turns)) == {"rec1": turns}
    assert read_uem(write_uem("rec1", [(0.0, 30.0)])) == {"rec1": [(0.0, 30.0)]}
    assert read_rttm(";; comment\nSPKR-INFO rec1 1 <NA> <NA> <NA> unknown A <NA> <NA>\n") == {}
    with pytest.raises(RttmError, match="line 1"):
        read_rttm("SPEAKER rec1 1 zero 1.0 <NA> <NA> A <NA> <NA>")
    with pytest.raises(RttmError):
        write_rttm("two words", turns)


# --- with the model ----------------------------------------------------------------------

@pytest.mark.models
@needs_mixture
def test_port_matches_the_torch_model(diarizer):
    """Our fbank + numpy network against kaldi-native-fbank + torch CAM++, clip by clip
    (0.3 s to 12 s: the 12 s clip spans several of CAM's pooling segments)."""
    embedder = diarizer.embedder
    for clip in REFERENCE["clips"]:
        pcm = load_16k(DATA / "diarization" / clip["file"])
        window = (int(clip["start"] * 16_000), int(clip["end"] * 16_000))
        got = embedder.embed(pcm, [window])[0]
        want = np.array(clip["embedding"])
        assert num_frames(window[1] - window[0]) == clip["frames"]
        assert got @ want / np.linalg.norm(want) > 0.9999, clip["file"]


def _loudest_windows(pcm: np.ndarray, start: int, end: int, n: int,
                     others: list[Turn]) -> list[tuple[int, int]]:
    """The n loudest disjoint 1.5 s windows on a 0.5 s grid that no other speaker's turn
    touches: a long turn has pauses, and laughter or crosstalk where others speak."""
    grid = [s for s in range(start, end - 24_000, 8_000)
            if not any(t.start * 16_000 < s + 24_000 and s < t.end * 16_000 for t in others)]
    loud = sorted(grid, key=lambda s: -float(np.square(pcm[s:s + 24_000]).mean()))
    chosen: list[int] = []
    for s in loud:
        if all(abs(s - c) >= 24_000 for c in chosen):
            chosen.append(s)
    return [(s, s + 24_000) for s in sorted(chosen[:n])]


def _long_turn_windows(embedder, all_turns: list[Turn]) -> tuple[np.ndarray, list[str]]:
    """Four windows from each of the three long turns of ES2004a, each read from the
    per-speaker source with the most energy in that turn (the sources are not labelled)."""
    sources = [load_16k(p) for p in sorted((MIXTURE / "sources").glob("source*.wav"))]
    vectors, names = [], []
    for turn in [t for t in all_turns if t.duration > 10]:
        start, end = int(turn.start * 16_000), int(turn.end * 16_000)
        pcm = max(sources, key=lambda s: float(np.square(s[start:end]).sum()))
        others = [t for t in all_turns if t.speaker != turn.speaker]
        vectors.append(embedder.embed(pcm, _loudest_windows(pcm, start, end, 4, others)))
        names += [turn.speaker] * 4
    return np.concatenate(vectors), names


@pytest.mark.models
@needs_mixture
def test_same_speaker_is_closer_than_different_speakers(diarizer):
    turns = read_rttm(MIXTURE / "mixture.rttm")["mixture"]
    x, names = _long_turn_windows(diarizer.embedder, turns)
    assert len(set(names)) == 3 and len(names) == 12
    sim = x @ x.T
    same = np.equal.outer(names, names)
    off = ~np.eye(len(x), dtype=bool)
    assert sim[same & off].min() > sim[~same].max()     # every pair, not just on average
    assert sim[same & off].mean() - sim[~same].mean() > 0.3


@pytest.mark.models
@pytest.mark.slow
@needs_mixture
def test_mixture_speaker_count_within_one(diarizer):
    turns = read_rttm(MIXTURE / "mixture.rttm")["mixture"]
    hyp = diarizer.diarize(load_16k(MIXTURE / "mixture.wav"), union(turns))
    assert abs(len({t.speaker for t in hyp}) - 4) <= 1
    assert all(a.end <= b.start + 1e-9 for a, b in zip(hyp, hyp[1:]))   # one at a time


@pytest.mark.models
@pytest.mark.slow
@needs_mixture
def test_block_size_does_not_change_the_result(diarizer):
    """Windows are a fixed grid over each span, so feeding 7.3 s blocks (spans given as soon
    as they start, some still running past the block) gives what the whole file gives."""
    pcm = load_16k(MIXTURE / "mixture.wav")
    speech = union(read_rttm(MIXTURE / "mixture.rttm")["mixture"])
    whole = diarizer.diarize(pcm, speech)
    stream, turns, block = diarizer.stream(), [], int(7.3 * 16_000)
    for i in range(0, len(pcm), block):
        now = [s for s in speech if i <= s[0] * 16_000 < i + block]
        turns += stream.feed(pcm[i:i + block], now)
    assert turns + stream.finish() == whole


@pytest.mark.models
@pytest.mark.slow
@needs_mixture
def test_streamed_chunks_keep_speaker_labels(diarizer):
    """The mixture twice, end to end, through 30 s chunks: the second copy must get the
    labels the first got, chunk after chunk, and no new speakers."""
    pcm = load_16k(MIXTURE / "mixture.wav")
    speech = union(read_rttm(MIXTURE / "mixture.rttm")["mixture"])
    stream = Diarizer(DiarizeConfig(chunk_s=30.0), diarizer.embedder).stream()
    turns = []
    for copy in range(2):
        for i in range(0, len(pcm), 80_000):
            now = [(a + 60 * copy, b + 60 * copy) for a, b in speech
                   if i <= a * 16_000 < i + 80_000]
            turns += stream.feed(pcm[i:i + 80_000], now)
    turns += stream.finish()
    first = [(round(t.start, 2), round(t.end, 2), t.speaker) for t in turns if t.end <= 60]
    second = [(round(t.start - 60, 2), round(t.end - 60, 2), t.speaker)
              for t in turns if t.start >= 60]
    assert first == second and stream.speakers == len({t.speaker for t in turns}) <= 5


@pytest.mark.models
@pytest.mark.parametrize("seconds, speech", [
    (0.0, [(0.0, 1.0)]),            # empty audio, speech claimed
    (3.0, []),                      # silence, no speech
    (3.0, [(0.0, 3.0)]),            # digital silence called speech
    (0.5, [(0.0, 0.5)]),            # under 1 s
    (0.2, [(0.0, 0.2)]),            # under one window
    (2.0, [(1.5, 9.0), (-1.0, 0.1), (1.0, 0.5)]),   # out of range, inverted
])
def test_bad_input_gives_at_most_one_speaker(diarizer, seconds, speech):
    pcm = np.zeros(int(seconds * 16_000), np.float32)
    turns = diarizer.diarize(pcm, speech)
    assert len({t.speaker for t in turns}) <= 1
    assert all(0 <= t.start < t.end <= max(seconds, 0) + 1e-9 for t in turns)


@pytest.mark.models
def test_int16_and_nan_audio_are_accepted(diarizer):
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(32_000) * 3000).astype(np.int16)
    assert len({t.speaker for t in diarizer.diarize(noise, [(0.0, 2.0)])}) == 1
    broken = rng.standard_normal(32_000).astype(np.float32) * 0.1
    broken[100:200] = np.nan
    assert len({t.speaker for t in diarizer.diarize(broken, None)}) == 1
    with pytest.raises(ValueError, match="mono"):
        diarizer.diarize(np.zeros((2, 16_000), np.float32), None)
