"""Publishing runs to a hub and loading them back (zoo/transfer/publish.py), end to end against `zoo serve`
on loopback with the stock huggingface_hub client (no mocks)."""

import shutil

import pytest
import torch

import zoo
from zoo.transfer.runs import RUN_FILES

from conftest import TOKEN, hub_client, run_zoo

LOAD_AND_PREDICT = """
import json, sys, torch, zoo
from zoo.model.images import open_rgb
model = zoo.load({uri!r})
tf = zoo.transforms(model)
with torch.inference_mode():
    logits = model(torch.stack([tf(open_rgb(p)) for p in {files!r}]))
torch.save(logits, {out!r})
print(json.dumps({{"classes": model.class_names, "base": model.weights_sha256}}))
"""


def _files(digits_folder):
    return [str(p) for p in sorted(digits_folder.glob("*/*.png"))[::300]]


def test_publish_then_load_from_an_empty_home_gives_identical_predictions(small_run, digits_folder, hub_rw,
                                                                          tmp_path):
    run, _ = small_run
    r = run_zoo("publish", str(run), "--repo", "zootest/digits", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    from huggingface_hub import HfApi

    files = HfApi(endpoint=hub_rw.url).list_repo_files("zootest/digits")
    assert sorted(files) == sorted(RUN_FILES)  # the run's files only: never the base weights
    # a second machine: empty ZOO_HOME and HF cache, only the hub's address
    out = tmp_path / "logits.pt"
    code = LOAD_AND_PREDICT.format(uri="hf://zootest/digits", files=_files(digits_folder), out=str(out))
    info = hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(tmp_path / "fresh"))
    assert info["classes"] == [str(i) for i in range(10)]
    assert info["base"] == zoo.card("efficientnet_lite0").sha256
    here = zoo.load(run)
    tf = zoo.transforms(here)
    from zoo.model.images import open_rgb

    with torch.inference_mode():
        expected = here(torch.stack([tf(open_rgb(p)) for p in _files(digits_folder)]))
    assert torch.equal(torch.load(out, weights_only=True), expected)
    # and offline from the run cache it filled, with `zoo pull` filling it the same way
    again = hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(tmp_path / "fresh"), ZOO_OFFLINE="1")
    assert again == info
    pulled = run_zoo("pull", "hf://zootest/digits", env={"ZOO_HOME": str(tmp_path / "other"), "HF_ENDPOINT": hub_rw.url})
    assert pulled.returncode == 0 and "base weights" in pulled.stdout, pulled.stderr
    # one protocol: huggingface_hub's own bars are silenced, zoo's summaries say what was fetched
    lines = pulled.stderr.splitlines()
    assert any(l.startswith("fetch the run hf://zootest/digits: 4 files in") for l in lines), pulled.stderr
    assert any(l.startswith("tf_efficientnet_lite0.bundled_in1k from ") for l in lines), pulled.stderr
    assert "it/s" not in pulled.stderr and "Fetching" not in pulled.stderr, pulled.stderr


def test_a_modified_run_or_a_wrong_token_is_refused(small_run, hub_rw, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run[0], run)
    r = run_zoo("publish", str(run), "--repo", "zootest/x", "--endpoint", hub_rw.url, "--token", "wrong")
    assert r.returncode == 1 and "--token" in r.stderr and "Traceback" not in r.stderr
    (run / "README.md").write_text("edited")
    r = run_zoo("publish", str(run), "--repo", "zootest/x", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 1 and "README.md was changed" in r.stderr
    r = run_zoo("predict", "hf://zootest/nothing-here", str(run / "card.toml"), env={"HF_ENDPOINT": hub_rw.url})
    assert r.returncode == 1 and "zootest/nothing-here" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # ~8 s; the publish round trip above stays quick
def test_merged_export_loads_in_stock_timm_from_the_hub(small_run, digits_folder, hub_rw, tmp_path):
    run, _ = small_run
    merged = tmp_path / "merged"
    assert run_zoo("export", str(run), "--merged", str(merged)).returncode == 0
    # 18 MB: over the 10 MB of an inline upload, so this also takes the LFS path (not Xet) to a zoo hub
    r = run_zoo("publish", str(merged), "--repo", "zootest/digits-merged", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "timm.pt"
    code = f"""
import json, timm, torch
from PIL import Image
model = timm.create_model("hf-hub:zootest/digits-merged", pretrained=True).eval()
cfg = timm.data.resolve_data_config({{}}, model=model)
tf = timm.data.create_transform(**cfg)
with torch.inference_mode():
    logits = model(torch.stack([tf(Image.open(p).convert("RGB")) for p in {_files(digits_folder)!r}]))
torch.save(logits, {str(out)!r})
print(json.dumps({{"labels": model.pretrained_cfg.get("label_names"), "zoo": "zoo" in __import__("sys").modules}}))
"""
    info = hub_client(hub_rw, code, tmp_path)
    assert info["zoo"] is False
    model = zoo.load(run)
    tf = zoo.transforms(model)
    from zoo.model.images import open_rgb

    with torch.inference_mode():
        expected = model(torch.stack([tf(open_rgb(p)) for p in _files(digits_folder)]))
    assert torch.allclose(torch.load(out, weights_only=True), expected, atol=1e-5)
