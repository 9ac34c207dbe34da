#!/usr/bin/env bash
# Installs Debian's headless-capable `chromium` for the web page tests (tests/test_gateway_page.py).
# A no-op when a chromium binary is already on PATH. Uses sudo when not root. Called by
# infra/setup.sh and infra/test.sh; safe to run again.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser.sh: no apt-get here; install chromium yourself for the page tests" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "browser.sh: need root or sudo to apt-get install chromium" >&2; exit 1; }
  SUDO="sudo"
fi

echo "installing chromium (Debian package) for the web page tests" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package index makes install fail with 404s; refresh it first.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
command -v chromium >/dev/null 2>&1
