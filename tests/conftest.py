"""Shared fixtures: an isolated environment per test, and a directory of user cards.

Every test gets its own ``ZOO_HOME`` and ``HF_HOME`` (nothing leaks from the developer's caches),
no ``ZOO_CARDS_PATH`` unless it asks for one, and ``ZOO_ENGINE=torch``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CARDS_DIR = ROOT / "cards"
REFERENCE_DIR = ROOT / "tools" / "reference"


@pytest.fixture(scope="session", autouse=True)
def torch_engine_for_session_fixtures():
    """Session fixtures (small_run's CLI subprocess, ...) run before any test's monkeypatch: they get torch too,
    or their cached features sit under another engine's key than the tests that reuse them look up."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_ENGINE", "torch")
        yield


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("zoo_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("ZOO_CARDS_PATH", raising=False)
    # every test runs torch unless it asks for an engine: a fresh ZOO_HOME would otherwise pay an
    # ONNX export per model (tests/model/test_engine.py choose theirs)
    monkeypatch.setenv("ZOO_ENGINE", "torch")
    yield home
    from zoo.cards import registry

    for name in list(registry._registered):
        registry.unregister(name)


def shipped_card_data(name: str) -> dict:
    """A shipped card file as a plain dict, to derive test cards from a real one."""
    with (CARDS_DIR / f"{name}.toml").open("rb") as fh:
        return copy.deepcopy(tomllib.load(fh))


def write_toml(path: Path, data: dict) -> Path:
    import tomlkit

    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    return path


def tiny_card(name: str = "zootest_tiny.a", **changes) -> dict:
    """A valid user card (derived from the bundled lite0 card) renamed to ``name``."""
    data = shipped_card_data("tf_efficientnet_lite0.bundled_in1k")
    arch, tag = name.split(".")
    data.update(name=name, architecture=arch, tag=tag, aliases=[], hub_repo=f"zootest/{name}",
                sources=[{"uri": f"hf://zootest/{name}/model.safetensors"}], sha256="")
    data.pop("size_bytes", None)  # other weights than lite0's: nothing pinned
    data.update(changes)
    return data


@pytest.fixture
def user_cards(tmp_path, monkeypatch):
    """A directory on ``ZOO_CARDS_PATH``; write cards into it with ``write_toml``."""
    d = tmp_path / "user_cards"
    d.mkdir()
    monkeypatch.setenv("ZOO_CARDS_PATH", str(d))
    return d


def run_zoo(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (``python -m zoo``), capturing text output."""
    import os

    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


# --- a served hub on a free loopback port, and the small models tests publish on it


def zoo_cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """``zoo ARGS`` in this process (the real parser and commands, a second less than :func:`run_zoo`
    per call): its exit code and what it printed, shaped like run_zoo's answer."""
    from zoo.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own exits (usage errors, --help)
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["zoo", *args], code, out, err)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubServer:
    """``zoo serve`` (the real CLI, uvicorn) in a subprocess over its own cache directory."""

    def __init__(self, root: Path, *extra: str, env: dict | None = None):
        import os
        import time
        import urllib.request

        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ZOO_HOME": str(root), **(env or {})}
        # the server logs every request: to a file, since a pipe nobody reads would fill and block it
        self.log_path = root.parent / f"{root.name}-serve-{self.port}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(self.port), "--cache", str(root), *extra],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        import urllib.error

        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/api/zoo/stats", timeout=1).read()
                return
            except urllib.error.HTTPError:
                return  # it answers (a private hub answers 401): it is up
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    raise RuntimeError(f"zoo serve did not start: {self.log_text()[-2000:]}")
                time.sleep(0.1)

    def log_text(self) -> str:
        """What the server logged so far (its address, a line per request, tracebacks)."""
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stats(self, token: str | None = None) -> dict:
        return self.stats_full(token)["requests"]

    def stats_full(self, token: str | None = None) -> dict:
        """The server's /api/zoo/stats: request counts per file, and bytes_out (file bytes it sent itself)."""
        import json
        import urllib.request

        headers = {"authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url + "/api/zoo/stats", headers=headers)
        return json.loads(urllib.request.urlopen(request, timeout=5).read())

    def publish(self, path: Path, hub_repo: str, name: str, filename: str = "model.safetensors") -> str:
        """Put a file into the served cache under ``hub_repo`` (what a pull or an upload would do)."""
        from zoo.weights.cache import Cache

        cache = Cache(self.root)
        sha = cache.add_file(path)
        cache.record(name, sha, path.stat().st_size, "test", hub_repo=hub_repo, filename=filename)
        return sha

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def hub(tmp_path_factory):
    server = HubServer(tmp_path_factory.mktemp("served"))
    yield server
    server.stop()


#: the write token of the ``hub_rw`` fixture
TOKEN = "zoo-test-token"


@pytest.fixture
def hub_rw(tmp_path_factory):
    """``zoo serve`` that takes writes from holders of TOKEN (reads stay open)."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"# writers\n{TOKEN}\n")
    server = HubServer(tmp_path_factory.mktemp("served_rw"), "--token-file", str(tokens), "--max-upload-mb", "64")
    yield server
    server.stop()


def hub_client(hub, code: str, tmp_path, **env):
    """Run ``code`` in a fresh Python (stock huggingface_hub/timm, HF_ENDPOINT = the hub); the last
    stdout line is JSON, returned parsed."""
    import json
    import os

    full = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    result = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A real timm model's weights (``test_efficientnet``, 1000 classes, ~1.8 MB), as zoo writes them."""
    import timm
    import torch

    from zoo.weights.convert import write_safetensors

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path_factory.mktemp("tiny") / "model.safetensors"
    write_safetensors(model.state_dict(), str(path), {"format": "pt"})
    return path


def tiny_hub_card(sha256: str | None = None, **changes) -> dict:
    """A user card for ``test_efficientnet`` whose weights live on the test hub."""
    data = tiny_card("test_efficientnet.zootest", hub_repo="zootest/tiny",
                     sources=[{"uri": "hf://zootest/tiny/model.safetensors"}], input_size=[3, 160, 160])
    data.pop("size_bytes", None)
    data["sha256"] = sha256 or ""
    data.update(changes)
    return data


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """sklearn's load_digits() (1797 real 8x8 handwritten digits) as an ImageFolder of PNGs,
    upsampled smoothly (bicubic, 64x64): nearest-neighbour blocks make lite0 see crosswords and cost
    about 4 points of linear-probe accuracy (0.90 against 0.94 with the head strategy)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        d = root / str(label)
        d.mkdir(exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize((64, 64), Image.BICUBIC).save(d / f"{i:04d}.png")
    return root


def digits_subset(digits_folder: Path, dest: Path, per_class: int, classes: tuple[str, ...] | None = None) -> Path:
    """The first ``per_class`` images of each digit class (or of ``classes``) copied to ``dest``."""
    import shutil

    for c in classes or sorted(d.name for d in digits_folder.iterdir()):
        (dest / c).mkdir(parents=True)
        for p in sorted((digits_folder / c).iterdir())[:per_class]:
            shutil.copy(p, dest / c / p.name)
    return dest


@pytest.fixture(scope="session")
def digits_home(tmp_path_factory) -> Path:
    """A ZOO_HOME shared by the tests that need lite0 features of the digits: its feature cache
    means the backbone runs over the 1797 images once per session, not once per test."""
    return tmp_path_factory.mktemp("digits_home")


@pytest.fixture(scope="session")
def digits_run(digits_folder, digits_home, tmp_path_factory):
    """``zoo finetune efficientnet_lite0`` on the digits (head strategy, 30 epochs), through the
    real CLI: (run directory, the finished process)."""
    return _head_run(digits_folder, digits_home, tmp_path_factory.mktemp("runs"))


def _head_run(data: Path, home: Path, parent: Path):
    """``zoo finetune efficientnet_lite0 --strategy head --epochs 30`` on ``data``, offline in ``home``:
    (run directory, the finished process)."""
    out = parent / "digits-lite0"
    result = run_zoo("finetune", "efficientnet_lite0", "--data", str(data), "--out", str(out),
                     "--strategy", "head", "--epochs", "30", env={"ZOO_HOME": str(home), "ZOO_OFFLINE": "1"},
                     timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="session")
def small_digits(digits_folder, tmp_path_factory) -> Path:
    """The first 20 digits of each class (200 images): data for a run in seconds."""
    return digits_subset(digits_folder, tmp_path_factory.mktemp("small_digits") / "digits", 20)


@pytest.fixture(scope="session")
def small_home(tmp_path_factory) -> Path:
    """The ZOO_HOME of ``small_run``: its feature cache holds lite0's features of ``small_digits``."""
    return tmp_path_factory.mktemp("small_home")


@pytest.fixture(scope="session")
def small_run(small_digits, small_home, tmp_path_factory):
    """``digits_run`` on ``small_digits`` (about 8 s instead of a minute): a run for the tests of what is
    done with runs (verify, load, predict, export, publish), which assert no accuracy. The tests
    that do (on all 1797 digits) are marked slow."""
    return _head_run(small_digits, small_home, tmp_path_factory.mktemp("small_runs"))


def pytest_collection_modifyitems(items):
    """Every test on SeaweedFS is slow: the store alone takes ~10 s to start, a twentieth of the
    quick loop. The directory store runs the same compare-and-swap contract there; CI runs both.
    (Parameters that reach it through ``request.getfixturevalue`` carry the mark themselves.)"""
    for item in items:
        if "seaweed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real S3-compatible store on loopback for the session (tools/seaweed.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from seaweed import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop(grace=0)  # its data is a temp dir: no need to wait the 5 s weed takes over SIGTERM
