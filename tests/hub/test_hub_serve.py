"""``zoo serve`` end to end: stock timm against served bundled weights, many clients, workers, upstream."""

import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch

import zoo
from zoo.weights.cache import Cache

from conftest import HubServer, hub_client


@pytest.fixture
def lite0_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("lite0_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    zoo.pull("efficientnet_lite0")
    return home


def test_stock_timm_builds_lite0_from_the_server_with_zoo_logits(lite0_home, tmp_path):
    server = HubServer(lite0_home)
    try:
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        torch.save(x, tmp_path / "x.pt")
        code = ("import timm, torch\n"
                "m = timm.create_model('tf_efficientnet_lite0', pretrained=True).eval()\n"
                f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
                f"with torch.no_grad(): torch.save(m(x), {str(tmp_path / 'y.pt')!r})\n")
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("ZOO_OFFLINE", None)
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        theirs = torch.load(tmp_path / "y.pt", weights_only=True)
        with torch.no_grad():
            ours = zoo.load("efficientnet_lite0")(x)
        assert torch.equal(theirs, ours)
        assert server.stats()["GET timm/tf_efficientnet_lite0.in1k/model.safetensors"] == 1
    finally:
        server.stop()


def _many_clients(server, repo, size, sha, n=16):
    url = f"{server.url}/{repo}/resolve/main/model.safetensors"

    def fetch(_):
        digest, got = hashlib.sha256(), 0
        with requests.get(url, stream=True, timeout=120) as r:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 20):
                digest.update(chunk)
                got += len(chunk)
        return digest.hexdigest(), got

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fetch, range(n)))


@pytest.mark.parametrize("workers", [1, 2])
def test_sixteen_clients_download_one_100mb_file(tmp_path, workers):
    data = os.urandom(100 * 1000 * 1000)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    root = tmp_path / f"served{workers}"
    sha = Cache(root).add_file(src)
    Cache(root).record("big.a", sha, len(data), "test", hub_repo="zootest/big")
    server = HubServer(root, "--workers", str(workers))
    try:
        results = _many_clients(server, "zootest/big", len(data), sha)
        assert results == [(sha, len(data))] * 16
    finally:
        server.stop()


@pytest.fixture
def upstream_mirror(tmp_path, tiny_weights):
    """A hub holding the tiny weights, and a `zoo serve --upstream` mirror of it: (upstream, mirror, sha256)."""
    upstream = HubServer(tmp_path / "up")
    sha = upstream.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    mirror = HubServer(tmp_path / "mirror", "--upstream", upstream.url)
    yield upstream, mirror, sha
    upstream.stop()
    mirror.stop()


def test_upstream_pull_through_fetches_once_and_verifies(upstream_mirror, tmp_path):
    upstream, mirror, sha = upstream_mirror
    url = f"{mirror.url}/zootest/tiny/resolve/main/model.safetensors"
    for _ in range(3):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha
    assert upstream.stats()["GET zootest/tiny/model.safetensors"] == 1
    assert Cache(tmp_path / "mirror").has_blob(sha)
    assert requests.get(f"{mirror.url}/zootest/tiny/resolve/main/none.bin", timeout=30).status_code == 404


def test_private_hub_needs_a_token_to_read(tmp_path, tiny_weights):
    tokens = tmp_path / "t.txt"
    tokens.write_text("reader-token\n")
    server = HubServer(tmp_path / "priv", "--private", "--token-file", str(tokens))
    try:
        server.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
        url = f"{server.url}/api/models/zootest/tiny"
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.get(url, headers={"authorization": "Bearer reader-token"}, timeout=30).status_code == 200
    finally:
        server.stop()


def test_snapshot_download_through_an_upstream_mirror(upstream_mirror, tmp_path):
    upstream, mirror, sha = upstream_mirror
    code = ("from huggingface_hub import snapshot_download; import os, hashlib, json\n"
            "d = snapshot_download('zootest/tiny')\n"
            "print(json.dumps(hashlib.sha256(open(os.path.join(d, 'model.safetensors'), 'rb').read()).hexdigest()))\n")
    assert hub_client(mirror, code, tmp_path) == sha
    assert upstream.stats()["GET zootest/tiny/model.safetensors"] == 1


@pytest.mark.slow
def test_idle_and_slow_header_connections_are_closed_and_a_vanished_client_is_no_traceback(tmp_path):
    """100 sockets that connect and say nothing, and one that sends headers a byte at a time, are
    closed after --header-timeout; a client that disconnects mid-body is one info line."""
    import socket
    import time

    from conftest import TOKEN, HubServer

    tokens = tmp_path / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    server = HubServer(tmp_path / "served", "--header-timeout", "1", "--token-file", str(tokens))
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(100)]
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(b"GET /api/zoo/stats HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends the headers
        time.sleep(2.5)
        for s in [*idle, slow]:
            assert s.recv(1) == b""  # closed by the server
            s.close()
        # a well-behaved client on a fresh connection is served as before
        assert requests.get(server.url + "/api/zoo/stats", timeout=30).status_code == 200
        cut = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        cut.sendall(b"POST /api/repos/create HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                    + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": ")
        time.sleep(0.3)
        cut.close()
        time.sleep(0.5)
        log = server.log_text()
        assert "no complete request within 1 s" in log and "Traceback" not in log, log[-3000:]
        assert "POST /api/repos/create: the client disconnected before sending the whole body" in log, log[-3000:]
    finally:
        server.stop()
