"""Pull, verify, pin, lock against real sources: the bundled package files and a served hub."""

import os
import socket
import subprocess
import sys
import threading

import pytest

import zoo
from zoo.weights.cache import Cache, CacheError, CorruptBlobError
from zoo.errors import PullError
from zoo.weights.pull import open_weights, pull
from zoo.weights.verify import pin, verify

from conftest import run_zoo, tiny_hub_card, write_toml, zoo_cli


@pytest.fixture
def no_network(monkeypatch):
    """Any outgoing connection fails inside the test (the offline guarantee is checked, not assumed)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a socket connection was attempted offline: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_offline_pull_of_bundled_lite0_then_verified_open(monkeypatch, no_network):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    path = pull("efficientnet_lite0")
    card = zoo.card("efficientnet_lite0")
    assert path.name == card.sha256 and path.stat().st_size == card.size_bytes
    assert open_weights("efficientnet_lite0") == path
    assert [r.ok for r in verify()] == [True]
    assert not list(Cache().temp_files())


def test_offline_pull_of_a_hub_only_card_says_what_to_do(monkeypatch, no_network):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(PullError) as info:
        pull("resnet50")
    text = str(info.value)
    assert "zoo pull resnet50.a1_in1k" in text and "zoo mirror export" in text and "offline" in text.lower()


def test_hf_pull_from_the_loopback_hub(hub, tiny_weights, user_cards, monkeypatch):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    path = pull("test_efficientnet.zootest")
    assert path.read_bytes() == tiny_weights.read_bytes()
    entry = Cache().entry("test_efficientnet.zootest")
    assert entry.sha256 == sha and len(entry.revision) == 40
    assert hub.stats()["GET zootest/tiny/model.safetensors"] == 1
    pull("test_efficientnet.zootest")  # cached: no second download
    assert hub.stats()["GET zootest/tiny/model.safetensors"] == 1


def test_unpinned_card_is_verified_against_the_hub_sha256_and_pinned(hub, tiny_weights, user_cards, monkeypatch):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(None))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    pull("test_efficientnet.zootest")
    assert Cache().pins()["test_efficientnet.zootest"]["sha256"] == sha
    # zoo pin writes it into the (writable) card file
    assert pin("test_efficientnet.zootest") == (sha, str(user_cards / "tiny.toml"))
    assert zoo.card("test_efficientnet.zootest").sha256 == sha


def test_wrong_pinned_sha256_is_discarded_with_expected_and_got(hub, tiny_weights, user_cards, monkeypatch):
    actual = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    wrong = "0" * 64
    write_toml(user_cards / "tiny.toml", tiny_hub_card(wrong))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    with pytest.raises(PullError) as info:
        pull("test_efficientnet.zootest")
    assert f"expected {wrong}" in str(info.value) and actual in str(info.value)
    cache = Cache()
    assert not cache.has_blob(wrong) and not cache.has_blob(actual) and not list(cache.temp_files())


class DroppingProxy:
    """A real TCP proxy in front of the hub that cuts the first connection carrying more than
    ``cut_after`` bytes of response, mid-body (a flaky network, not a mock)."""

    def __init__(self, target_port: int, cut_after: int):
        self.target, self.cut_after, self.cuts = target_port, cut_after, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.target), timeout=30)
        threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
        self._pipe(upstream, client, True)

    def _pipe(self, src, dst, downstream):
        sent = 0
        try:
            while data := src.recv(65536):
                if downstream and self.cuts == 0 and sent + len(data) > self.cut_after:
                    dst.sendall(data[: self.cut_after - sent])
                    self.cuts += 1
                    raise ConnectionResetError
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def test_connection_dropped_mid_body_resumes_to_a_verified_file(hub, tiny_weights, user_cards, monkeypatch):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    proxy = DroppingProxy(hub.port, cut_after=tiny_weights.stat().st_size // 2)
    monkeypatch.setenv("HF_ENDPOINT", proxy.url)
    path = pull("test_efficientnet.zootest")
    assert proxy.cuts == 1
    assert path.read_bytes() == tiny_weights.read_bytes()
    assert not list(Cache().temp_files())
    # the second GET asked only for the missing bytes
    assert hub.stats()["GET zootest/tiny/model.safetensors"] == 2


def test_corrupt_blob_is_refused_reported_and_repaired(monkeypatch, capsys):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    path = pull("efficientnet_lite0")
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(CorruptBlobError, match="corrupt.*expected sha256"):
        open_weights("efficientnet_lite0")
    result = zoo_cli(capsys, "verify")
    assert result.returncode == 1 and "tf_efficientnet_lite0.bundled_in1k" in result.stdout and "CORRUPT" in result.stdout
    result = zoo_cli(capsys, "verify", "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert open_weights("efficientnet_lite0") == path


def test_four_processes_pulling_at_once_download_once(hub, tiny_weights, user_cards, isolated_env):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    env = {**os.environ, "HF_ENDPOINT": hub.url, "ZOO_CARDS_PATH": str(user_cards), "ZOO_HOME": str(isolated_env)}
    code = "import zoo.weights as w; print(w.pull('test_efficientnet.zootest'))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    assert hub.stats()["GET zootest/tiny/model.safetensors"] == 1
    assert (isolated_env / "blobs" / sha).read_bytes() == tiny_weights.read_bytes()


@pytest.mark.slow  # three pulls against a live hub (~7 s)
def test_lock_file_pins_exact_bytes(hub, tiny_weights, user_cards, monkeypatch, tmp_path):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
    env = {"HF_ENDPOINT": hub.url, "ZOO_CARDS_PATH": str(user_cards), "ZOO_HOME": os.environ["ZOO_HOME"]}
    result = run_zoo("lock", "test_efficientnet.zootest", env=env)
    assert result.returncode == 0, result.stderr
    lock = tmp_path / "zoo.lock"
    lock.write_text(result.stdout)
    assert sha in result.stdout and "revision" in result.stdout
    fresh = {**env, "ZOO_HOME": str(tmp_path / "other_home")}
    assert run_zoo("pull", "--lock", str(lock), "-q", env=fresh).returncode == 0
    lock.write_text(result.stdout.replace(sha, "f" * 64))
    failed = run_zoo("pull", "--lock", str(lock), "-q", env={**fresh, "ZOO_HOME": str(tmp_path / "third")})
    assert failed.returncode == 1 and "f" * 64 in failed.stderr


def test_free_space_is_checked_before_bytes_move(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(CacheError, match=r"needs \d+ MB, \d+ MB free in ZOO_HOME"):
        cache.ensure_space(10**15, "downloading huge")


def test_mirrors_come_first_and_a_wrong_mirror_is_skipped(tmp_path_factory, tiny_weights, user_cards, monkeypatch):
    from conftest import HubServer

    good, bad = HubServer(tmp_path_factory.mktemp("good")), HubServer(tmp_path_factory.mktemp("bad"))
    try:
        sha = good.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
        other = tmp_path_factory.mktemp("o") / "other.safetensors"
        data = bytearray(tiny_weights.read_bytes())
        data[-100] ^= 0xFF  # one flipped bit pattern in the last tensor: other bytes, same size
        other.write_bytes(bytes(data))
        bad.publish(other, "zootest/tiny", "test_efficientnet.zootest")
        # the card's own source points nowhere reachable: only the mirrors can serve
        write_toml(user_cards / "tiny.toml", tiny_hub_card(sha))
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("ZOO_MIRRORS", f"{bad.url},{good.url}")
        path = pull("test_efficientnet.zootest")
        assert path.read_bytes() == tiny_weights.read_bytes()
        assert Cache().entry("test_efficientnet.zootest").source == f"mirror {good.url}"
        assert "GET zootest/tiny/model.safetensors" not in bad.stats()  # the HEAD's sha256 already disagreed
    finally:
        good.stop()
        bad.stop()


def test_plain_http_source_and_pull_by_uri(hub, tiny_weights, user_cards):
    sha = hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    url = f"{hub.url}/zootest/tiny/resolve/main/model.safetensors"
    write_toml(user_cards / "tiny.toml", tiny_hub_card(sha, sources=[{"uri": url}]))
    assert pull("test_efficientnet.zootest").read_bytes() == tiny_weights.read_bytes()
    result = run_zoo("pull", "-q", url, env={"ZOO_HOME": os.environ["ZOO_HOME"] + "-uri"})
    assert result.returncode == 0 and sha in result.stdout, result.stderr


def test_public_api_pull_returns_the_verified_path(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    path = zoo.pull("efficientnet_lite1")
    assert path.name == zoo.card("efficientnet_lite1").sha256 and zoo.open_weights("efficientnet_lite1") == path


def test_a_mirror_that_is_down_falls_back_to_the_card_sources(monkeypatch):
    monkeypatch.setenv("ZOO_MIRRORS", "http://127.0.0.1:1")  # nothing listens on port 1
    path = pull("efficientnet_lite0")
    assert path.name == zoo.card("efficientnet_lite0").sha256
    assert Cache().entry("tf_efficientnet_lite0.bundled_in1k").source.startswith("pkg://")


def test_a_foreign_partial_file_never_becomes_an_unpinned_download(hub, tiny_weights, user_cards):
    hub.publish(tiny_weights, "zootest/tiny", "test_efficientnet.zootest")
    url = f"{hub.url}/zootest/tiny/resolve/main/model.safetensors"  # plain http: no sha256 announced
    write_toml(user_cards / "tiny.toml", tiny_hub_card(None, sources=[{"uri": url}]))
    cache = Cache()
    cache.blobs.mkdir(parents=True)
    (cache.blobs / ".incomplete-test_efficientnet.zootest.999999").write_bytes(os.urandom(4096))
    assert pull("test_efficientnet.zootest").read_bytes() == tiny_weights.read_bytes()


def test_adding_files_from_two_threads_keeps_them_apart(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from zoo.util.hashing import sha256_file

    files = []
    for i in range(2):
        f = tmp_path / f"{i}.bin"
        f.write_bytes(os.urandom(20 << 20))
        files.append(f)
    cache = Cache(tmp_path / "home")
    with ThreadPoolExecutor(2) as pool:
        shas = list(pool.map(cache.add_file, files))
    assert shas == [sha256_file(f) for f in files]
    assert all(cache.blob_path(s).read_bytes() == f.read_bytes() for s, f in zip(shas, files))


@pytest.mark.slow  # four CLI runs (~10 s)
def test_cli_errors_are_messages_not_tracebacks(tmp_path, isolated_env):
    env = {"ZOO_HOME": str(isolated_env), "ZOO_OFFLINE": "1"}
    bad = run_zoo("predict", "efficientnet_lite0", str(tmp_path), "--batch-size", "0", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    raw = zoo.card("efficientnet_lite0").sources[0]
    from zoo.weights.sources import local_path
    from zoo.cards.uri import parse_uri

    pth = local_path(parse_uri(raw.uri))
    bad = run_zoo("convert", pth, str(tmp_path / "o.safetensors"), "--converter", "efficientnet_lite_pth",
                  "--architecture", "no_such_arch", env=env)
    assert bad.returncode == 1 and "no_such_arch" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_zoo("convert", pth, str(tmp_path / "missing" / "o.safetensors"), "--converter",
                  "efficientnet_lite_pth", "--architecture", "tf_efficientnet_lite0", env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    f = tmp_path / "w.bin"
    f.write_bytes(b"some weights")
    ok = run_zoo("pull", "-q", str(f), env=env)
    assert ok.returncode == 0 and "e0" not in ok.stderr, ok.stderr
