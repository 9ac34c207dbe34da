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
  # silero-vad's own package imports torch; we only read its ONNX file, so no dependencies.
  .venv/bin/python -m pip install -q --no-deps silero-vad==6.2.3
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# Join multi-part weights once into the cache and verify their sha256.
.venv/bin/patchwire models >/dev/null || .venv/bin/patchwire models
