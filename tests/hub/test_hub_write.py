"""The hub's write side and auth against the stock huggingface_hub client (zoo/hub/write.py)."""

import hashlib
import json
import os

import pytest
import requests

from conftest import TOKEN, hub_client as _client

def test_upload_folder_then_snapshot_download_and_revisions(hub_rw, tmp_path):
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlibrary_name: timm\n---\n# a head\n")
    (folder / "config.json").write_text('{"num_classes": 3}')
    (folder / "sub" / "head.safetensors").write_bytes(os.urandom(300_000))
    (folder / "big.safetensors").write_bytes(os.urandom(12 * 1024 * 1024))  # over 10 MB: an LFS upload
    code = (
        "import json, sys; from huggingface_hub import HfApi, snapshot_download, hf_hub_download\n"
        f"api = HfApi(token={TOKEN!r})\n"
        "api.create_repo('acme/head', exist_ok=True)\n"
        "api.create_repo('acme/head', exist_ok=True)\n"
        f"c1 = api.upload_folder(folder_path={str(folder)!r}, repo_id='acme/head', commit_message='first')\n"
        f"snap = snapshot_download('acme/head', cache_dir={str(tmp_path / 'other')!r})\n"
        "import os, hashlib\n"
        "files = {os.path.relpath(os.path.join(d, f), snap): hashlib.sha256(open(os.path.join(d, f), 'rb').read()).hexdigest()\n"
        "         for d, _, fs in os.walk(snap) for f in fs}\n"
        f"c2 = api.upload_file(path_or_fileobj=b'changed', path_in_repo='config.json', repo_id='acme/head')\n"
        "old = open(hf_hub_download('acme/head', 'config.json', revision=c1.oid), 'rb').read()\n"
        "new = open(hf_hub_download('acme/head', 'config.json'), 'rb').read()\n"
        "refs = api.list_repo_refs('acme/head').branches[0].target_commit\n"
        "commits = [c.title for c in api.list_repo_commits('acme/head')]\n"
        "models = [m.id for m in api.list_models(search='head')]\n"
        "me = api.whoami()['name']\n"
        "print(json.dumps([files, c1.oid, c2.oid, old.decode(), new.decode(), refs, commits, models, me]))\n"
    )
    files, c1, c2, old, new, ref, commits, models, me = _client(hub_rw, code, tmp_path, HF_HUB_DISABLE_XET="1")
    import hashlib

    expected = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    assert files == expected
    assert len(c1) == len(c2) == 40 and c1 != c2 and ref == c2
    assert (old, new) == ('{"num_classes": 3}', "changed")
    assert commits[:2] == ["Upload config.json with huggingface_hub", "first"]
    assert models == ["acme/head"] and me == "zoo"


