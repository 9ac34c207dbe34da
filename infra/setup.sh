#!/usr/bin/env bash
# The README's first command: install everything, then run the main job on embedded defaults
# (transcribe a sample recording with an embedded nats-server and the real models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
bash infra/browser.sh      # Debian chromium, for the web page tests
bash infra/espeak.sh       # Debian espeak-ng, the light fallback voice
sample=${1:-../shared/data/asr/librispeech_wenet/1995-1837-0001.wav}
if [ ! -f "$sample" ]; then
  echo "installed. No sample at $sample: run .venv/bin/patchwire transcribe YOUR_FILE" >&2
  exit 0
fi
echo "patchwire transcribe $sample" >&2
.venv/bin/patchwire transcribe --progress "$sample"
