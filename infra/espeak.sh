#!/usr/bin/env bash
# Installs Debian's `espeak-ng`, the light fallback voice of the synthesize operator
# (engine: espeak; operators/voice/tts/espeak.py) and its tests. A no-op when espeak-ng is
# already on PATH. Uses sudo when not root. Called by infra/setup.sh and infra/test.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
apt_install espeak-ng "the espeak fallback voice" espeak-ng
