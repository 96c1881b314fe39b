"""The cache (zoo/weights/cache.py): atomic verified writes, stamps, locks, index, prune, and its CLI."""

import os
import signal
import subprocess
import sys
import time

import pytest

from zoo.weights.cache import Cache, CacheError, CorruptBlobError
from zoo.util.hashing import sha256_file, sha256_files
from zoo.util.tempfiles import HOST, owner_of

from conftest import zoo_cli


def test_writer_commits_only_a_matching_hash(tmp_path):
    cache = Cache(tmp_path)
    data = os.urandom(3 << 20)
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    with cache.writer("k") as w:
        w.write(data[:1000])
        w.write(data[1000:])
        assert w.commit(sha, expected_size=len(data)) == sha
    assert cache.blob_path(sha).read_bytes() == data
    assert oct(cache.blob_path(sha).stat().st_mode & 0o777) == "0o444"
    with cache.writer("k") as w:
        w.write(b"other bytes")
        with pytest.raises(CorruptBlobError, match=f"expected {sha}"):
            w.commit(sha)
    with cache.writer("k") as w:
        with pytest.raises(CorruptBlobError, match="empty body"):
            w.commit(sha, expected_size=len(data))
    with cache.writer("k") as w:
        w.write(data[:10])
        with pytest.raises(CorruptBlobError, match=r"short body \(10 of"):
            w.commit(sha, expected_size=len(data))
    assert sorted(p.name for p in cache.blobs.iterdir()) == [sha]  # no temp file left behind


