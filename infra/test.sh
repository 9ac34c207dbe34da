#!/usr/bin/env bash
# The README's second command (and CI's): install if needed, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install.sh
bash infra/browser.sh      # Debian chromium, for the web page tests
bash infra/espeak.sh       # Debian espeak-ng, the light fallback voice
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
