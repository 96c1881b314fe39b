#!/usr/bin/env bash
# Quick start, command 1: set up .venv (see tools/setup.sh) and run the main job, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/zoo list --sort top1
