"""Training that keeps its best (zoo/transfer/train.py), two-stage runs, and the frozen prefix
computed once (zoo/transfer/prefix.py): on real digits through the bundled lite0."""

import json
import math

import pytest
import torch

import zoo
from zoo.model import heads
from zoo.model.images import open_rgb
from zoo.transfer.finetune import finetune
from zoo.transfer.prefix import find_cut
from zoo.transfer.runs import read_run
from zoo.transfer.train import Recipe, balanced_weights

from conftest import digits_subset


@pytest.fixture(autouse=True)
def offline(monkeypatch, small_home):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_HOME", str(small_home))  # lite0's features of small_digits are cached there


def _val_loss_of(model, run, data):
    """The kept model's validation loss, recomputed on the run's validation images."""
    from zoo.transfer.datasets import split

    s = split(data, val_split=0.2, seed=0)
    tf = zoo.transforms(model)
    x = torch.stack([tf(open_rgb(str(s.data.files[i]))) for i in s.val])
    y = torch.tensor([s.data.labels[i] for i in s.val])
    with torch.inference_mode():
        return torch.nn.functional.cross_entropy(model(x), y).item()


def test_the_best_epoch_is_kept_when_validation_loss_rises_after_it(small_run, small_digits, tmp_path):
    # a high rate overfits 160 training images: the validation loss bottoms out, then rises
    result = finetune("efficientnet_lite0", small_digits, tmp_path / "run", strategy="head", lr=0.05, epochs=20)
    losses = [e.val_loss for e in result.history]
    k = losses.index(min(losses)) + 1
    assert k < len(losses) and losses[-1] > losses[k - 1]  # the data do what the test needs
    card = read_run(result.run)
    m = card.metrics
    assert m["best_epoch"] == k and m["last_epoch"] == 20 and m["epochs"] == 20 and m["monitor"] == "val_loss"
    assert m["val_loss"] == pytest.approx(losses[k - 1]) and m["last_val_loss"] == pytest.approx(losses[-1])
    assert m["val_accuracy"] == result.history[k - 1].val_accuracy and m["stopped_early"] is False
    history = json.loads((result.run / "metrics.json").read_text())["history"]
    assert len(history) == 20 and [h["improved"] for h in history].count(True) >= 1 and history[k - 1]["improved"]
    # the weights are the best epoch's: the reloaded model scores that epoch's loss, not the last one's
    reloaded = zoo.load(result.run)
    assert _val_loss_of(reloaded, result.run, small_digits) == pytest.approx(losses[k - 1], rel=1e-4)


def test_val_accuracy_monitor_and_patience_stop_early(small_run, small_digits, tmp_path):
    result = finetune("efficientnet_lite0", small_digits, tmp_path / "run", strategy="head", lr=0.05, epochs=40,
                      monitor="val_accuracy", patience=3)
    accs = [e.val_accuracy for e in result.history]
    m = read_run(result.run).metrics
    best = accs.index(max(accs)) + 1  # the first epoch reaching the maximum (strict improvement)
    assert m["best_epoch"] == best and m["val_accuracy"] == max(accs)
    assert len(accs) == best + 3 < 40 and m["stopped_early"] is True
    assert all(a <= max(accs) for a in accs[best:])


def test_schedules_warm_up_and_decay_per_batch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = Recipe(epochs=4, schedule="cosine", warmup=1).scheduler(opt, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warm-up over the first epoch
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then a half cosine, never rising
    with pytest.raises(zoo.UsageError, match="schedule must be one of"):
        Recipe(epochs=2, schedule="step")
    with pytest.raises(zoo.UsageError, match="shorter than"):
        Recipe(epochs=2, warmup=2)


def test_balanced_class_weights_are_scikit_learns():
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 30 + [1] * 6 + [2] * 4
    ours = balanced_weights(labels, 3)
    assert ours == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels)).tolist())


def test_imbalanced_folder_with_class_weights_smoothing_and_cosine(digits_folder, tmp_path):
    data = digits_subset(digits_folder, tmp_path / "data", 25, ("1", "7"))
    for p in sorted((data / "7").iterdir())[10:]:  # 25 ones against 10 sevens
        p.unlink()
    result = finetune("efficientnet_lite0", data, tmp_path / "run", strategy="head", epochs=6, schedule="cosine",
                      label_smoothing=0.1, class_weight="balanced")
    t = read_run(result.run).training
    assert t["schedule"] == "cosine" and t["label_smoothing"] == 0.1
    assert t["class_weights"] == pytest.approx([28 / (2 * 20), 28 / (2 * 8)])  # training split: 20 ones, 8 sevens
    assert result.history[-1].lr < 0.1 * t["lr"]  # decayed to nearly 0 by the last epoch
    with pytest.raises(zoo.UsageError, match="class-weight must be"):
        finetune("efficientnet_lite0", data, tmp_path / "r2", class_weight="inverse")


