#!/usr/bin/env bash
# Quick start, command 1: set up .venv (see tools/setup.sh) and run the main job, fully offline:
# the model table, then a real prediction with the bundled ImageNet weights on two real photos
# that ship inside installed packages (skimage's chelsea, sklearn's china), written to files first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export ZOO_OFFLINE=1
.venv/bin/zoo list --sort top1
photos=$(mktemp -d)
trap 'rm -rf "$photos"' EXIT
.venv/bin/python - "$photos" <<'PY'
import sys
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_images
Image.fromarray(data.chelsea()).save(f"{sys.argv[1]}/chelsea.jpg")
Image.fromarray(load_sample_images().images[0]).save(f"{sys.argv[1]}/china.jpg")
PY
.venv/bin/zoo predict efficientnet_lite0 "$photos"/chelsea.jpg "$photos"/china.jpg --top 5
