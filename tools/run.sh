#!/usr/bin/env bash
# Quick start, command 1: set up .venv (see tools/setup.sh) and run the main job, fully offline:
# the model table, then a real prediction with the bundled ImageNet weights on two real photos
# that ship inside installed packages (skimage's chelsea, sklearn's china), written to files first,
# then transfer learning: a new 10-class head fine-tuned on 400 of sklearn's handwritten digits,
# and a prediction of that run on a digit it never saw.
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
import os
import numpy as np
from sklearn.datasets import load_digits
digits = load_digits()
for i, (img, label) in enumerate(zip(digits.images, digits.target)):
    if i >= 400 and i != 1700:
        continue
    folder = f"{sys.argv[1]}/digits/{label}" if i < 400 else sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize((64, 64), Image.BICUBIC).save(f"{folder}/digit{i}.png")
PY
.venv/bin/zoo predict efficientnet_lite0 "$photos"/chelsea.jpg "$photos"/china.jpg --top 5
.venv/bin/zoo finetune efficientnet_lite0 --data "$photos"/digits --out "$photos"/run --epochs 30
.venv/bin/zoo predict "$photos"/run "$photos"/digit1700.png --top 3
