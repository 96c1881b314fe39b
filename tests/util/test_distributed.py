"""torchrun (gloo, CPU) runs of zoo extract and zoo finetune (zoo/util/distributed.py): weights pulled
once, every image extracted exactly once across ranks, one run directory."""

import json
import subprocess
import sys

import pytest
import torch

from zoo.util.distributed import shard

from conftest import digits_subset, run_zoo, shipped_card_data, write_toml


def test_shards_are_contiguous_without_padding():
    for n in (0, 1, 7, 150, 1797):
        for world in (1, 2, 3, 8):
            parts = [shard(n, r, world) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _torchrun(*args, env):
    """``torchrun --nproc_per_node 2 -m zoo ARGS`` (gloo on this CPU), on a free rendezvous port."""
    import os

    from conftest import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "zoo", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, **env})


@pytest.fixture
def digits300(digits_folder, tmp_path):
    return digits_subset(digits_folder, tmp_path / "digits300", 30)


@pytest.mark.slow  # two ranks, then one process (~17 s); the partial run below is the quick loop's torchrun
def test_torchrun_finetune_pulls_once_extracts_once_and_writes_one_run(hub, digits300, tmp_path):
    from zoo import pull

    # the bundled lite0 weights, served by the hub under a card whose only source is hf://
    blob = pull("efficientnet_lite0")
    hub.publish(blob, "zootest/lite0", "tf_efficientnet_lite0.zootest")
    card = shipped_card_data("tf_efficientnet_lite0.bundled_in1k")
    card.update(name="tf_efficientnet_lite0.zootest", tag="zootest", aliases=[], default=False,
                hub_repo="zootest/lite0", sources=[{"uri": "hf://zootest/lite0/model.safetensors"}])
    cards = tmp_path / "cards"
    cards.mkdir()
    write_toml(cards / "tf_efficientnet_lite0.zootest.toml", card)
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_CARDS_PATH": str(cards), "HF_ENDPOINT": hub.url}
    r = _torchrun("finetune", "tf_efficientnet_lite0.zootest", "--data", str(digits300), "--out", str(tmp_path / "run"),
                  "--strategy", "head", "--epochs", "30", "--json", "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{"):])  # rank 0 alone printed
    assert out["extracted_per_rank"] == [150, 150]  # 300 images, each through the backbone once
    assert hub.stats()["GET zootest/lite0/model.safetensors"] == 1  # rank 0 pulled; rank 1 found it cached
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["README.md", "card.toml", "head.safetensors",
                                                                    "metrics.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]  # no temp directory left behind
    # one process on the same data: the features come from the cache the two ranks wrote
    single = run_zoo("finetune", "tf_efficientnet_lite0.zootest", "--data", str(digits300), "--out",
                     str(tmp_path / "run1"), "--strategy", "head", "--epochs", "30", "--json", env={**env, "ZOO_OFFLINE": "1"})
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads(single.stdout)
    assert one["extracted_per_rank"] == [0]
    assert one["metrics"]["val_accuracy"] >= 0.75 and out["metrics"]["val_accuracy"] >= 0.75
    assert abs(one["metrics"]["val_accuracy"] - out["metrics"]["val_accuracy"]) <= 0.1


@pytest.mark.slow  # two ranks, then one process (~21 s)
def test_torchrun_extract_matches_one_process(digits300, tmp_path):
    import h5py

    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_OFFLINE": "1"}
    r = _torchrun("extract", "efficientnet_lite0", "--data", str(digits300), "--out", str(tmp_path / "two.h5"),
                  "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    # a fresh cache for one process, so it extracts again rather than reading what the ranks wrote
    one = run_zoo("extract", "efficientnet_lite0", "--data", str(digits300), "--out", str(tmp_path / "one.h5"),
                  env={"ZOO_HOME": str(tmp_path / "home1"), "ZOO_OFFLINE": "1"}, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    with h5py.File(tmp_path / "two.h5") as a, h5py.File(tmp_path / "one.h5") as b:
        assert list(a["paths"]) == list(b["paths"]) and (a["labels"][:] == b["labels"][:]).all()
        assert torch.allclose(torch.from_numpy(a["features"][:]), torch.from_numpy(b["features"][:]), atol=1e-4)


@pytest.mark.slow  # two torchrun ranks train blocks (~7 s)
def test_torchrun_partial_finetune_trains_blocks_under_ddp(digits_folder, tmp_path):
    data = digits_subset(digits_folder, tmp_path / "two", 11, ("3", "8"))  # 18 training images: shards of 9, batches 4+4+1
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_OFFLINE": "1"}
    r = _torchrun("finetune", "efficientnet_lite0", "--data", str(data), "--out", str(tmp_path / "run"),
                  "--strategy", "partial", "--epochs", "2", "--batch-size", "4", "--workers", "0", "--json", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["strategy"] == "partial" and out["metrics"]["train_size"] == 18 and out["metrics"]["val_size"] == 4
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "head.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "classifier.weight" in keys and any(k.startswith("blocks.6.") for k in keys)
    assert not any(k.startswith("conv_stem") for k in keys)
