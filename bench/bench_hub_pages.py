#!/usr/bin/env python
"""What the hub's pages cost against the JSON answers the API gives for the same repos.

    .venv/bin/python bench/bench_hub_pages.py [--repos 1000] [--calls 20] [--stores directory,s3]

One ``zoo serve`` per store (a directory, and ``--storage s3://`` on a local SeaweedFS) over
``--repos`` uploaded repos, each a commit of a README (licence, library, tags; every tenth a head
naming a base through ``base_model``) and a safetensors file, written through the store's own
commit path. Measured in the same run, in interleaved rounds, by requests over loopback (median):
- the index page (``/``, every repo, sorted by name) against ``list_models`` (``/api/models``, the
  same repos as JSON): target ratio <= 2;
- a base model's page (``/ORG/NAME``: figures, README, files, refs, commits, its heads) against
  ``model_info`` of the same repo: reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _served import free_port, verdict, wait_up  # noqa: E402
from seaweed import SeaweedFS  # noqa: E402

README = """---
license: {licence}
library_name: {library}
tags: [image-classification, bench, group-{group}]
{base}---
# bench model {i}

A model the bench made: [its weights](model.safetensors).

| figure | value |
| ------ | ----- |
| index | {i} |
"""


def populate(root: Path, repos: int, storage: str | None, env: dict) -> None:
    """``repos`` repos, committed through the store (what a commit through the API ends in)."""
    os.environ.update(env)
    import numpy as np
    from safetensors.numpy import save_file

    from zoo.hub.served import ServedRepos
    from zoo.store.objects import open_storage
    from zoo.store.repos import git_blob_oid
    from zoo.weights.cache import Cache

    cache = Cache(root)
    served = ServedRepos(cache, open_storage(storage) if storage else None)
    store = served.store
    weights = root.parent / f"{root.name}-w.safetensors"
    save_file({"w": np.zeros((64, 64), np.float32), "b": np.zeros(64, np.float32)}, str(weights))
    w_sha = cache.add_file(weights)
    served.blobs.stored(w_sha)
    texts = []
    for i in range(repos):
        base = "base_model: org0/model-0000\n" if i % 10 == 0 and i else ""
        text = README.format(licence=("mit", "apache-2.0", "cc-by-4.0")[i % 3], library=("timm", "zoo")[i % 2],
                             group=i % 7, base=base, i=i).encode()
        readme = root.parent / f"{root.name}-README-{i}.md"
        readme.write_bytes(text)
        texts.append((text, cache.add_file(readme)))

    def make(i: int) -> None:
        text, sha = texts[i]
        repo_id = f"org{i % 10}/model-{i:04d}"
        served.blobs.stored(sha)
        store.create(repo_id, author="bench")
        store.apply(repo_id, "bench commit", "", None, {
            "README.md": {"sha256": sha, "size": len(text), "lfs": False, "oid": git_blob_oid(text)},
            "model.safetensors": {"sha256": w_sha, "size": weights.stat().st_size, "lfs": True}}, [], author="bench")

    with ThreadPoolExecutor(16 if storage else 1) as pool:  # on S3 each commit is a few round trips
        list(pool.map(make, range(repos)))


def serve(root: Path, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(port), "--cache", str(root), *extra],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url + "/-/static/zoo.css")  # up: /api/zoo/stats reads every repo
    except RuntimeError:
        proc.kill()
        raise
    return proc, url


def measure(url: str, calls: int) -> dict[str, float]:
    import requests

    session = requests.Session()
    cases = {"index": "/", "list_models": "/api/models?limit=100000",
             "repo page": "/org0/model-0000", "model_info": "/api/models/org0/model-0000"}
    sizes = {}
    for name, path in cases.items():  # warm: parsed READMEs and headers are kept per blob
        r = session.get(url + path, timeout=300)
        r.raise_for_status()
        sizes[name] = len(r.content)
    assert session.get(url + "/api/models?limit=100000").json()[0]["id"] == "org0/model-0000"
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(calls):  # interleaved rounds: drift in the machine's load hits every case alike
        for name, path in cases.items():
            t0 = time.perf_counter()
            session.get(url + path, timeout=300).raise_for_status()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {**{name: statistics.median(t) for name, t in times.items()}, **{f"{k} bytes": v for k, v in sizes.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20, help="calls per figure (the median is reported)")
    parser.add_argument("--stores", default="directory,s3")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    seaweed = None
    worst = 0.0
    try:
        for store in args.stores.split(","):
            extra, env = (), {}
            if store == "s3":
                (tmp / "seaweed").mkdir()
                seaweed = SeaweedFS(tmp / "seaweed")
                extra, env = ("--storage", f"s3://{seaweed.bucket()}/pages-{uuid.uuid4().hex[:6]}"), seaweed.env
            root = tmp / store
            t0 = time.perf_counter()
            populate(root, args.repos, extra[1] if extra else None, env)
            made = time.perf_counter() - t0
            proc, url = serve(root, env, *extra)
            try:
                got = measure(url, args.calls)
            finally:
                proc.terminate()
                proc.wait(10)
            ratio, page = got["index"] / got["list_models"], got["repo page"] / got["model_info"]
            worst = max(worst, ratio)
            print(f"{store}: {args.repos} repos (made in {made:.0f} s), median of {args.calls} calls")
            print(f"  index page   {got['index']:8.1f} ms ({got['index bytes'] / 1e3:.0f} kB)   "
                  f"list_models {got['list_models']:8.1f} ms ({got['list_models bytes'] / 1e3:.0f} kB)   "
                  f"ratio {ratio:.2f} (target <= 2)")
            print(f"  repo page    {got['repo page']:8.1f} ms ({got['repo page bytes'] / 1e3:.0f} kB)   "
                  f"model_info  {got['model_info']:8.1f} ms ({got['model_info bytes'] / 1e3:.1f} kB)   ratio {page:.2f}")
    finally:
        if seaweed is not None:
            seaweed.stop(grace=0)
        shutil.rmtree(tmp, ignore_errors=True)
    return verdict("index / list_models", worst, 2)


if __name__ == "__main__":
    sys.exit(main())
