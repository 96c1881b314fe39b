#!/usr/bin/env bash
# Quick start, command 1: set up .venv (see tools/setup.sh) and run the main job, offline:
# the model table, then the bundled real ImageNet weights converted, verified and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/zoo list --sort top1
ZOO_OFFLINE=1 .venv/bin/zoo pull efficientnet_lite0 efficientnet_lite1 efficientnet_lite2
ZOO_OFFLINE=1 .venv/bin/zoo verify efficientnet_lite0 efficientnet_lite1 efficientnet_lite2
