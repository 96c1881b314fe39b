#!/usr/bin/env python
"""Warm-cache ``zoo.load("efficientnet_lite0")`` against the bare timm + safetensors load of the same file.

    .venv/bin/python bench/bench_load.py [--runs 15]

Both in this process, alternating, after a warm-up (the weights are cached and verified first):
- ours: ``zoo.load("efficientnet_lite0")`` (resolve the card, verified open, build, load, eval);
- baseline: ``timm.create_model("tf_efficientnet_lite0", pretrained=False)`` +
  ``safetensors.torch.load_file`` + ``load_state_dict`` on the same blob.
Target ratio <= 1.10. Also checks that ``import zoo`` does not import torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(ZOO_HOME=home, ZOO_OFFLINE="1")
        import timm
        import torch
        from safetensors.torch import load_file

        import zoo

        path = str(zoo.pull("efficientnet_lite0"))
        torch.set_num_threads(1)  # one core each: less noise, same work for both

        def ours():
            return zoo.load("efficientnet_lite0")

        def baseline():
            model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
            model.load_state_dict(load_file(path))
            return model.eval()

        for fn in (ours, baseline, ours, baseline):  # warm-up: imports, allocator, page cache
            fn()
        t_ours, t_base = [], []
        for _ in range(args.runs):
            for fn, acc in ((ours, t_ours), (baseline, t_base)):
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
        o, b = statistics.median(t_ours), statistics.median(t_base)
        print(f"warm zoo.load(efficientnet_lite0): ours {o * 1e3:.1f} ms, timm + safetensors {b * 1e3:.1f} ms, "
              f"ratio {o / b:.2f} (target <= 1.10)")
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import zoo"], capture_output=True, text=True).stderr
    heavy = [m for m in ("torch", "timm", "huggingface_hub") if f"| {m}\n" in imports + "\n" or imports.rstrip().endswith(f"| {m}")]
    print(f"import zoo imports torch/timm/huggingface_hub: {'yes: ' + ', '.join(heavy) if heavy else 'no'}")
    return 0 if o / b <= 1.10 and not heavy else 1


if __name__ == "__main__":
    raise SystemExit(main())
