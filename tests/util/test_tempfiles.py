"""Temp names no two writers share: the cache stays right on a shared file system whose locks are broken."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import run_zoo, tiny_hub_card, write_toml
from zoo.weights.cache import Cache
from zoo.util.hashing import sha256_file
from zoo.util.tempfiles import HOST, STALE_SECONDS, abandoned, owner_of, temp_beside


def test_temp_names_are_unique_and_say_their_writer(tmp_path):
    target = tmp_path / "model.json"
    names = {temp_beside(target).name for _ in range(100)}
    assert len(names) == 100
    name = names.pop()
    assert name.startswith(".model.json.") and name.endswith(".tmp")
    assert owner_of(name) == (HOST, str(os.getpid()))
    assert owner_of("model.json") is None and owner_of(".incomplete-x.123.456") is None


def test_only_a_dead_writer_is_abandoned(tmp_path):
    def leftover(name: str, age: float = 0) -> object:
        p = tmp_path / name
        p.write_bytes(b"partial")
        os.utime(p, (time.time() - age, time.time() - age))
        return p

    assert not abandoned(leftover(f".a.{HOST}.{os.getpid()}.0123abcd.tmp"))  # this very process
    assert abandoned(leftover(f".b.{HOST}.999999999.0123abcd.tmp"))  # no such pid here
    # another host's pid means nothing here: judged by the time since its last write
    assert not abandoned(leftover(".c.otherhost.1.0123abcd.tmp"))
    assert abandoned(leftover(".d.otherhost.1.0123abcd.tmp", age=STALE_SECONDS + 60))
    assert not abandoned(leftover(".e.not-ours.tmp", age=10 * STALE_SECONDS))
    # an older zoo's pid-only name: the host is unknown, so only age counts
    assert not abandoned(leftover(".incomplete-sha-x.999999999"))
    assert abandoned(leftover(".incomplete-sha-y.999999999", age=STALE_SECONDS + 60))


def test_resume_leaves_a_live_writer_of_another_host_alone(tmp_path):
    cache = Cache(tmp_path)
    data = os.urandom(3000)
    sha = hashlib.sha256(data).hexdigest()
    cache.blobs.mkdir(parents=True)
    live = cache.blobs / f".incomplete-sha-{sha}.otherhost.4242.0123abcd"
    live.write_bytes(b"garbage another host is still writing")
    stale = cache.blobs / f".incomplete-sha-{sha}.otherhost.4343.89abcdef"
    stale.write_bytes(data[:1000])
    os.utime(stale, (time.time() - 2 * STALE_SECONDS,) * 2)
    with cache.writer(f"sha-{sha}", resume=True) as w:
        assert w.offset == 1000  # the stale partial was adopted, the live one was not
        w.write(data[1000:])
        assert w.commit(sha, expected_size=len(data)) == sha
    assert live.read_bytes() == b"garbage another host is still writing"
    assert cache.blob_path(sha).read_bytes() == data


def test_prune_removes_only_abandoned_temp_files(tmp_path):
    cache = Cache(tmp_path)
    cache.blobs.mkdir(parents=True)
    dead = cache.blobs / f".incomplete-x.{HOST}.999999999.0123abcd"
    other = cache.blobs / ".incomplete-y.otherhost.1.0123abcd"
    for p in (dead, other):
        p.write_bytes(b"partial")
    assert cache.prune(older_than=0)["temp"] == [dead.name]
    assert other.exists()
    assert cache.prune(older_than=0, now=time.time() + 2 * STALE_SECONDS)["temp"] == [other.name]


WRITER = """
import hashlib, os, sys, time
from zoo.weights.cache import Cache
data = bytes(range(256)) * 16384
sha = hashlib.sha256(data).hexdigest()
with Cache(sys.argv[1]).writer("sha-" + sha, resume=True) as w:
    for i in range(0, len(data), 1 << 18):
        w.write(data[i:i + (1 << 18)])
        time.sleep(0.03)
    print(os.getpid(), w.commit(sha, expected_size=len(data)))
"""


def test_two_writers_with_the_same_host_and_pid_never_share_a_temp_file(tmp_path):
    """What two machines on NFS look like: each writer in its own pid namespace is pid 1 on the
    same host name, both fetch the same blob at once and no lock keeps them apart."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--pid", "--fork", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs unshare --pid (root or user namespaces) to give two writers the same pid")
    cmd = [unshare, "--pid", "--fork", sys.executable, "-c", WRITER, str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    pids, shas = zip(*(o[0].split() for o in outs))
    assert pids == ("1", "1")  # the same pid: a pid-only temp name would have been shared
    data = bytes(range(256)) * 16384
    assert shas[0] == shas[1] == hashlib.sha256(data).hexdigest()
    cache = Cache(tmp_path)
    assert cache.blob_path(shas[0]).read_bytes() == data
    assert not list(cache.temp_files())


@pytest.mark.slow  # ~7 s; tests/weights/test_weights.py::test_four_processes_pulling_at_once_download_once stays quick
def test_concurrent_pulls_without_locks_all_get_the_verified_file(hub, tiny_weights, user_cards, isolated_env):
    """ZOO_NO_LOCKS=1 (a file system whose locks hang): 4 processes pull one model at once into
    one cache; a broken lock may cost a download more, never a wrong or half-written file."""
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    env = {"HF_ENDPOINT": hub.url, "ZOO_NO_LOCKS": "1", "ZOO_CARDS_PATH": str(user_cards)}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_zoo("pull", "test_efficientnet.zootest", "-q", env=env), range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr[-1000:] for r in results]
    cache = Cache(isolated_env)
    assert sha256_file(cache.blob_path(sha)) == sha == sha256_file(tiny_weights)
    assert not list(cache.temp_files()) and not (isolated_env / "locks").exists()
    assert cache.entry("test_efficientnet.zootest").sha256 == sha
    assert 1 <= hub.stats()["GET zootest/tiny/model.safetensors"] <= 4
