"""Faults and private files: what enters the cache never says more, or takes more space, than it should."""

import os
import stat

import zoo


def test_a_blob_is_never_more_readable_than_its_source(tmp_path, tiny_weights):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(tiny_weights.read_bytes())
    os.chmod(secret, 0o640)
    blob = zoo.fetch(str(secret)).path
    assert stat.S_IMODE(blob.stat().st_mode) == 0o440  # read-only, and still not world-readable
    shared = tmp_path / "shared.bin"
    shared.write_bytes(b"public bytes")
    os.chmod(shared, 0o644)
    assert stat.S_IMODE(zoo.fetch(str(shared)).path.stat().st_mode) == 0o444


import http.server
import subprocess
import threading

import pytest

from zoo.errors import CacheError, PullError


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs (tests run as root in CI): a real full disk, not a mock."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def endless_server():
    """A loopback HTTP server whose answer has no Content-Length and is 40 MB long (a close-delimited
    body, as HTTP/1.0 servers and some proxies send): the size is known only at the end."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            chunk = b"z" * (1 << 20)
            try:
                for _ in range(40):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_full_disk_mid_download_leaves_no_temp_file_and_says_what_to_do(small_disk, endless_server, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(small_disk / "home"))
    with pytest.raises(CacheError) as info:
        zoo.fetch(f"{endless_server}/big.bin")
    message = str(info.value)
    assert "no space left writing" in message and str(small_disk / "home" / "blobs") in message
    assert "bytes free there" in message and "zoo cache prune" in message and "partial file was removed" in message
    assert os.listdir(small_disk / "home" / "blobs") == []  # nothing half-written stays
    assert os.statvfs(small_disk).f_bfree * os.statvfs(small_disk).f_frsize > 20_000_000  # the space came back


def test_a_file_that_cannot_fit_is_refused_before_a_byte_moves_and_each_source_says_why(small_disk, tmp_path,
                                                                                       monkeypatch, user_cards):
    from conftest import tiny_card, write_toml

    big = tmp_path / "big.safetensors"
    big.write_bytes(os.urandom(20_000_000))
    monkeypatch.setenv("ZOO_HOME", str(small_disk / "home"))
    with pytest.raises(CacheError, match=r"copying .*big.safetensors needs 20 MB, \d+ MB free in ZOO_HOME .*zoo cache prune"):
        zoo.fetch(str(big))
    blobs = small_disk / "home" / "blobs"
    assert not blobs.exists() or os.listdir(blobs) == []
    # a card whose only source is that file, offline: the reason is the disk, not being offline
    write_toml(user_cards / "big.toml", tiny_card("zootest_big.a", sources=[{"uri": str(big)}]))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(PullError) as info:
        zoo.pull("zootest_big.a")
    assert "needs 20 MB" in str(info.value) and "connected machine" not in str(info.value)


@pytest.fixture
def cut_server(tiny_weights):
    """A loopback server of tiny_weights whose first answer is a 200 without Content-Length cut at
    half the file, and which honours Range after that; ``seen`` lists the Range headers it got."""
    data = tiny_weights.read_bytes()
    half = len(data) // 2
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            seen.append(self.headers.get("Range"))
            start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else None
            if start is None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(data[:half])
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/w.safetensors", data, half, seen
    server.shutdown()


@pytest.mark.parametrize("size_known", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_a_body_that_ends_early_without_a_length_is_resumed_by_the_next_pull(cut_server, tiny_weights, user_cards,
                                                                              size_known):
    """A close-delimited answer cut at half. With the size known (the card's size_bytes) the
    partial is kept, named by the sha256; without it the hash cannot match, and the partial is kept
    too, saying why. Either way the next process asks only for the rest."""
    from conftest import run_zoo, tiny_card, write_toml
    from zoo.util.hashing import sha256_file

    url, data, half, seen = cut_server
    extra = {"size_bytes": len(data)} if size_known else {}
    write_toml(user_cards / "w.toml", tiny_card("zootest_cut.a", sha256=sha256_file(tiny_weights),
                                                sources=[{"uri": url}], **extra))
    first = run_zoo("pull", "-q", "zootest_cut.a")
    said = " ".join(first.stderr.split())
    assert first.returncode == 1 and "next pull resumes from there" in said, first.stderr
    assert (f"ended early, at byte {half} of {len(data)}" if size_known else f"after {half} bytes") in said
    second = run_zoo("pull", "-q", "zootest_cut.a")
    assert second.returncode == 0, second.stderr
    assert seen == [None, f"bytes={half}-"]  # only the missing half was asked for
    assert zoo.verify(["zootest_cut.a"])[0].ok


def test_weights_a_stock_client_cached_are_taken_offline_verified(hub, tiny_weights, user_cards, tmp_path, monkeypatch):
    """An HF cache filled by stock hf_hub_download (from zoo serve): zoo pull finds the card's file
    there offline, verifies it (against the pin, else against the LFS blob's own sha256 name), and
    a tampered copy is refused."""
    from conftest import hub_client, tiny_hub_card, write_toml
    from zoo.errors import PullError

    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    code = ("import json; from huggingface_hub import hf_hub_download\n"
            "print(json.dumps(hf_hub_download('zootest/tiny', 'model.safetensors')))")
    hub_client(hub, code, tmp_path)  # HF_HOME=tmp_path/hf
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    blob = zoo.pull("test_efficientnet.zootest")
    assert blob.name == sha and zoo.Cache().entry("test_efficientnet.zootest").source.startswith("the Hugging Face cache")
    # a card that pins nothing: the LFS blob's name is its sha256, and that is what is checked (and pinned)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home2"))
    write_toml(user_cards / "tiny.toml", tiny_hub_card(None))
    assert zoo.pull("test_efficientnet.zootest").name == sha
    # the same HF cache as a mirror directory brought from elsewhere, with one byte changed: refused
    moved = tmp_path / "moved_hf"
    import shutil

    shutil.copytree(tmp_path / "hf" / "hub", moved, symlinks=True)
    lfs = moved / "models--zootest--tiny" / "blobs" / sha
    os.chmod(lfs, 0o644)
    data = bytearray(lfs.read_bytes())
    data[100] ^= 1
    lfs.write_bytes(bytes(data))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("ZOO_MIRRORS", str(moved))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home3"))
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    with pytest.raises(PullError) as info:
        zoo.pull("test_efficientnet.zootest")
    assert f"mirror {moved}" in str(info.value) and "sha256 mismatch" in str(info.value)
    assert not list((tmp_path / "home3" / "blobs").glob("[0-9a-f]*"))


def test_a_file_someone_handed_you_becomes_a_cards_weights_only_verified_or_vouched_for(tiny_weights, user_cards,
                                                                                       tmp_path, capsys):
    import json as _json

    from conftest import tiny_card, write_toml, zoo_cli
    from zoo.errors import CorruptBlobError, UsageError
    from zoo.util.hashing import sha256_file

    sha = sha256_file(tiny_weights)
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_weights.read_bytes()[:-1] + b" ")
    write_toml(user_cards / "pinned.toml", tiny_card("zootest_pinned.a", sha256=sha))
    write_toml(user_cards / "open.toml", tiny_card("zootest_open.a"))
    with pytest.raises(CorruptBlobError, match="is not the file of zootest_pinned.a: sha256 mismatch"):
        zoo.attach("zootest_pinned.a", other)
    assert zoo.attach("zootest_pinned.a", tiny_weights).name == sha
    with pytest.raises(UsageError, match="pins no sha256.*--sha256 HEX.*--trust"):
        zoo.attach("zootest_open.a", other)
    with pytest.raises(CorruptBlobError):
        zoo.attach("zootest_open.a", other, sha256=sha)
    r = zoo_cli(capsys, "pull", "zootest_open.a", "--file", str(other), "--trust")
    assert r.returncode == 0, r.stderr
    trust = _json.loads(zoo_cli(capsys, "info", "zootest_open.a", "--json").stdout)["trust"]
    assert trust["state"] == "trusted by the user" and trust["source"] == str(other) and trust["cached"]
    assert trust["sha256"] == sha256_file(other) and trust["since"]
    shown = zoo_cli(capsys, "info", "zootest_open.a").stdout
    assert "trusted by the user" in shown and str(other) in " ".join(shown.split())
    listed = {c["name"]: c["trust"]["state"] for c in _json.loads(zoo_cli(capsys, "list", "zootest*", "--json").stdout)}
    assert listed == {"zootest_open.a": "trusted by the user", "zootest_pinned.a": "pinned by the card"}
    assert zoo_cli(capsys, "pull", "zootest_open.a", "--trust").returncode == 2  # --trust only with --file


def test_an_import_that_cannot_fit_is_refused_before_anything_enters_the_cache(small_disk, tmp_path, monkeypatch):
    from zoo.weights.bundle_export import export_bundle
    from zoo.weights.bundles import import_bundle

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    zoo.pull("efficientnet_lite0")
    bundle = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"]).path
    monkeypatch.setenv("ZOO_HOME", str(small_disk / "home"))
    with pytest.raises(CacheError, match=r"importing bundle needs 19 MB, \d+ MB free in ZOO_HOME .*zoo cache prune"):
        import_bundle(bundle)
    assert not (small_disk / "home" / "blobs").exists() and not (small_disk / "home" / "models").exists()
