#!/usr/bin/env python
"""How fast ``zoo list`` answers, against the floor for any rich CLI that reads TOML.

    .venv/bin/python bench/bench_list.py [--runs 15]

Measures median wall time of whole processes (start-up included, output to /dev/null), runs
interleaved so machine noise hits all commands alike:

- ours: ``zoo list --sort top1`` (the console script);
- baseline: ``python -c "import rich.console, rich.table, tomllib"``; target ratio <= 2.0;
- reference: ``python -c "import torch"``, what ``zoo list`` would cost if it imported torch.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 2.0


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    zoo = shutil.which("zoo", path=str(Path(sys.executable).parent)) or "zoo"
    commands = {
        "zoo list --sort top1": [zoo, "list", "--sort", "top1"],
        "import rich.console, rich.table, tomllib": [sys.executable, "-c", "import rich.console, rich.table, tomllib"],
        "import torch": [sys.executable, "-c", "import torch"],
    }
    # Byte-compile zoo as any pip install does: the baseline's rich modules have their .pyc, and with
    # PYTHONDONTWRITEBYTECODE set (as in this workplace) an editable zoo would be re-compiled every run.
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "zoo"), quiet=1)
    for cmd in commands.values():  # warm the page cache
        wall(cmd)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for key, cmd in commands.items():
            times[key].append(wall(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    ours, base, torch = med["zoo list --sort top1"], med["import rich.console, rich.table, tomllib"], med["import torch"]
    print(f"zoo list: ours {ours * 1e3:.1f} ms, baseline (rich + tomllib import) {base * 1e3:.1f} ms, "
          f"ratio {ours / base:.2f} (target {TARGET})")
    print(f"zoo list vs import torch: ours {ours * 1e3:.1f} ms, import torch {torch * 1e3:.1f} ms, ratio {ours / torch:.2f}")
    return 0 if ours / base <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
