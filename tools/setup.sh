#!/usr/bin/env bash
# Create (or reuse) .venv in the repo root and install zoo with everything the tests need.
# Idempotent: re-installs only when pyproject.toml or this script changed since the last install.
# torch/torchvision are pinned here only (the local wheels of this workplace); pyproject.toml keeps
# open ranges so users elsewhere bring their own torch.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
EXTRAS='.[lite,serve,features,plot,s3,fast,test]'

pick_python() {
  for py in "${PYTHON:-}" python3.11 python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo "$py"; return; }
  done
  echo "error: zoo needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi

stamp=.venv/.zoo-install-stamp
want=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # pip warns once per missing local index directory; those lines are noise, errors still show
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet .venv/bin/python -m pip install -q "${TORCH_PINS[@]}"
  quiet .venv/bin/python -m pip install -q -e "$EXTRAS" "${TORCH_PINS[@]}"
  echo "$want" > "$stamp"
fi
