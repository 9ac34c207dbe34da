#!/usr/bin/env bash
# Installs Debian's `espeak-ng`, the light fallback voice of the synthesize operator
# (engine: espeak; operators/voice/tts/espeak.py) and its tests. A no-op when espeak-ng is
# already on PATH. Uses sudo when not root. Called by infra/setup.sh and infra/test.sh.
set -euo pipefail

if command -v espeak-ng >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "espeak.sh: no apt-get here; install espeak-ng yourself for the espeak voice" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "espeak.sh: need root or sudo to apt-get install espeak-ng" >&2; exit 1; }
  SUDO="sudo"
fi

echo "installing espeak-ng (Debian package) for the fallback voice" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package index makes install fail with 404s; refresh it first.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends espeak-ng
command -v espeak-ng >/dev/null 2>&1
