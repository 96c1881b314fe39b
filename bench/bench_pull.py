#!/usr/bin/env python
"""An ``hf://`` pull (download, verify, store) from the loopback hub against the naive verified download.

    .venv/bin/python bench/bench_pull.py [--mb 500] [--runs 3]

Both fetch the same file from ``zoo serve`` on 127.0.0.1 (started here, in its own process):
- ours: ``zoo.weights.pull`` of a card whose source is ``hf://bench/big/model.safetensors`` (HEAD
  through huggingface_hub, streamed GET, hashing and writing overlapped in a worker thread,
  verified against the pinned sha256, atomically renamed into a fresh ZOO_HOME);
- baseline: one ``requests`` streaming GET whose loop writes each chunk to a file and feeds it to
  ``hashlib.sha256``.
Target: ratio (baseline time / ours) >= 1.0. Also prints the cost of integrity on the load path:
``open_weights`` (stamp check) against a full re-hash of the bundled lite0 weights.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _served import serve_random_file  # noqa: E402


def naive(url: str, out: Path) -> str:
    import requests

    digest = hashlib.sha256()
    with requests.get(url, stream=True) as r, open(out, "wb") as fh:
        for chunk in r.iter_content(1 << 20):
            fh.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from zoo.weights.cache import Cache
    from zoo.cards.card import card_from_dict, write_card
    from zoo.cards.registry import card as zoo_card

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        src = root / "big.bin"
        sha, proc, url = serve_random_file(src, root / "served", args.mb)
        cards = root / "cards"
        cards.mkdir()
        write_card(card_from_dict({  # the bundled lite0 card, re-pointed at the served file
            **{k: v for k, v in zoo_card("efficientnet_lite0").to_toml_dict().items() if k != "provenance"},
            "name": "bench_big.a", "architecture": "bench_big", "tag": "a", "aliases": [], "hub_repo": "bench/big",
            "sha256": sha, "size_bytes": src.stat().st_size, "sources": [{"uri": "hf://bench/big/model.safetensors"}],
        }), cards / "big.toml")
        try:
            os.environ.update(HF_ENDPOINT=url, ZOO_CARDS_PATH=str(cards), HF_HUB_DISABLE_TELEMETRY="1")
            from zoo.weights.pull import pull

            file_url = f"{url}/bench/big/resolve/main/model.safetensors"
            pull("bench_big.a", cache=Cache(root / "warm"))  # warm-up: imports, connection setup
            shutil.rmtree(root / "warm")
            naive(file_url, root / "naive.bin")
            t_ours, t_base = [], []
            for i in range(args.runs):
                home = root / f"home{i}"
                t0 = time.perf_counter()
                path = pull("bench_big.a", cache=Cache(home))
                t_ours.append(time.perf_counter() - t0)
                assert path.name == sha
                shutil.rmtree(home, ignore_errors=True)
                t0 = time.perf_counter()
                assert naive(file_url, root / "naive.bin") == sha
                t_base.append(time.perf_counter() - t0)
                (root / "naive.bin").unlink()
        finally:
            proc.terminate()
        o, b = statistics.median(t_ours), statistics.median(t_base)
        mb = args.mb
        print(f"hf:// pull of {mb} MB from loopback: ours {o:.2f} s ({mb / o:.0f} MB/s), naive verified download "
              f"{b:.2f} s ({mb / b:.0f} MB/s), ratio {b / o:.2f} (target >= 1.0)")

    # integrity on the hot path: the stamp check against a full hash of the bundled lite0
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(ZOO_HOME=home, ZOO_OFFLINE="1")
        from zoo.util.hashing import sha256_file
        from zoo.weights.pull import open_weights

        path = pull("efficientnet_lite0", cache=Cache(home))
        t_open = statistics.median(_time(lambda: open_weights("efficientnet_lite0", Cache(home))) for _ in range(20))
        t_hash = statistics.median(_time(lambda: sha256_file(path)) for _ in range(5))
        print(f"integrity on load (lite0): stamp check {t_open * 1e3:.2f} ms, full re-hash {t_hash * 1e3:.1f} ms, "
              f"ratio {t_hash / t_open:.0f}x cheaper")
    return 0 if b / o >= 1.0 else 1


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
