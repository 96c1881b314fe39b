"""`zoo serve --storage s3://...`: stateless servers over one S3-compatible store (SeaweedFS on
loopback), with the stock huggingface_hub client (zoo/hub/blobs.py, zoo/store/repos.py on zoo/store/objects.py)."""

import hashlib
import json
import os
import threading
import uuid

import pytest
import requests

from conftest import TOKEN, HubServer, free_port, hub_client


@pytest.fixture
def two_servers(seaweed, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    storage = f"s3://{seaweed.bucket()}/hub-{uuid.uuid4().hex[:8]}"
    servers = [HubServer(tmp_path_factory.mktemp(f"server{i}"), "--storage", storage, "--token-file", str(tokens),
                         env=seaweed.env) for i in range(2)]
    for s in servers:
        s.storage, s.storage_prefix, s.tokens = storage, storage.rsplit("/", 1)[1], tokens
    yield servers
    for s in servers:
        s.stop()


def test_upload_through_one_server_download_through_the_other_by_redirect(two_servers, seaweed, tmp_path):
    a, b = two_servers
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"architecture": "x"}')
    (folder / "model.safetensors").write_bytes(os.urandom(12 * 1024 * 1024))  # over 10 MB: LFS
    want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    hub_client(a, f"""
import json
from huggingface_hub import HfApi
api = HfApi(token={TOKEN!r})
api.create_repo("acme/m")
api.upload_folder(repo_id="acme/m", folder_path={str(folder)!r})
print(json.dumps(1))
""", tmp_path, HF_HUB_DISABLE_XET="1")
    got = hub_client(b, """
import hashlib, json, os
from huggingface_hub import snapshot_download
snap = snapshot_download("acme/m")
print(json.dumps({f: hashlib.sha256(open(os.path.join(snap, f), "rb").read()).hexdigest() for f in os.listdir(snap)}))
""", tmp_path / "client")
    assert got == want
    assert a.stats_full()["bytes_in"] == 0  # the 12 MB went to the store by a presigned PUT, not through server a
    # the large file was handed to the store by a redirect: server b never carried its bytes
    r = requests.get(f"{b.url}/acme/m/resolve/main/model.safetensors", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith(seaweed.endpoint)
    assert r.headers["X-Linked-Etag"].strip('"') == want["model.safetensors"] and not r.content
    # one server gone: the other still serves everything
    a.stop()
    again = hub_client(b, """
import json
from huggingface_hub import hf_hub_download
print(json.dumps(open(hf_hub_download("acme/m", "config.json", force_download=True)).read()))
""", tmp_path / "client2")
    assert again == '{"architecture": "x"}'


# every test on SeaweedFS is slow (tests/conftest.py marks them): the store takes ~10 s to start
@pytest.mark.slow
def test_two_servers_commit_to_one_repo_at_once_and_lose_nothing(two_servers):
    from huggingface_hub import HfApi

    a, b = two_servers
    HfApi(endpoint=a.url, token=TOKEN).create_repo("acme/race")
    errors = []

    def commits(server, name):
        api = HfApi(endpoint=server.url, token=TOKEN)
        try:
            for i in range(20):
                api.upload_file(path_or_fileobj=f"{name}{i}".encode(), path_in_repo=f"{name}/{i}.txt", repo_id="acme/race")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commits, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    api = HfApi(endpoint=b.url)
    files = set(api.list_repo_files("acme/race"))
    assert {f"{n}/{i}.txt" for n in "ab" for i in range(20)} <= files
    history = api.list_repo_commits("acme/race")
    assert len(history) == 41  # the initial commit and 40 uploads, one after another


@pytest.mark.slow
def test_stock_timm_loads_through_the_other_server(two_servers, tmp_path):
    """An 18 MB timm model folder uploaded through one server; stock timm (no zoo) builds it
    through the other, its weights coming by redirect from the store."""
    import timm
    import torch
    from timm.models import save_for_hf

    a, b = two_servers
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=7)
    save_for_hf(model, str(tmp_path / "export"), safe_serialization=True)
    hub_client(a, f"""
import json
from huggingface_hub import HfApi
api = HfApi(token={TOKEN!r})
api.create_repo("acme/lite")
api.upload_folder(repo_id="acme/lite", folder_path={str(tmp_path / "export")!r})
print(json.dumps(1))
""", tmp_path, HF_HUB_DISABLE_XET="1")
    got = hub_client(b, """
import json, sys, timm
m = timm.create_model("hf-hub:acme/lite", pretrained=True)
print(json.dumps({"classes": m.num_classes, "sum": float(m.classifier.weight.double().sum()), "zoo": "zoo" in sys.modules}))
""", tmp_path / "timm")
    assert got == {"classes": 7, "sum": float(model.classifier.weight.detach().double().sum()), "zoo": False}
    assert b.stats_full()["bytes_out"] < 1_000_000  # the 18 MB came from the store, not from server b


