#!/usr/bin/env bash
# Installs Debian's headless-capable `chromium` for the web page tests (tests/test_gateway_page.py).
# A no-op when a chromium binary is already on PATH. Uses sudo when not root. Called by
# infra/setup.sh and infra/test.sh; safe to run again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
apt_install chromium "the web page tests" chromium chromium-browser
