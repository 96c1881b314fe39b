"""zoo finetune (zoo/transfer/finetune.py) on real data: sklearn's digits through the bundled lite0."""

import json
import shutil

import pytest
import torch

import zoo
from zoo.transfer.finetune import finetune
from zoo.model.images import open_rgb
from zoo.transfer.runs import read_run

from conftest import digits_subset, run_zoo


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")


def _logits(model, files):
    tf = zoo.transforms(model)
    with torch.inference_mode():
        return model(torch.stack([tf(open_rgb(str(p))) for p in files]))


@pytest.mark.slow  # lite0 over all 1797 digits (about a minute); small_run is the quick loop's run
def test_head_strategy_on_digits_reaches_090_and_writes_a_small_run(digits_run):
    run, result = digits_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.90 and metrics["val_size"] == 359
    assert len(metrics["history"]) == 30
    assert sorted(p.name for p in run.iterdir()) == ["README.md", "card.toml", "head.safetensors", "metrics.json"]
    assert (run / "head.safetensors").stat().st_size < 100_000
    from safetensors import safe_open

    with safe_open(str(run / "head.safetensors"), "pt") as f:  # only the new head: nothing of the backbone
        assert sorted(f.keys()) == ["classifier.bias", "classifier.weight"]
        assert json.loads(f.metadata()["classes"]) == [str(i) for i in range(10)]
    card = read_run(run)
    assert card.base.name == "tf_efficientnet_lite0.bundled_in1k" and card.base.num_features == 1280
    assert card.base.weights_sha256 == zoo.card("efficientnet_lite0").sha256
    assert card.training["strategy"] == "head" and card.training["trained_on"] == "cached features"
    assert card.metrics["val_accuracy"] == metrics["val_accuracy"] and card.versions["torch"] == torch.__version__
    from huggingface_hub import ModelCard

    readme = ModelCard.load(run / "README.md")
    assert readme.data.base_model == "timm/tf_efficientnet_lite0.in1k" and readme.data.license == "apache-2.0"
    assert readme.data.library_name == "zoo" and "image-classification" in readme.data.tags
    assert readme.data.eval_results[0].metric_value == metrics["val_accuracy"]
    # the choice is printed with its reasons (the size and the measured similarity), then every epoch
    log = result.stderr
    assert "strategy head" in log and "144 per class" in log and "ImageNet head: mean top-1 probability" in log
    assert "epoch  30:" in log and "val accuracy" in result.stdout
    # what stays on the screen reads in the order it happened: each finished bar became one summary
    # line where it ended, so nothing of a bar comes after the epoch lines it preceded
    lines = log.splitlines()
    extract = next(i for i, l in enumerate(lines) if l.startswith("extract tf_efficientnet_lite0") and " images in " in l)
    strategy = next(i for i, l in enumerate(lines) if l.startswith("strategy head"))
    epochs = [i for i, l in enumerate(lines) if l.startswith("epoch ")]
    trained = next(i for i, l in enumerate(lines) if l.startswith("train the head on features: 30 epochs in"))
    assert extract < strategy < epochs[0] and epochs == list(range(epochs[0], epochs[0] + 30)) and trained == epochs[-1] + 1
    # then, when an earlier epoch was better than the last, the line saying it was restored
    assert all(l.startswith("restored the best epoch: epoch ") for l in lines[trained + 1:]) and len(lines) <= trained + 2


def test_second_run_reuses_features_and_its_model_is_what_load_rebuilds(small_run, small_digits, small_home,
                                                                        monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_HOME", str(small_home))
    convs = []
    # every Conv2d call in the process, whatever code path would make it
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: convs.append(1) if isinstance(m, torch.nn.Conv2d) else None)
    try:
        result = finetune("efficientnet_lite0", small_digits, tmp_path / "run2", strategy="head", lr=3e-3,
                          epochs=5)
    finally:
        hook.remove()
    assert convs == [] and result.extracted_per_rank == [0] and result.features_cached is True  # no backbone forward at all
    assert read_run(result.run).training["lr"] == 3e-3
    files = sorted(small_digits.glob("*/*.png"))[::20]
    rebuilt = zoo.load(result.run)
    assert rebuilt.class_names == [str(i) for i in range(10)] and rebuilt.run.name == "run2"
    assert torch.equal(_logits(result.model, files), _logits(rebuilt, files))


def test_partial_strategy_stores_unfrozen_blocks_and_reloads(digits_folder, tmp_path):
    data = digits_subset(digits_folder, tmp_path / "two", 10, ("3", "8"))
    result = finetune("efficientnet_lite0", data, tmp_path / "run", strategy="partial", epochs=1, batch_size=8,
                      workers=0)
    assert result.plan.strategy == "partial" and result.plan.open_blocks == 2 and result.plan.augment
    assert result.plan.backbone_lr == pytest.approx(result.plan.lr / 10)
    from safetensors import safe_open

    with safe_open(str(result.run / "head.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "classifier.weight" in keys and any(k.startswith("blocks.6.") for k in keys)
    assert any(k.endswith("running_mean") for k in keys)  # opened BN layers trained their statistics too
    assert not any(k.startswith(("conv_stem", "blocks.0.", "blocks.4.")) for k in keys)  # frozen: not stored
    files = sorted(data.glob("*/*.png"))[:4]
    assert torch.equal(_logits(result.model, files), _logits(zoo.load(result.run), files))


@pytest.mark.slow  # five CLI runs (~14 s); test_existing_run_is_not_overwritten_without_asking stays quick
def test_bad_folders_fail_clearly(tmp_path, digits_folder):
    (tmp_path / "one" / "a").mkdir(parents=True)
    shutil.copy(next((digits_folder / "0").iterdir()), tmp_path / "one" / "a" / "x.png")
    r = run_zoo("finetune", "efficientnet_lite0", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "at least 2 class folders" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "one" / "b").mkdir()
    r = run_zoo("finetune", "efficientnet_lite0", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "holds no images" in r.stderr and str(tmp_path / "one" / "b") in r.stderr
    r = run_zoo("finetune", "efficientnet_lite0", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                "--val-split", "1.5")
    assert r.returncode == 2 and "between 0 and 1" in r.stderr
    assert not (tmp_path / "r").exists()
    # a folder of images none of which decodes: named, not a traceback, and nothing cached or written
    for c in ("a", "b"):
        (tmp_path / "bad" / c).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "bad" / c / f"{i}.png").write_bytes(b"not a png")
    r = run_zoo("finetune", "efficientnet_lite0", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "r"),
                "--workers", "0")
    assert r.returncode == 2 and "none of the 10 images" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()
    # --out pointing at a directory that is not a run is refused before any work, even with --overwrite
    r = run_zoo("finetune", "efficientnet_lite0", "--data", str(digits_folder), "--out", str(tmp_path / "one"),
                "--overwrite")
    assert r.returncode == 2 and "does not hold a run" in r.stderr and (tmp_path / "one" / "a" / "x.png").exists()


def test_existing_run_is_not_overwritten_without_asking(small_run, digits_folder, tmp_path):
    run, _ = small_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    r = run_zoo("finetune", "efficientnet_lite0", "--data", str(digits_folder), "--out", str(copy))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert read_run(copy).files == read_run(run).files
