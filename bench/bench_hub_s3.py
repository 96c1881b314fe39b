#!/usr/bin/env python
"""8 clients download a 200 MB file from two ``zoo serve --storage s3://...`` over SeaweedFS.

    .venv/bin/python bench/bench_hub_s3.py [--mb 200] [--clients 8]

Same run, same store, same file, same 8 stock ``hf_hub_download`` clients (fresh processes and
caches), alternating between the servers:
- ours: two servers that answer the download with a redirect to a presigned URL of the store;
- baseline: one server started with ``--proxy-downloads``, which fetches from the same store and
  streams the bytes itself.
Bars: the redirecting servers move < 1% of the downloaded bytes themselves (their ``bytes_out``)
and their RSS grows by < 100 MB. Aggregate throughput of both is reported (on 2 cores the two are
close; the redirect's gain grows with hosts, since the store scales and the servers drop out).
The upload that seeds the store is timed both ways too: a presigned PUT straight to the store
(the server then reads the object back once to check its sha256) against the LFS body streamed
through a ``--proxy-downloads`` server; the direct one must put 0 bytes through the server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _served import free_port, wait_up  # noqa: E402
from seaweed import SeaweedFS  # noqa: E402

TOKEN = "bench-token"
CLIENT = """
import sys, time
from huggingface_hub import hf_hub_download
t0 = time.perf_counter()
hf_hub_download("bench/big", "model.safetensors", cache_dir=sys.argv[1])
print(time.perf_counter() - t0)
"""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def serve(tmp: Path, name: str, storage: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    tokens = tmp / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(port), "--cache", str(tmp / name),
                             "--storage", storage, "--token-file", str(tokens), *extra],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/api/zoo/stats")
    return proc, url


def stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "/api/zoo/stats", timeout=10).read())


def upload(url: str, repo: str, src: Path, mb: int) -> float:
    """Seconds for one stock ``upload_folder`` of ``mb`` MB of fresh random bytes to ``repo``."""
    (src / "model.safetensors").write_bytes(os.urandom(mb * 1_000_000))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"""
from huggingface_hub import HfApi
api = HfApi(token={TOKEN!r})
api.create_repo({repo!r})
api.upload_folder(repo_id={repo!r}, folder_path={str(src)!r})
"""], env={**os.environ, "HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"},
                   check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    (src / "model.safetensors").unlink()
    return seconds


def download_all(urls: list[str], clients: int, tmp: Path) -> float:
    """Wall seconds for ``clients`` concurrent downloads, client i through urls[i % len(urls)]."""
    procs = []
    t0 = time.perf_counter()
    for i in range(clients):
        env = {**os.environ, "HF_ENDPOINT": urls[i % len(urls)], "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", CLIENT, str(tmp / f"client{i}")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-2000:])
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "seaweed").mkdir()
        store = SeaweedFS(tmp / "seaweed")
        try:
            storage = f"s3://{store.bucket()}/bench"
            a, url_a = serve(tmp, "a", storage, store.env)
            b, url_b = serve(tmp, "b", storage, store.env)
            proxy, url_p = serve(tmp, "p", storage, store.env, "--proxy-downloads")
            try:
                src = tmp / "upload"
                src.mkdir()
                # the upload, both ways: straight to the store by presigned PUT (a), through the server (p)
                t_up = upload(url_p, "bench/through-server", src, args.mb)
                t_direct = upload(url_a, "bench/big", src, args.mb)
                up_in = stats(url_a)["bytes_in"], stats(url_p)["bytes_in"]
                before = {p.pid: rss_mb(p.pid) for p in (a, b)}
                out_before = stats(url_a)["bytes_out"] + stats(url_b)["bytes_out"]
                t_ours = download_all([url_a, url_b], args.clients, tmp / "ours")
                grown = max(rss_mb(p.pid) - before[p.pid] for p in (a, b))
                moved = stats(url_a)["bytes_out"] + stats(url_b)["bytes_out"] - out_before
                t_base = download_all([url_p], args.clients, tmp / "base")
                proxied = stats(url_p)["bytes_out"]
            finally:
                for p in (a, b, proxy):
                    p.terminate()
                    p.wait(10)
        finally:
            store.stop()
    total = args.clients * args.mb * 1_000_000
    share = moved / total
    print(f"{args.clients} clients x {args.mb} MB via two redirecting servers: {total / t_ours / 1e6:.0f} MB/s aggregate; "
          f"servers moved {moved} bytes = {share:.4%} of the download (bar < 1%); RSS grew {grown:.1f} MB (bar < 100 MB)")
    print(f"baseline, one server streaming from the store: {total / t_base / 1e6:.0f} MB/s aggregate "
          f"(it moved {proxied / total:.0%} of the bytes); ratio ours/baseline throughput {t_base / t_ours:.2f} (reported)")
    mb = args.mb * 1_000_000
    print(f"upload of {args.mb} MB: presigned PUT to the store {mb / t_direct / 1e6:.0f} MB/s (server received "
          f"{up_in[0]} bytes; it reads the object back once to hash it), through the server {mb / t_up / 1e6:.0f} MB/s "
          f"(it received {up_in[1]} bytes); ratio {t_up / t_direct:.2f} (reported)")
    return 0 if share < 0.01 and grown < 100 and up_in[0] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
