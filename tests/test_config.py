"""zoo/config.py reads the environment at call time, and reads huggingface_hub's variables with
huggingface_hub's own precedence (checked against its constants in a fresh process per case)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: the variables that decide huggingface_hub's cache; each case sets some of them
HF_CACHE_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")


@pytest.mark.parametrize("setting", [
    {},
    {"XDG_CACHE_HOME": "{tmp}/xdg"},
    {"HF_HOME": "{tmp}/hf-home", "XDG_CACHE_HOME": "{tmp}/xdg"},
    {"HUGGINGFACE_HUB_CACHE": "{tmp}/legacy", "HF_HOME": "{tmp}/hf-home"},
    {"HF_HUB_CACHE": "{tmp}/hub", "HUGGINGFACE_HUB_CACHE": "{tmp}/legacy", "HF_HOME": "{tmp}/hf-home"},
    {"HF_HUB_CACHE": "~/tilde-hub"},
    {"HF_HOME": "$ZOO_TEST_BASE/expanded"},
], ids=["defaults", "xdg", "hf-home", "legacy-hub-cache", "hf-hub-cache", "tilde", "expandvars"])
def test_hf_cache_location_follows_huggingface_hub(setting, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in HF_CACHE_VARS}
    env.update({k: v.format(tmp=tmp_path) for k, v in setting.items()}, ZOO_TEST_BASE=str(tmp_path / "base"))
    code = ("import json, zoo.config as c, huggingface_hub.constants as k; "
            "print(json.dumps([c.hf_hub_cache(), k.HF_HUB_CACHE, c.hf_home(), k.HF_HOME]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ours_cache, theirs_cache, ours_home, theirs_home = json.loads(done.stdout)
    assert ours_cache == theirs_cache and ours_home == theirs_home


def test_hf_cache_link_writes_where_huggingface_hub_reads(isolated_env, tmp_path, monkeypatch):
    """`zoo hf-cache link` honours XDG_CACHE_HOME (and the rest): stock clients find the files."""
    from zoo.weights.hf_cache import link_hf_cache
    from zoo.weights.pull import pull

    for var in HF_CACHE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    pull("efficientnet_lite0")
    [snapshot] = link_hf_cache(["efficientnet_lite0"])
    assert snapshot.is_relative_to(tmp_path / "xdg" / "huggingface" / "hub")
    assert snapshot.resolve().stat().st_size == snapshot.stat().st_size > 1_000_000


def test_settings_are_read_at_call_time(monkeypatch):
    from zoo import config

    monkeypatch.setenv("ZOO_LOCK_TIMEOUT", "7")
    assert config.lock_timeout(600.0) == 7.0
    monkeypatch.setenv("ZOO_LOCK_TIMEOUT", "soon")
    assert config.lock_timeout(600.0) == 600.0
    monkeypatch.setenv("ZOO_LOG_LEVEL", "DEBUG")
    assert config.log_level() == "debug"
    monkeypatch.setenv("ZOO_LOG_LEVEL", "chatty")
    assert config.log_level() is None
    monkeypatch.setenv("WORLD_SIZE", "x")
    assert config.world_size() == 1