def _post(hub, path, token=TOKEN, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["authorization"] = f"Bearer {token}"
    return requests.post(hub.url + path, headers=headers, timeout=30, **kwargs)


def test_writes_need_the_right_token_and_reads_stay_open(hub_rw):
    for token in (None, "wrong"):
        r = _post(hub_rw, "/api/repos/create", token=token, json={"name": "x", "organization": "acme"})
        assert r.status_code == 401
    assert _post(hub_rw, "/api/repos/create", json={"name": "x", "organization": "acme"}).status_code == 200
    assert requests.get(hub_rw.url + "/api/models/acme/x", timeout=30).status_code == 200
    assert requests.get(hub_rw.url + "/api/models/acme/nope", timeout=30).headers["X-Error-Code"] == "RepoNotFound"
    assert requests.get(hub_rw.url + "/api/models/acme/x/revision/" + "0" * 40, timeout=30).headers["X-Error-Code"] == "RevisionNotFound"
    assert requests.get(hub_rw.url + "/api/whoami-v2", timeout=30).status_code == 401


def test_a_lying_lfs_body_and_oversized_uploads_are_refused(hub_rw):
    import hashlib

    assert _post(hub_rw, "/api/repos/create", json={"name": "y", "organization": "acme"}).status_code == 200
    data = os.urandom(50_000)
    claimed = hashlib.sha256(b"something else").hexdigest()
    batch = _post(hub_rw, "/acme/y.git/info/lfs/objects/batch", json={
        "operation": "upload", "transfers": ["basic"], "objects": [{"oid": claimed, "size": len(data)}]}).json()
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert requests.put(href.replace("sig=", "sig=x"), data=data, timeout=30).status_code == 401
    r = requests.put(href, data=data, timeout=30)
    assert r.status_code == 400 and "mismatch" in r.json()["error"]
    blobs = hub_rw.root / "blobs"
    assert not (blobs / claimed).exists() and not list(blobs.glob(".incomplete-*"))
    # a commit naming an object that never arrived
    body = "\n".join(json.dumps(x) for x in [{"key": "header", "value": {"summary": "s"}},
                                             {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": claimed, "size": 50000}}])
    assert _post(hub_rw, "/api/models/acme/y/commit/main", data=body).status_code == 400
    # over --max-upload-mb (64): 413, the server stays up
    big = _post(hub_rw, "/acme/y.git/info/lfs/objects/batch", json={
        "operation": "upload", "objects": [{"oid": "a" * 64, "size": 65 * 1024 * 1024}]}).json()
    assert big["objects"][0]["error"]["code"] == 413
    r = _post(hub_rw, "/api/models/acme/y/commit/main", data=b"x" * (65 * 1024 * 1024))
    assert r.status_code == 413
    for path in ("../escape.txt", "/abs.txt", "a/../../b"):
        body = json.dumps({"key": "file", "value": {"path": path, "content": "aGk=", "encoding": "base64"}})
        assert _post(hub_rw, "/api/models/acme/y/commit/main", data=body).status_code == 400
    assert requests.get(hub_rw.url + "/api/zoo/stats", timeout=30).status_code == 200


def test_a_xet_write_token_needs_a_token_that_may_write(hub_rw):
    r = requests.get(hub_rw.url + "/api/models/acme/x/xet-write-token/main", timeout=30)
    assert r.status_code == 401 and "token" in r.json()["error"]


def test_index_page_lists_served_repos(hub, tiny_weights):
    hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    page = requests.get(hub.url + "/", timeout=30).text
    assert "zootest/tiny" in page and "<table" in page


def test_prune_keeps_blobs_of_served_revisions(hub_rw, tmp_path):
    assert _post(hub_rw, "/api/repos/create", json={"name": "z", "organization": "acme"}).status_code == 200
    body = json.dumps({"key": "file", "value": {"path": "a.txt", "content": "aGVsbG8=", "encoding": "base64"}})
    assert _post(hub_rw, "/api/models/acme/z/commit/main", data=body).status_code == 200
    from conftest import run_zoo

    env = {"ZOO_HOME": str(hub_rw.root)}
    assert run_zoo("cache", "prune", "--older-than", "0s", env=env).returncode == 0
    r = requests.get(hub_rw.url + "/acme/z/resolve/main/a.txt", timeout=30)
    assert r.status_code == 200 and r.content == b"hello"


def test_private_repo_is_hidden_from_anonymous_readers(hub_rw):
    r = _post(hub_rw, "/api/repos/create", json={"name": "secret", "organization": "acme", "visibility": "private"})
    assert r.status_code == 200
    body = json.dumps({"key": "file", "value": {"path": "k.txt", "content": "aGk=", "encoding": "base64"}})
    assert _post(hub_rw, "/api/models/acme/secret/commit/main", data=body).status_code == 200
    assert requests.get(hub_rw.url + "/acme/secret/resolve/main/k.txt", timeout=30).status_code == 404
    assert "acme/secret" not in requests.get(hub_rw.url + "/api/models", timeout=30).text
    assert "acme/secret" not in requests.get(hub_rw.url + "/", timeout=30).text
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert requests.get(hub_rw.url + "/acme/secret/resolve/main/k.txt", headers=auth, timeout=30).content == b"hi"


def test_malformed_writes_are_4xx_and_nothing_escapes(hub_rw):
    import http.client

    parent = hub_rw.root.parent
    before = sorted(p.name for p in parent.iterdir())
    conn = http.client.HTTPConnection("127.0.0.1", hub_rw.port, timeout=10)
    for path in ("/api/models/%2e%2e/%2e%2e/commit/main", "/api/models/a%0Ab/c/preupload/main"):
        conn.request("POST", path, body=b"{}", headers={"authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        r.read()
        assert r.status in (400, 404), (path, r.status)
    conn.close()
    assert sorted(p.name for p in parent.iterdir()) == before
    assert _post(hub_rw, "/api/repos/create", json={"name": "m", "organization": "acme"}).status_code == 200
    for body in (b'{"files": [1]}', b"[" * 200000, b'{"files": "x"}'):
        assert _post(hub_rw, "/api/models/acme/m/preupload/main", data=body).status_code == 400
    for line in ([1], {"key": "file", "value": "x"}, {"key": "file", "value": {"path": "a", "content": 5}}):
        assert _post(hub_rw, "/api/models/acme/m/commit/main", data=json.dumps(line)).status_code == 400
    assert _post(hub_rw, "/api/models/acme/m/commit/main", token="\u00e9t\u00e9", data=b"{}").status_code == 401
    r = requests.get(hub_rw.url + "/acme/m/resolve/main/%E2%82%AC", timeout=30)
    assert r.status_code == 404 and "\u20ac" in r.json()["error"]


def test_deleting_a_missing_file_and_file_folder_clashes_are_refused(hub_rw):
    assert _post(hub_rw, "/api/repos/create", json={"name": "d", "organization": "acme"}).status_code == 200
    add = lambda path: json.dumps({"key": "file", "value": {"path": path, "content": "aGk=", "encoding": "base64"}})
    assert _post(hub_rw, "/api/models/acme/d/commit/main", data=add("a/b.txt")).status_code == 200
    assert _post(hub_rw, "/api/models/acme/d/commit/main", data=add("a")).status_code == 409
    gone = json.dumps({"key": "deletedFile", "value": {"path": "nope.txt"}})
    assert _post(hub_rw, "/api/models/acme/d/commit/main", data=gone).status_code == 404


def test_upload_links_are_bound_to_their_object_and_expire(tmp_path, monkeypatch):
    import time

    from zoo.errors import ZooError
    from zoo.hub.auth import Auth

    auth = Auth(set(), tmp_path)
    assert oct((tmp_path / "hub-secret").stat().st_mode & 0o777) == "0o600"
    sig = auth.sign("acme/m", "a" * 64, 10)
    assert auth.check_signature("acme/m", "a" * 64, 10, sig)
    assert Auth(set(), tmp_path).check_signature("acme/m", "a" * 64, 10, sig)  # another worker, same secret
    assert not auth.check_signature("acme/m", "a" * 64, 11, sig) and not auth.check_signature("acme/x", "a" * 64, 10, sig)
    expired = auth.sign("acme/m", "a" * 64, 10, expires=int(time.time()) - 1)
    assert not auth.check_signature("acme/m", "a" * 64, 10, expired)
    assert not auth.check_signature("acme/m", "a" * 64, 10, "") and not auth.check_signature("acme/m", "a" * 64, 10, "9" * 40)
    monkeypatch.setenv("ZOO_HUB_SECRET", "x" * 40)  # one secret for servers behind a load balancer
    assert Auth(set(), tmp_path / "elsewhere").sign("acme/m", "a" * 64, 10, 2**40) == \
        Auth(set(), tmp_path / "other").sign("acme/m", "a" * 64, 10, 2**40)
    monkeypatch.setenv("ZOO_HUB_SECRET", "short")
    with pytest.raises(ZooError, match="shorter than 32 bytes"):
        Auth(set(), tmp_path)


def test_a_refused_commit_leaves_no_blob_behind(hub_rw):
    """400 (a bad line after a good file), 409 (a path clash) and 413 (over the limit): the inline
    files the commit carried before it was refused are not kept."""
    import base64

    assert _post(hub_rw, "/api/repos/create", json={"name": "r", "organization": "acme"}).status_code == 200
    blobs = hub_rw.root / "blobs"

    def stored():
        return {p.name for p in blobs.iterdir() if not p.name.startswith(".")} if blobs.exists() else set()

    def inline(path, data):
        return json.dumps({"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(),
                                                     "encoding": "base64"}})

    ok = os.urandom(100)
    assert _post(hub_rw, "/api/models/acme/r/commit/main", data=inline("a/b.txt", ok)).status_code == 200
    before = stored()
    assert hashlib.sha256(ok).hexdigest() in before
    first, second, third = os.urandom(1000), os.urandom(1000), os.urandom(1000)
    bad = inline("x.bin", first) + "\n" + json.dumps({"key": "renameFile", "value": {"path": "y"}})
    assert _post(hub_rw, "/api/models/acme/r/commit/main", data=bad).status_code == 400
    clash = inline("a", second)  # a file where the folder a/ is
    assert _post(hub_rw, "/api/models/acme/r/commit/main", data=clash).status_code == 409
    big = inline("z.bin", third) + "\n" + "x" * (65 * 1024 * 1024)
    assert _post(hub_rw, "/api/models/acme/r/commit/main", data=big).status_code == 413
    assert stored() == before and not list(blobs.glob(".incomplete-*"))
    # the same bytes as a file an earlier commit holds are never removed by a refusal
    again = inline("c.txt", ok) + "\n" + json.dumps({"key": "renameFile", "value": {"path": "y"}})
    assert _post(hub_rw, "/api/models/acme/r/commit/main", data=again).status_code == 400
    assert requests.get(hub_rw.url + "/acme/r/resolve/main/a/b.txt", timeout=30).content == ok
