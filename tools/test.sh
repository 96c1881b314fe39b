#!/usr/bin/env bash
# Quick start, command 2: set up .venv if needed and run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# The browser tests (tests/hub/test_hub_pages.py) drive Debian's chromium through Playwright, whose
# own browser download needs the internet. Installed here when missing and we may (root, apt);
# where it cannot be, those tests skip and say why (the apt output is in .venv/chromium-install.log).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (apt-get)..." >&2
  log=.venv/chromium-install.log
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } >"$log" 2>&1 ||
    echo "warning: apt-get could not install chromium (see $log): the browser tests will skip" >&2
fi
exec .venv/bin/python -m pytest "$@"