def test_the_reason_of_an_explicit_strategy_says_what_was_and_was_not_measured(small_run, small_digits, tmp_path):
    head = finetune("efficientnet_lite0", small_digits, tmp_path / "h", strategy="head", epochs=1)
    assert "ImageNet head: mean top-1 probability" in head.plan.reason and "no ImageNet classifier" not in head.plan.reason
    partial = finetune("efficientnet_lite0", digits_subset(small_digits, tmp_path / "two", 4, ("3", "8")),
                       tmp_path / "p", strategy="partial", epochs=1, augment=False, batch_size=8, workers=0)
    assert "not measured (--strategy partial as asked" in partial.plan.reason
    assert "no ImageNet classifier" not in partial.plan.reason and "assumed similar" not in partial.plan.reason


def test_the_cut_reproduces_the_model_on_real_images(small_digits):
    model = zoo.load("efficientnet_lite0", head=10)
    heads.freeze(model, "backbone")
    heads.unfreeze(model, 2)
    cut, why = find_cut(model, model.data_config["input_size"])
    assert why == "" and cut.name == "blocks.4.2"  # blocks 5 and 6 open: the prefix ends with stage 4
    tf = zoo.transforms(model)
    x = torch.stack([tf(open_rgb(str(p))) for p in sorted(small_digits.glob("*/*.png"))[::25]])
    with torch.inference_mode():
        h = x
        for _, module in cut.prefix:
            h = module(h)
        assert torch.allclose(cut.suffix(h), model(x), atol=1e-4)
    cut.suffix.train()  # the model's own flag follows (a forward_head reading self.training: timm's dropout)
    assert model.training and cut.suffix.head[0].training
    cut.suffix.eval()
    assert not model.training
    heads.freeze(model, None)
    assert find_cut(torch.nn.Linear(2, 2), (3, 8, 8))[0] is None


def _stem_batches():
    """Sizes of the batches every stem (the only convolution taking 3 channels) runs, in this process."""
    sizes = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: sizes.append(len(i[0])) if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3 else None)
    return sizes, hook


def test_partial_without_augmentation_runs_the_frozen_prefix_once(digits_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    data = digits_subset(digits_folder, tmp_path / "two", 12, ("3", "8"))
    sizes, hook = _stem_batches()
    try:
        result = finetune("efficientnet_lite0", data, tmp_path / "run", strategy="partial", epochs=3, augment=False,
                          batch_size=8, workers=0)
        first = list(sizes)
        sizes.clear()
        # a second run (another rate) reads the prefix's outputs from the feature cache
        again = finetune("efficientnet_lite0", data, tmp_path / "run2", strategy="partial", epochs=2, augment=False,
                         batch_size=8, workers=0, lr=3e-4)
    finally:
        hook.remove()
    assert read_run(result.run).training["frozen_prefix"].startswith("cached up to blocks.4")
    # the cut's check (a 2-image probe through the model and through the chain), then every image
    # through the frozen part once: not once per epoch
    assert first == [2, 2, 8, 8, 8]
    assert sizes == [2, 2] and read_run(again.run).training["frozen_prefix"].startswith("cached up to")
    files = sorted(data.glob("*/*.png"))[:4]
    tf = zoo.transforms(again.model)
    x = torch.stack([tf(open_rgb(str(p))) for p in files])
    with torch.inference_mode():  # the run holds the trained open blocks: the reload agrees
        assert torch.allclose(again.model(x), zoo.load(again.run)(x), atol=1e-5)


def test_two_stage_trains_the_head_then_opens_blocks_and_records_both(small_run, small_digits, tmp_path):
    data = digits_subset(small_digits, tmp_path / "two", 10, ("3", "8", "5"))
    result = finetune("efficientnet_lite0", data, tmp_path / "run", strategy="two-stage", epochs=3, stage2_epochs=2,
                      unfreeze=1, batch_size=8, workers=0)
    assert [e.stage for e in result.history] == [1, 1, 1, 2, 2]
    assert result.plan.open_blocks == 1 and result.plan.lr == 1e-2 and result.plan.backbone_lr == 1e-4
    card = read_run(result.run)
    t, m = card.training, card.metrics
    assert t["strategy"] == "two-stage" and t["stage1_epochs"] == 3 and t["stage2_epochs"] == 2
    assert t["stage2_lr"] == 1e-4 and t["frozen_prefix"].startswith("cached up to blocks.5")
    kept = min(result.history, key=lambda e: e.val_loss)
    assert (m["best_stage"], m["best_epoch"]) == (kept.stage, kept.epoch) and m["val_loss"] == pytest.approx(kept.val_loss)
    history = json.loads((result.run / "metrics.json").read_text())["history"]
    assert [h["stage"] for h in history] == [1, 1, 1, 2, 2]
    from safetensors import safe_open

    with safe_open(str(result.run / "head.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "classifier.weight" in keys
    # blocks.6 is stored when stage 2 was kept; when stage 1 was, only the head changed
    assert any(k.startswith("blocks.6.") for k in keys) == (kept.stage == 2)
    assert not any(k.startswith("blocks.5.") for k in keys)
    with pytest.raises(zoo.UsageError, match="--unfreeze"):
        finetune("efficientnet_lite0", data, tmp_path / "r3", strategy="two-stage", freeze=10)