def test_killed_writer_leaves_no_final_file_and_its_partial_is_resumed(tmp_path):
    # The child writes more than its file's write buffer can hold (its size is read, not assumed:
    # st_blksize is 4 KiB here, 1 MiB on some NFS), waits until bytes have reached the file, and is
    # killed. What resumes is whatever the kill left on disk: the partial's own size, not a guess.
    code = ("import io, os, sys, time; from zoo.weights.cache import Cache\n"
            "w = Cache(sys.argv[1]).writer('dl', resume=True)\n"
            "total = 2 * max(io.DEFAULT_BUFFER_SIZE, os.stat(w.path).st_blksize) + 5000\n"
            "data = (bytes(range(251)) * (total // 251 + 1))[:total]\n"
            "for i in range(0, total, 1000): w.write(data[i:i + 1000])\n"
            "while os.stat(w.path).st_size == 0: time.sleep(0.01)\n"
            "print(total, flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    total = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = (bytes(range(251)) * (total // 251 + 1))[:total]
    cache = Cache(tmp_path)
    [left] = cache.blobs.iterdir()
    assert left.name.startswith(".incomplete-dl.") and owner_of(left.name) == (HOST, str(proc.pid))
    flushed = left.stat().st_size
    assert 0 < flushed <= total and left.read_bytes() == data[:flushed]
    w = cache.writer("dl", resume=True)
    assert w.offset == flushed and not left.exists()  # adopted: renamed to this writer's own temp file
    w.write(data[flushed:])
    import hashlib

    assert w.commit(hashlib.sha256(data).hexdigest(), expected_size=total)
    assert not list(cache.temp_files())


def test_open_verified_uses_the_stamp_and_rehashes_after_a_change(tmp_path):
    cache = Cache(tmp_path)
    src = tmp_path / "f.bin"
    src.write_bytes(b"weights" * 1000)
    sha = cache.add_file(src)
    path = cache.open_verified(sha)
    assert path == cache.blob_path(sha)
    stamp_file = cache.stamps / f"{sha}.json"
    before = stamp_file.stat().st_mtime_ns
    cache.open_verified(sha)
    assert stamp_file.stat().st_mtime_ns == before  # fast path: no re-hash, no re-stamp
    os.chmod(path, 0o644)
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.write(b"W")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime moved
    with pytest.raises(CorruptBlobError):
        cache.open_verified(sha)


def test_lock_of_a_killed_process_is_free_at_once(tmp_path):
    # no clock: timeout=0 is a single try, so "free at once" means the first try after the holder
    # died succeeds (the kernel dropped its fcntl lock when it exited), and the lock is then ours
    code = ("import sys, time; from zoo.weights.cache import Cache\n"
            "l = Cache(sys.argv[1]).lock('x'); l.__enter__(); print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(CacheError, match="held the lock"):
        with Cache(tmp_path).lock("x", timeout=0):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Cache(tmp_path).lock("x", timeout=0):
        with pytest.raises(CacheError, match="held the lock"):  # taken over: held by us, refused to others
            with Cache(tmp_path).lock("x", timeout=0):
                pass
    with Cache(tmp_path).lock("x", timeout=0):  # and released on exit
        pass


def test_parallel_hashing_equals_sequential(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(os.urandom(1 << 20) * (i + 1))
        paths.append(str(p))
    assert sha256_files(paths) == [sha256_file(p) for p in paths]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_prune_keeps_what_is_referenced(tmp_path):
    cache = Cache(tmp_path)
    files = {}
    for name in ("old", "new", "pinned"):
        p = tmp_path / name
        p.write_bytes(name.encode() * 100)
        files[name] = cache.add_file(p)
    cache.record("old.a", files["old"], 300, "test")
    cache.record("new.a", files["new"], 300, "test")
    cache.pin("pinned.a", files["pinned"], 600, "test")
    (cache.blobs / f".incomplete-gone.{HOST}.999999999.0123abcd").write_bytes(b"partial")
    removed = cache.prune(older_than=86400, now=time.time() + 2 * 86400, keep={files["new"]})
    assert removed["entries"] == ["new.a", "old.a"]
    assert removed["blobs"] == [files["old"]]
    assert removed["temp"] == [f".incomplete-gone.{HOST}.999999999.0123abcd"]
    assert cache.has_blob(files["new"]) and cache.has_blob(files["pinned"])


def test_cache_cli(monkeypatch, isolated_env, capsys):
    monkeypatch.setenv("ZOO_OFFLINE", "1")  # in this process: the real parser and commands, no start-up per call
    assert zoo_cli(capsys, "cache", "path").stdout.strip() == str(isolated_env)
    assert zoo_cli(capsys, "pull", "efficientnet_lite0", "-q").returncode == 0
    ls = zoo_cli(capsys, "cache", "ls").stdout
    assert "tf_efficientnet_lite0.bundled_in1k" in ls and "18.8" in ls
    assert zoo_cli(capsys, "cache", "rm", "efficientnet_lite0").returncode == 0
    assert "empty" in zoo_cli(capsys, "cache", "ls").stdout
    assert not list((isolated_env / "blobs").glob("[0-9a-f]*"))
    bad = zoo_cli(capsys, "cache", "rm", "efficientnet_lite0")
    assert bad.returncode == 2 and "not in the cache" in bad.stderr
    assert zoo_cli(capsys, "cache", "prune", "--older-than", "30d").returncode == 0


def test_prune_spares_fresh_blobs_and_names_it_did_not_write(tmp_path):
    cache = Cache(tmp_path)
    src = tmp_path / "f"
    src.write_bytes(b"fresh")
    sha = cache.add_file(src)  # not indexed yet, as inside a running pull
    (cache.blobs / ".incomplete-convert-x.123.456.incomplete").write_bytes(b"a writer's own temp name")
    removed = cache.prune(older_than=0)
    assert cache.has_blob(sha) and removed["blobs"] == [] and removed["temp"] == []


def test_pins_are_one_file_each_and_an_older_pins_json_is_still_read(tmp_path):
    import json

    cache = Cache(tmp_path)
    (tmp_path / "pins.json").write_text(json.dumps({"old.a": {"sha256": "1" * 64, "size": 1, "source": "x"}}))
    cache.pin("new.a", "2" * 64, 2, "y")
    cache.pin("old.a", "3" * 64, 3, "z")  # a newer pin of the same card wins over the legacy file
    assert (tmp_path / "pins" / "new.a.json").is_file()
    assert {n: p["sha256"] for n, p in cache.pins().items()} == {"old.a": "3" * 64, "new.a": "2" * 64}
    with pytest.raises(CacheError, match="bad card name"):
        cache.pin("../x", "4" * 64, 4, "w")


def test_prune_covers_every_area_of_zoo_home(tmp_path):
    """Features, fetched runs and measurements age out like index entries; live files, other
    writers' temp files and what is still used stay (zoo/home.py's rules)."""
    import os

    from zoo import home

    cache = Cache(tmp_path)
    old, now = time.time() - 40 * 86400, time.time()
    made = {}
    for area, name in ((home.FEATURES, "a" * 64 + ".safetensors"), (home.MEASUREMENTS, "x.a.json"),
                       (home.RUNS, "models--acme--run")):
        folder = tmp_path / area
        folder.mkdir()
        stale, fresh = folder / name, folder / ("fresh-" + name)
        for p in (stale, fresh):
            (p.mkdir() if area == home.RUNS else p.write_bytes(b"x"))
        os.utime(stale, (old, old))
        made[area] = (stale.name, fresh)
    dead = tmp_path / home.FEATURES / f".{'b' * 64}.{HOST}.999999999.0123abcd.rows"
    dead.write_bytes(b"partial rows")
    staging = tmp_path / f".{home.BUNDLE_STAGING}.{HOST}.999999999.0123abcd.import"
    staging.mkdir()
    removed = cache.prune(older_than=30 * 86400, now=now)
    for area, (stale, fresh) in made.items():
        assert stale in removed[area] and fresh.exists(), area
    assert dead.name in removed[home.FEATURES] and not dead.exists()
    assert staging.name in removed["temp"] and not staging.exists()


def test_cache_ls_shows_each_area_with_its_size(isolated_env, monkeypatch, capsys):
    from zoo import home

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert zoo_cli(capsys, "pull", "efficientnet_lite0", "-q").returncode == 0
    ls = zoo_cli(capsys, "cache", "ls").stdout
    for area in home.AREAS:
        assert f" {area.name} " in ls
    blobs_line = next(line for line in ls.splitlines() if f" {home.BLOBS} " in line)
    assert "18.8" in blobs_line  # the lite0 safetensors file, in MB
