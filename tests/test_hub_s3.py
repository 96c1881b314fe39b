"""`zoo serve --storage s3://...`: stateless servers over one S3-compatible store (SeaweedFS on
loopback), with the stock huggingface_hub client (zoo/hub/blobs.py, zoo/hub/store.py on zoo/storage.py)."""

import hashlib
import os
import threading
import uuid

import pytest
import requests

from conftest import TOKEN, HubServer, hub_client


@pytest.fixture
def two_servers(seaweed, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    storage = f"s3://{seaweed.bucket()}/hub-{uuid.uuid4().hex[:8]}"
    servers = [HubServer(tmp_path_factory.mktemp(f"server{i}"), "--storage", storage, "--token-file", str(tokens),
                         env=seaweed.env) for i in range(2)]
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
