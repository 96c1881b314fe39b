"""Shared by the benches that need a served file: a random file in a served cache, and ``zoo serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = "bench/big"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def serve_random_file(src: Path, served: Path, mb: int) -> tuple[str, subprocess.Popen, str]:
    """Write ``mb`` MB of random bytes to ``src``, cache them in ``served`` under repo ``bench/big``
    and start ``zoo serve`` on it; returns (sha256, server process, base URL)."""
    from zoo.weights.cache import Cache

    src.write_bytes(os.urandom(mb * 1_000_000))
    sha = Cache(served).add_file(src)
    Cache(served).record("bench_big.a", sha, src.stat().st_size, "bench", hub_repo=REPO)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(port), "--cache", str(served)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/api/zoo/stats")
    return sha, proc, url


def verdict(label: str, value: float, target: float) -> int:
    """Print the bench's headline figure against its target; the exit status: 0 within it, 1 over."""
    print(f"{label} {value:.2f} (target <= {target:g}): {'ok' if value <= target else 'OVER'}")
    return 0 if value <= target else 1