@pytest.mark.slow
def test_a_direct_upload_is_read_back_and_hashed_before_a_commit_may_use_it(two_servers, seaweed, monkeypatch):
    """The presigned PUT bounds nothing: a client that sends other bytes than it declared gets a
    refusal at verify, and its bytes never become a blob."""
    from zoo.store.objects import open_storage

    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    a, b = two_servers
    auth = {"authorization": f"Bearer {TOKEN}"}
    requests.post(f"{a.url}/api/repos/create", json={"name": "acme/direct"}, headers=auth, timeout=10).raise_for_status()
    good = os.urandom(11 << 20)
    oid = hashlib.sha256(good).hexdigest()

    def batch():
        r = requests.post(f"{a.url}/acme/direct.git/info/lfs/objects/batch", headers=auth, timeout=10,
                          json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(good)}]})
        r.raise_for_status()
        return r.json()["objects"][0]

    def commit():
        body = "\n".join(json.dumps(x) for x in ({"key": "header", "value": {"summary": "add"}},
                                                  {"key": "lfsFile", "value": {"path": "w.bin", "oid": oid, "size": len(good), "algo": "sha256"}}))
        return requests.post(f"{a.url}/api/models/acme/direct/commit/main", data=body, timeout=10,
                             headers={**auth, "content-type": "application/x-ndjson"})

    obj = batch()
    upload, verify = obj["actions"]["upload"]["href"], obj["actions"]["verify"]["href"]
    assert upload.startswith(seaweed.endpoint)  # straight to the store
    bad = bytearray(good)
    bad[5] ^= 1
    assert requests.put(upload, data=bytes(bad) + b"x", timeout=30).status_code == 403  # the length is signed
    assert requests.put(upload, data=bytes(bad), timeout=30).status_code == 200  # but not the content
    forged = requests.post(verify.replace("sig=", "sig=0"), json={"oid": oid, "size": len(good)}, headers=auth, timeout=30)
    assert forged.status_code == 401
    refused = requests.post(verify, json={"oid": oid, "size": len(good)}, headers=auth, timeout=30)
    assert refused.status_code == 400 and "sha256 mismatch" in refused.text
    assert commit().status_code == 400  # the commit may not name it
    store = open_storage(f"s3://{seaweed.bucket()}/{a.storage_prefix}")
    assert store.size(f"blobs/{oid}") is None and store.list("uploads/") == []
    # the same upload, honest this time
    obj = batch()
    assert requests.put(obj["actions"]["upload"]["href"], data=good, timeout=30).status_code == 200
    # verified through the other server (behind a load balancer): the signing secret is the store's
    ok = requests.post(obj["actions"]["verify"]["href"].replace(a.url, b.url), json={"oid": oid, "size": len(good)},
                       headers=auth, timeout=30)
    assert ok.status_code == 200, ok.text
    # the URL is still valid: other bytes PUT to it later never reach the verified blob
    assert requests.put(obj["actions"]["upload"]["href"], data=bytes(bad), timeout=30).status_code == 200
    again = requests.post(obj["actions"]["verify"]["href"], json={"oid": oid, "size": len(good)}, headers=auth, timeout=30)
    assert again.status_code == 400
    assert hashlib.sha256(b"".join(store.stream(f"blobs/{oid}"))).hexdigest() == oid
    assert commit().status_code == 200
    assert store.size(f"blobs/{oid}") == len(good) and store.list("uploads/") == []
    assert "actions" not in batch()  # stored: nothing more to upload
    assert a.stats_full()["bytes_in"] == 0


