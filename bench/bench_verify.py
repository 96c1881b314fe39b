#!/usr/bin/env python
"""``zoo verify`` (the CLI, whole process) against ``openssl dgst -sha256`` on the same files.

    .venv/bin/python bench/bench_verify.py [--gb 2] [--runs 3]

Prints, measured in the same run (files in the page cache, as right after a download):
- one 2 GB file: zoo verify vs openssl dgst -sha256; target ratio (throughput) >= 0.9;
- four 250 MB files: zoo verify (threads over both cores) vs openssl on each in turn;
- peak RSS of ``zoo verify`` on a 500 MB file: target < 150 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.weights.cache import Cache  # noqa: E402
from zoo.util.tempfiles import unique_suffix  # noqa: E402

ZOO = [sys.executable, "-m", "zoo"]


def make_blob(cache: Cache, name: str, size: int) -> Path:
    """A random file stored as a cached blob with an index entry, as a pull would leave it."""
    digest = hashlib.sha256()
    cache.blobs.mkdir(parents=True, exist_ok=True)
    tmp = cache.blobs / f".incomplete-bench-{name}.{unique_suffix()}"
    block = os.urandom(16 << 20)
    with open(tmp, "wb") as fh:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            fh.write(piece)
            digest.update(piece)
            left -= len(piece)
            block = block[1:] + block[:1]  # not one repeated block
    sha = digest.hexdigest()
    cache.commit_file(tmp, sha)
    cache.record(name, sha, size, "bench")
    return cache.blob_path(sha)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def peak_rss_mb(cmd: list[str], env: dict) -> float:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


def compare(label: str, ours: list[str], base_cmds: list[list[str]], env: dict, runs: int, target: float | None) -> float:
    t_ours, t_base = [], []
    for _ in range(runs):
        t_ours.append(timed(ours, env))
        t_base.append(sum(timed(c, env) for c in base_cmds))
    o, b = statistics.median(t_ours), statistics.median(t_base)
    tail = f" (target >= {target})" if target else ""
    print(f"{label}: ours {o:.2f} s, baseline {b:.2f} s, ratio {b / o:.2f}{tail}")
    return b / o


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("openssl"):
        print("openssl not found: no baseline")
        return 1
    ok = True
    with tempfile.TemporaryDirectory() as root:
        home = Path(root) / "big"
        env = {**os.environ, "ZOO_HOME": str(home)}
        big = make_blob(Cache(home), "bench_big.a", int(args.gb * 1e9))
        ratio = compare(f"zoo verify, one {args.gb:g} GB file vs openssl dgst -sha256", ZOO + ["verify"],
                        [["openssl", "dgst", "-sha256", str(big)]], env, args.runs, 0.9)
        ok &= ratio >= 0.9
        shutil.rmtree(home)

        home = Path(root) / "four"
        env = {**os.environ, "ZOO_HOME": str(home)}
        files = [make_blob(Cache(home), f"bench_part.{i}", 250_000_000) for i in range(4)]
        compare("zoo verify, four 250 MB files (both cores) vs openssl on each in turn", ZOO + ["verify"],
                [["openssl", "dgst", "-sha256", str(f)] for f in files], env, args.runs, None)
        shutil.rmtree(home)

        home = Path(root) / "mem"
        env = {**os.environ, "ZOO_HOME": str(home)}
        make_blob(Cache(home), "bench_mem.a", 500_000_000)
        rss = peak_rss_mb(ZOO + ["verify"], env)
        print(f"zoo verify peak RSS on a 500 MB file: {rss:.0f} MB (target < 150 MB)")
        ok &= rss < 150
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
