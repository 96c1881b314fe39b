#!/usr/bin/env python
"""``zoo serve`` against ``python -m http.server`` serving the same 500 MB file, same client, same run.

    .venv/bin/python bench/bench_serve.py [--mb 500] [--runs 3]

- one client: a ``requests`` streaming GET of the file's resolve URL on zoo serve vs the file's
  URL on http.server; target ratio (throughput) >= 0.8, aim 1.0;
- eight concurrent clients: aggregate throughput of both;
- ``hf_hub_download``'s own time for the file from zoo serve, for reference;
- memory: zoo serve's RSS growth while the eight clients download (target < 100 MB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _served import free_port, serve_random_file, wait_up  # noqa: E402


def get(url: str) -> int:
    import requests

    n = 0
    with requests.get(url, stream=True) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            n += len(chunk)
    return n


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        plain = root / "plain"
        plain.mkdir()
        src = plain / "model.safetensors"
        sha, zoo, zbase = serve_random_file(src, root / "served", args.mb)
        pport = free_port()
        http = subprocess.Popen([sys.executable, "-m", "http.server", str(pport), "--bind", "127.0.0.1",
                                 "--directory", str(plain)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            zurl = f"{zbase}/bench/big/resolve/main/model.safetensors"
            purl = f"http://127.0.0.1:{pport}/model.safetensors"
            wait_up(f"http://127.0.0.1:{pport}/")
            get(zurl), get(purl)  # warm-up
            t_z, t_p = [], []
            for _ in range(args.runs):
                for url, acc in ((zurl, t_z), (purl, t_p)):
                    t0 = time.perf_counter()
                    get(url)
                    acc.append(time.perf_counter() - t0)
            z, p = statistics.median(t_z), statistics.median(t_p)
            print(f"one client, {args.mb} MB: zoo serve {z:.2f} s ({args.mb / z:.0f} MB/s), http.server {p:.2f} s "
                  f"({args.mb / p:.0f} MB/s), ratio {p / z:.2f} (target >= 0.8)")
            before = rss_mb(zoo.pid)
            peak = [before]
            agg = {}
            for label, url, proc in (("zoo serve", zurl, zoo), ("http.server", purl, http)):
                t0 = time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    futures = [pool.submit(get, url) for _ in range(8)]
                    while not all(f.done() for f in futures):
                        if proc is zoo:
                            peak.append(rss_mb(zoo.pid))
                        time.sleep(0.05)
                    assert all(f.result() == src.stat().st_size for f in futures)
                agg[label] = 8 * args.mb / (time.perf_counter() - t0)
            print(f"eight clients: zoo serve {agg['zoo serve']:.0f} MB/s aggregate, http.server "
                  f"{agg['http.server']:.0f} MB/s, ratio {agg['zoo serve'] / agg['http.server']:.2f}")
            growth = max(peak) - before
            print(f"zoo serve RSS during eight downloads: {before:.0f} -> {max(peak):.0f} MB, growth {growth:.0f} MB (target < 100 MB)")
            env = {**os.environ, "HF_ENDPOINT": zbase, "HF_HOME": str(root / "hf"),
                   "HF_HUB_DISABLE_TELEMETRY": "1"}
            code = "import time; from huggingface_hub import hf_hub_download; t=time.perf_counter(); hf_hub_download('bench/big', 'model.safetensors'); print(time.perf_counter()-t)"
            t_hf = float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
            print(f"hf_hub_download of the same file from zoo serve: {t_hf:.2f} s ({args.mb / t_hf:.0f} MB/s)")
            shutil.rmtree(root / "hf", ignore_errors=True)
        finally:
            zoo.terminate()
            http.terminate()
    return 0 if p / z >= 0.8 and growth < 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
