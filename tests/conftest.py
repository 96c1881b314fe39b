"""Shared fixtures: an isolated environment per test, and a directory of user cards.

Every test gets its own ``ZOO_HOME`` and ``HF_HOME`` (nothing leaks from the developer's caches)
and no ``ZOO_CARDS_PATH`` unless it asks for one.
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


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("zoo_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("ZOO_CARDS_PATH", raising=False)
    yield home
    from zoo import registry

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
                sources=[{"uri": f"hf://zootest/{name}/model.safetensors"}])
    data.update(changes)
    return data


@pytest.fixture
def user_cards(tmp_path, monkeypatch):
    """A directory on ``ZOO_CARDS_PATH``; write cards into it with ``write_toml``."""
    d = tmp_path / "user_cards"
    d.mkdir()
    monkeypatch.setenv("ZOO_CARDS_PATH", str(d))
    return d


def run_zoo(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (``python -m zoo``), capturing text output."""
    import os

    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
