#!/usr/bin/env bash
# The tests start their own redis-server processes; this makes sure the binary exists.
# On a Debian/Ubuntu machine where we are root it installs it; elsewhere it says what to do.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "capfilt tests: installing redis-server (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
echo "capfilt tests need redis-server on PATH (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis)" >&2
exit 1