@pytest.mark.slow
def test_proxy_downloads_stream_from_the_store_and_resume_with_range(two_servers, seaweed, tmp_path_factory, tmp_path):
    """--proxy-downloads (clients that cannot reach the store): the bytes pass through the server,
    and a resumed download's Range is honoured, as the Hub's own resolve does."""
    a, _ = two_servers
    data = os.urandom(11 << 20)
    (tmp_path / "w.bin").write_bytes(data)
    hub_client(a, f"""
import json
from huggingface_hub import HfApi
api = HfApi(token={TOKEN!r})
api.create_repo("acme/proxied")
api.upload_file(path_or_fileobj={str(tmp_path / "w.bin")!r}, path_in_repo="w.bin", repo_id="acme/proxied")
print(json.dumps(1))
""", tmp_path, HF_HUB_DISABLE_XET="1")
    proxy = HubServer(tmp_path_factory.mktemp("proxy"), "--storage", a.storage, "--proxy-downloads", env=seaweed.env)
    try:
        url = f"{proxy.url}/acme/proxied/resolve/main/w.bin"
        whole = requests.get(url, allow_redirects=False, timeout=30)
        assert whole.status_code == 200 and whole.content == data
        part = requests.get(url, headers={"range": "bytes=1000-"}, timeout=30)
        assert part.status_code == 206 and part.content == data[1000:]
        assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
        assert requests.get(url, headers={"range": "bytes=5-9"}, timeout=30).content == data[5:10]
        assert requests.get(url, headers={"range": "bytes=-4"}, timeout=30).content == data[-4:]
        past = requests.get(url, headers={"range": f"bytes={len(data)}-"}, timeout=30)
        assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
        assert proxy.stats_full()["bytes_out"] == len(data) + (len(data) - 1000) + 5 + 4
        got = hub_client(proxy, """
import hashlib, json
from huggingface_hub import hf_hub_download
print(json.dumps(hashlib.sha256(open(hf_hub_download("acme/proxied", "w.bin"), "rb").read()).hexdigest()))
""", tmp_path / "client")
        assert got == hashlib.sha256(data).hexdigest()
    finally:
        proxy.stop()


def test_byte_ranges():
    from zoo.hub.read import byte_range

    assert byte_range(None, 10) is None and byte_range("bytes=0-1,4-5", 10) is None and byte_range("items=0-1", 10) is None
    assert byte_range("bytes=2-", 10) == (2, 9) and byte_range("bytes=2-100", 10) == (2, 9)
    assert byte_range("bytes=-3", 10) == (7, 9) and byte_range("bytes=-30", 10) == (0, 9)
    assert byte_range("bytes=10-", 10) == "unsatisfiable" and byte_range("bytes=5-2", 10) is None
    assert byte_range("bytes=x-2", 10) is None and byte_range("bytes=-", 10) is None
    assert byte_range("bytes=\xb2-", 10) is None and byte_range("Bytes=1-2", 10) == (1, 2)


