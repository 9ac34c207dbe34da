#!/usr/bin/env bash
# apt_install PACKAGE PURPOSE COMMAND...: installs one Debian package, idempotently.
# A no-op when any COMMAND is already on PATH; otherwise apt-get installs PACKAGE (with sudo
# when not root) and checks that the first COMMAND is now there. Says plainly what to install
# by hand when there is no apt-get. Sourced by infra/browser.sh and infra/espeak.sh, so its
# messages carry their names.

apt_install() {
  local package=$1 purpose=$2 name=${0##*/} command sudo=""
  shift 2
  for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 && return 0
  done
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: no apt-get here; install $package yourself for $purpose" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "$name: need root or sudo to apt-get install $package" >&2; return 1; }
    sudo="sudo"
  fi
  echo "installing $package (Debian package) for $purpose" >&2
  # A stale package index makes install fail with 404s; refresh it first.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package"
  command -v "$1" >/dev/null 2>&1 || { echo "$name: installed $package but found no $1 on PATH" >&2; return 1; }
}
