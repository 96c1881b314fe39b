#!/usr/bin/env bash
# Quick start, command 2: set up .venv if needed and run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m pytest "$@"
