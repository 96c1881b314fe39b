#!/usr/bin/env python
"""What a revision costs on ``zoo serve`` as a repo grows branches, tags and pull requests.

    .venv/bin/python bench/bench_hub_refs.py [--refs 100] [--calls 50]

One server per store (a directory, and ``--storage s3://`` on a local SeaweedFS), one repo, the
stock huggingface_hub client in one process. Measured in the same run, per store:
- a file's metadata (``get_hf_file_metadata``: the HEAD ``hf_hub_download`` makes first) and
  ``model_info`` on ``main`` of a repo with only main: the baseline;
- the same on main, on a branch, on a tag and on ``refs/pr/N`` of a second repo on the same
  server with ``--refs`` branches, as many tags and a tenth as many pull requests, measured in
  interleaved rounds with the baseline: target ratio <= 1.2 (a revision is one ref object read,
  or two for a tag, whatever the number of refs);
- ``list_repo_refs(include_pull_requests=True)`` and ``get_repo_discussions`` at that size,
  reported in ms (one LIST, then every ref read: 16 at a time on S3).
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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _served import free_port, verdict, wait_up  # noqa: E402
from seaweed import SeaweedFS  # noqa: E402

TOKEN = "bench-token"
CLIENT = r"""
import json, statistics, sys, time
from huggingface_hub import HfApi, CommitOperationAdd, get_hf_file_metadata, hf_hub_url
refs, calls = int(sys.argv[1]), int(sys.argv[2])
api = HfApi(token=%(token)r)
for r in ("bench/small", "bench/big"):
    api.create_repo(r)
    api.upload_file(path_or_fileobj=b"w" * 1000, path_in_repo="w.bin", repo_id=r)
for i in range(refs):
    api.create_branch("bench/big", branch=f"b{i}")
    api.create_tag("bench/big", tag=f"t{i}")
for i in range(max(refs // 10, 1)):
    api.create_commit("bench/big", operations=[CommitOperationAdd(f"pr{i}.txt", b"x")], commit_message=f"pr {i}",
                      create_pr=True)

def head(r, rev):
    return lambda: get_hf_file_metadata(hf_hub_url(r, "w.bin", revision=rev))

def info(r, rev):
    return lambda: api.model_info(r, revision=rev)

cases = {"base head": head("bench/small", "main"), "base info": info("bench/small", "main")}
for rev in ("main", "b7", "t7", "refs/pr/1"):
    cases[f"head {rev}"], cases[f"info {rev}"] = head("bench/big", rev), info("bench/big", rev)
cases["list_repo_refs"] = lambda: api.list_repo_refs("bench/big", include_pull_requests=True)
cases["discussions"] = lambda: list(api.get_repo_discussions("bench/big"))
times = {name: [] for name in cases}
for fn in cases.values():
    fn()  # warm: connections open
for _ in range(calls):  # interleaved rounds: drift in the machine's load hits every case alike
    for name, fn in cases.items():
        t0 = time.perf_counter()
        fn()
        times[name].append((time.perf_counter() - t0) * 1e3)
print(json.dumps({name: statistics.median(t) for name, t in times.items()}))
"""


def serve(tmp: Path, name: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    tokens = tmp / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(port), "--cache", str(tmp / name),
                             "--token-file", str(tokens), *extra], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/api/zoo/stats")
    return proc, url


def measure(url: str, refs: int, calls: int, hf_home: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", CLIENT % {"token": TOKEN}, str(refs), str(calls)],
                            env={**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(hf_home),
                                 "HF_HUB_DISABLE_TELEMETRY": "1"}, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=100, help="branches and tags each (pull requests: a tenth)")
    parser.add_argument("--calls", type=int, default=50, help="calls per figure (the median is reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-refs-"))
    (tmp / "seaweed").mkdir()
    seaweed = SeaweedFS(tmp / "seaweed")
    worst = 0.0
    try:
        stores = {"directory": (), "s3": ("--storage", f"s3://{seaweed.bucket()}/refs-{uuid.uuid4().hex[:6]}")}
        for store, extra in stores.items():
            proc, url = serve(tmp, store, seaweed.env if extra else {}, *extra)
            try:
                got = measure(url, args.refs, args.calls, tmp / f"hf-{store}")
            finally:
                proc.terminate()
                proc.wait(10)
            print(f"{store}: {args.refs} branches, {args.refs} tags, {max(args.refs // 10, 1)} pull requests "
                  f"(median of {args.calls} calls)")
            print(f"  baseline (main only): HEAD {got['base head']:.2f} ms, model_info {got['base info']:.2f} ms")
            for rev in ("main", "b7", "t7", "refs/pr/1"):
                h, i = got[f"head {rev}"] / got["base head"], got[f"info {rev}"] / got["base info"]
                worst = max(worst, h, i)
                print(f"  {rev:>10}: HEAD {got[f'head {rev}']:.2f} ms ({h:.2f}x)   model_info {got[f'info {rev}']:.2f} ms "
                      f"({i:.2f}x)")
            print(f"  list_repo_refs {got['list_repo_refs']:.1f} ms, get_repo_discussions {got['discussions']:.1f} ms")
    finally:
        seaweed.stop(grace=0)
        shutil.rmtree(tmp, ignore_errors=True)
    return verdict("worst revision ratio", worst, 1.2)


if __name__ == "__main__":
    sys.exit(main())
