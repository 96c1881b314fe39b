"""Object storage with compare-and-swap (zoo/store/objects.py) on a directory and on a real
S3-compatible store (SeaweedFS on loopback): the race test of issue 9 first."""

import json
import threading
import uuid

import pytest
import requests

from zoo.store.objects import LocalStorage, PreconditionFailed, S3Storage, json_update, open_storage


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def stores(request, tmp_path):
    """Two handles on one store, as two servers would hold them (separate clients)."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store"), LocalStorage(tmp_path / "store")
    seaweed = request.getfixturevalue("seaweed")
    prefix = f"hub-{uuid.uuid4().hex[:8]}"
    return S3Storage(seaweed.bucket(), prefix, seaweed.client()), S3Storage(seaweed.bucket(), prefix, seaweed.client())


def test_conditional_writes_are_enforced(stores):
    a, b = stores
    etag = a.put("repos/acme/m/refs/main", b"c1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        b.put("repos/acme/m/refs/main", b"other", if_none_match=True)
    new = b.put("repos/acme/m/refs/main", b"c2", if_match=etag)
    with pytest.raises(PreconditionFailed):  # a's view is stale now
        a.put("repos/acme/m/refs/main", b"c3", if_match=etag)
    got = a.get("repos/acme/m/refs/main")
    assert got.data == b"c2" and got.etag == new and a.get("repos/acme/m/refs/nope") is None
    assert a.list("repos/acme/") == ["repos/acme/m/refs/main"] and a.list("repos/other/") == []
    with pytest.raises(Exception, match="bad storage key"):
        a.get("../escape")


def test_two_writers_commit_20_times_each_and_lose_nothing(stores):
    """Two servers append to one repo's history at once: every commit lands, history is linear."""
    errors = []

    def writer(store, name):
        try:
            for i in range(20):
                json_update(store, "repos/acme/m/history.json",
                            lambda doc: {"commits": (doc or {"commits": []})["commits"] + [f"{name}-{i}"]})
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, n)) for s, n in zip(stores, ("a", "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    commits = json.loads(stores[0].get("repos/acme/m/history.json").data)["commits"]
    assert len(commits) == 40 and len(set(commits)) == 40
    for name in ("a", "b"):  # each writer's commits in its own order
        assert [c for c in commits if c.startswith(name)] == [f"{name}-{i}" for i in range(20)]


def test_s3_presigned_url_serves_the_bytes_without_credentials(seaweed):
    store = S3Storage(seaweed.bucket(), f"p-{uuid.uuid4().hex[:8]}", seaweed.client())
    store.put("blobs/abc", b"weights" * 1000)
    r = requests.get(store.url("blobs/abc", expires=60), timeout=10)
    assert r.status_code == 200 and r.content == b"weights" * 1000
    assert LocalStorage("/tmp").url("x") is None


def test_open_storage_reads_the_standard_aws_environment(seaweed, monkeypatch, tmp_path):
    for k, v in seaweed.env.items():
        monkeypatch.setenv(k, v)
    bucket, team = seaweed.bucket(), f"team-{uuid.uuid4().hex[:8]}"
    store = open_storage(f"s3://{bucket}/{team}")
    store.put("refs/main", b"x")
    assert seaweed.client().get_object(Bucket=bucket, Key=f"{team}/refs/main")["Body"].read() == b"x"
    assert isinstance(open_storage(tmp_path), LocalStorage)
    with pytest.raises(Exception, match="unsupported storage"):
        open_storage("gs://bucket/x")