@pytest.mark.slow
def test_pull_through_on_a_shared_store_asks_the_upstream_once_for_all_servers(seaweed, tmp_path_factory, tiny_weights, tmp_path):
    """Two `--storage s3:// --upstream` servers: what one pulls through lands in the store, and the
    other serves it from there (by redirect) without asking the upstream again."""
    upstream = HubServer(tmp_path_factory.mktemp("up"))
    sha = upstream.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    storage = f"s3://{seaweed.bucket()}/pull-{uuid.uuid4().hex[:8]}"
    servers = [HubServer(tmp_path_factory.mktemp(f"edge{i}"), "--storage", storage, "--upstream", upstream.url,
                         env=seaweed.env) for i in range(2)]
    try:
        code = """
import hashlib, json
from huggingface_hub import hf_hub_download
print(json.dumps(hashlib.sha256(open(hf_hub_download("zootest/tiny", "model.safetensors"), "rb").read()).hexdigest()))
"""
        assert hub_client(servers[0], code, tmp_path / "c0") == sha
        assert hub_client(servers[1], code, tmp_path / "c1") == sha
        assert upstream.stats()["GET zootest/tiny/model.safetensors"] == 1
        r = requests.get(f"{servers[1].url}/zootest/tiny/resolve/main/model.safetensors", allow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["Location"].startswith(seaweed.endpoint)
        assert servers[1].stats_full()["upstream"] == {} and "zootest/tiny" in servers[1].stats_full()["repos"]
    finally:
        for s in (*servers, upstream):
            s.stop()


def test_unverified_uploads_are_swept_once_their_url_is_long_expired(seaweed, monkeypatch, tmp_path):
    """A client that PUTs and never calls verify leaves a staging object: a server deletes it later."""
    import zoo.hub.blobs as blobs_module
    from zoo.weights.cache import Cache
    from zoo.hub.blobs import Blobs
    from zoo.store.objects import open_storage

    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    store = open_storage(f"s3://{seaweed.bucket()}/sweep-{uuid.uuid4().hex[:8]}")
    store.put(f"uploads/{'a' * 64}.{'0' * 32}", b"abandoned")
    blobs = Blobs(Cache(tmp_path), store)
    staged, url = blobs.stage("b" * 64, 10)
    assert store.list("uploads/") == [f"uploads/{'a' * 64}.{'0' * 32}"]  # younger than 2 x the URL's life: kept
    monkeypatch.setattr(blobs_module, "UPLOAD_EXPIRES", 0)
    blobs._swept = float("-inf")
    blobs.stage("b" * 64, 10)
    assert store.list("uploads/") == []
    assert staged.startswith("b" * 64) and "X-Amz-Signature=" in url  # SigV4, which AWS requires


@pytest.mark.slow
def test_a_file_pulled_through_before_the_store_is_shared_on_its_first_miss(seaweed, tmp_path_factory, tiny_weights, monkeypatch):
    """A server that pulled a file through before it used the store, once another server recorded
    other files of that repo there: the store's record is the repo (one commit id on every
    server), and the first miss of the old file puts it in the store, without asking the upstream."""
    from zoo.weights.cache import Cache
    from zoo.hub.served import ServedRepos
    from zoo.store.objects import open_storage

    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    storage = f"s3://{seaweed.bucket()}/merge-{uuid.uuid4().hex[:8]}"
    other = ServedRepos(Cache(tmp_path_factory.mktemp("other")), open_storage(storage))
    config = b'{"architecture": "test_efficientnet"}'
    other.storage.put(f"blobs/{hashlib.sha256(config).hexdigest()}", config)
    other.remember_pulled_through("zootest/tiny", "config.json", hashlib.sha256(config).hexdigest(), len(config), None)
    root = tmp_path_factory.mktemp("edge")
    dead_upstream = f"http://127.0.0.1:{free_port()}"  # nothing listens: the upstream is never needed
    server = HubServer(root, "--storage", storage, "--upstream", dead_upstream, env=seaweed.env)
    try:
        server.publish(tiny_weights, "zootest/tiny", "upstream--zootest--tiny--model.safetensors")
        before = requests.get(f"{server.url}/api/models/zootest/tiny", timeout=10).json()
        assert {s["rfilename"] for s in before["siblings"]} == {"config.json"}  # the store's record
        got = requests.get(f"{server.url}/zootest/tiny/resolve/main/model.safetensors", timeout=30)
        assert got.status_code == 200 and got.content == tiny_weights.read_bytes()  # via the store, by redirect
        after = requests.get(f"{server.url}/api/models/zootest/tiny", timeout=10).json()
        assert {s["rfilename"] for s in after["siblings"]} == {"config.json", "model.safetensors"}
        assert other.pulled_through("zootest/tiny").commit == after["sha"]  # what every server on the store reports
        assert server.stats_full()["upstream"] == {}
    finally:
        server.stop()


def test_xet_uploads_land_in_the_store_and_any_server_serves_them(two_servers, seaweed, tmp_path):
    """Stock defaults (Xet) through server a; through server b: a download by Xet (its xorb fetches
    are presigned GETs of the store) and one over plain HTTP; then a near copy uploaded through b
    sends only its new chunks, found by b in the store a wrote."""
    import numpy as np

    a, b = two_servers
    base = np.random.default_rng(0).standard_normal(3_000_000).astype(np.float32).tobytes()  # 12 MB: over 10 MB
    near = bytearray(base)
    near[6_000_000:6_600_000] = os.urandom(600_000)
    (tmp_path / "base.bin").write_bytes(base)
    (tmp_path / "near.bin").write_bytes(bytes(near))
    upload = """
import json
from huggingface_hub import HfApi
api = HfApi(token={token!r})
api.create_repo({repo!r}, exist_ok=True)
api.upload_file(path_or_fileobj={path!r}, path_in_repo="m.bin", repo_id={repo!r})
print(json.dumps(1))
"""
    hub_client(a, upload.format(token=TOKEN, repo="acme/xet", path=str(tmp_path / "base.bin")), tmp_path / "up",
               HF_XET_CACHE=str(tmp_path / "xet-up"))
    assert a.stats_full()["xet_bytes_in"] > 10_000_000
    listed = seaweed.client().list_objects_v2(Bucket=seaweed.bucket(), Prefix=f"{a.storage_prefix}/xet/xorbs/")
    assert any(o["Key"].endswith(".json") for o in listed.get("Contents", []))  # a verified xorb and its index
    code = """
import hashlib, json
from huggingface_hub import hf_hub_download
print(json.dumps(hashlib.sha256(open(hf_hub_download("acme/xet", "m.bin"), "rb").read()).hexdigest()))
"""
    want = hashlib.sha256(base).hexdigest()
    assert hub_client(b, code, tmp_path / "down-xet", HF_XET_CACHE=str(tmp_path / "xet-down")) == want
    assert "GET /api/zoo/cas/fetch/" not in b.log_text()  # the xorbs came from the store, by presigned URLs
    assert "/v1/reconstructions/" in b.log_text()
    assert hub_client(b, code, tmp_path / "down-http", HF_HUB_DISABLE_XET="1") == want
    hub_client(b, upload.format(token=TOKEN, repo="acme/xet-near", path=str(tmp_path / "near.bin")), tmp_path / "up2",
               HF_XET_CACHE=str(tmp_path / "xet-up2"))
    assert b.stats_full()["xet_bytes_in"] < 0.15 * len(base)  # 5% new, the rest deduplicated against a's upload
