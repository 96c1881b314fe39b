"""``zoo.finetune``: an ImageFolder and a base model in, a run directory out.

The fast path is the one most transfer-learning runs take: a frozen backbone and no augmentation.
Then the backbone runs once per image (``zoo.features``, cached on disk by content), and every
epoch trains the head on the cached features in milliseconds; a second run with other head
hyper-parameters runs no backbone forward at all. Otherwise (partial or full fine-tuning, or
augmentation) the model trains on images, with the head at a higher learning rate than reused
layers. What to train comes from ``zoo.strategy``; the run directory from ``zoo.runs``.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import timm
import torch

from zoo import __version__
from zoo.cards.card import Card
from zoo.errors import UsageError
from zoo.model import heads
from zoo.model.load import load
from zoo.model.resolve import card_for
from zoo.model.transforms import transforms
from zoo.transfer.datasets import Split, split as split_folder
from zoo.transfer.features import extract, image_loader
from zoo.transfer.model_card import model_card_text
from zoo.transfer.runs import Base, RunCard, changed_tensors, check_out, read_run, write_run
from zoo.transfer.strategy import LARGE_PER_CLASS, Plan, plan as make_plan, similarity
from zoo.transfer.prefix import CachedBatches, cached_prefix, find_cut
from zoo.transfer.train import Best, Epoch, Recipe, balanced_weights, train_head, train_model, trained_state
from zoo.util import distributed
from zoo.util.progress import Progress, Task, message
from zoo.weights.pull import open_weights

#: images whose ImageNet predictions measure similarity when no features are cached
SIMILARITY_SAMPLE = 64


@dataclass
class _Report:
    """Where a run reports: the caller's progress receiver, and the count of images the backbone ran on."""

    progress: Progress | None
    extracted: int = 0
    engine: str | None = None  # of the feature pass
    threads: int | None = None

    def message(self, text: str, data: Any = None) -> None:
        message(self.progress, "train", text, data)

    def task(self, label: str, total: int, unit: str) -> Task:
        return Task(self.progress, "train", label, total, unit)

    def forward(self, n: int) -> None:
        self.extracted += n


@dataclass
class Result:
    run: Path
    card: Any  # zoo.runs.RunCard
    model: Any  # the trained model, eval mode
    plan: Plan
    history: list  # every epoch (both stages of a two-stage run)
    best: Any  # the kept epoch (zoo.transfer.train.Epoch), whose weights the model holds
    features_cached: bool | None  # head on features: whether the feature cache already held them
    seconds: float
    extracted_per_rank: list[int]  # images the backbone ran on, per torchrun rank (one entry: one process)


def finetune(name: str | Card, data: str | os.PathLike, out: str | os.PathLike, *, val_split: float = 0.2,
             val: str | os.PathLike | None = None, strategy: str = "auto", epochs: int = 10,
             freeze: int | None = None, unfreeze: int | None = None, lr: float | None = None,
             backbone_lr: float | None = None, batch_size: int = 32, augment: bool | None = None,
             monitor: str = "val_loss", patience: int | None = None, schedule: str = "constant",
             warmup: float = 0.0, label_smoothing: float = 0.0, class_weight: str | None = None,
             stage2_epochs: int | None = None, seed: int = 0, workers: int | None = None,
             overwrite: bool = False, progress: Progress | None = None, engine: str | None = None,
             threads: int | None = None) -> Result:
    """Fine-tune ``name`` on the ImageFolder ``data`` and write the run directory ``out``.

    See ``zoo finetune --help`` for the options; ``engine`` and ``threads`` run the feature pass
    (zoo/model/engine.py: ONNX Runtime or torch; training itself is torch's). Every strategy keeps the best epoch by
    ``monitor`` (restored at the end; ``patience`` stops early). ``progress`` (zoo.util.progress)
    sees the extraction's task (images), the training's (epochs on features, images otherwise),
    and messages: the data, the strategy chosen and why, and one per epoch whose ``data`` is its
    :class:`~zoo.transfer.train.Epoch`."""
    hooks = _Report(progress, engine=engine, threads=threads)
    t0 = time.perf_counter()
    check_out(out, overwrite)
    if class_weight not in (None, "none", "balanced"):
        raise UsageError(f"--class-weight must be none or balanced, not {class_weight!r}")
    recipe = Recipe(epochs=epochs, schedule=schedule, warmup=warmup, label_smoothing=label_smoothing,
                    monitor=monitor, patience=patience)
    split = split_folder(data, val_split=val_split, val_dir=val, seed=seed)
    classes = split.data.classes
    hooks.message(f"{len(split.train)} training and {len(split.val)} validation images in {len(classes)} classes "
                  f"(validation: {split.how})")
    if class_weight == "balanced":
        recipe = replace(recipe, class_weights=balanced_weights((split.data.labels[i] for i in split.train), len(classes)))
    torch.manual_seed(seed)
    random.seed(seed)
    model = load(card_for(name), head=list(classes))
    base_file = open_weights(model.card)
    imagenet = heads.imagenet_classifier(model, base_file)
    per_class = len(split.train) / len(classes)
    on_features = strategy == "two-stage" or strategy == "head" or (strategy == "auto" and per_class < LARGE_PER_CLASS)
    features, not_measured = None, None if imagenet else "the base has no ImageNet classifier"
    if on_features and freeze is None and (augment is not True or strategy == "two-stage"):
        features = _features(model, split, batch_size, workers, hooks)
        x_train = features.x[features.train]
        sample = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))]
        similar = similarity(sample, *imagenet) if imagenet else None
    elif strategy == "auto" and imagenet:
        similar = _sample_similarity(model, split, imagenet, seed, batch_size, workers, hooks)
    else:
        similar, not_measured = None, not_measured or f"--strategy {strategy} as asked: nothing to decide"
    plan = make_plan(strategy, train_size=len(split.train), num_classes=len(classes),
                     num_blocks=len(heads.blocks(model)) if hasattr(model, "group_matcher") else 0,
                     similar=similar, freeze=freeze, augment=augment, lr=lr, backbone_lr=backbone_lr,
                     unfreeze=unfreeze, not_measured=not_measured)
    hooks.message(f"strategy {plan.strategy}: {plan.reason}")
    notes: dict[str, Any] = {}
    if plan.on_features and features is not None:
        best = _train_on_features(model, features, plan, recipe, batch_size, seed, hooks)
    elif plan.strategy == "two-stage":
        first = _train_on_features(model, features, plan, recipe, batch_size, seed, hooks)
        hooks.message(f"stage 1 kept epoch {first.epoch.epoch} ({recipe.monitor} {_monitored(first.epoch, recipe)}); "
                      f"stage 2 opens the last {plan.open_blocks} blocks at lr {plan.backbone_lr:g}")
        second = replace(recipe, epochs=stage2_epochs or epochs, warmup=0.0)
        best = _train_on_images(model, split, plan, second, batch_size, seed, workers, hooks, notes, prior=first)
    else:
        best = _train_on_images(model, split, plan, recipe, batch_size, seed, workers, hooks, notes)
    if best.restored:
        hooks.message(f"restored the best epoch: {_kept(best)} (the last epoch's {recipe.monitor} was "
                      f"{_monitored(best.history[-1], recipe)})")
    for path, why in split.data.skipped:
        hooks.message(f"skipped {path}: {why}")
    card = _run_card(model, split, plan, recipe, best, out, data, similar, batch_size, seed, notes)

    per_rank = distributed.gather_objects(hooks.extracted)
    if distributed.is_main():  # one run directory, written once
        run = write_run(out, card, changed_tensors(model, base_file), [e.as_dict() for e in best.history],
                        model_card_text(card), overwrite=overwrite)
        card = read_run(run)
    else:
        run = Path(out)
    distributed.barrier()
    return Result(run, card, model, plan, best.history, best.epoch, features.cached if features else None,
                  time.perf_counter() - t0, per_rank)


def _monitored(e: Epoch, recipe: Recipe) -> str:
    return f"{getattr(e, recipe.monitor):.4f}"


def _kept(best: Best) -> str:
    e = best.epoch
    stage = f"stage {e.stage} " if e.stage > 1 or best.history[-1].stage > 1 else ""
    return f"{stage}epoch {e.epoch}, val loss {e.val_loss:.4f}, val accuracy {e.val_accuracy:.4f}"


@dataclass
class _Features:
    x: Any  # (N, D) features of the readable images
    y: Any  # (N,) labels
    train: Any  # row indices of the training images
    val: Any
    cached: bool


def _features(model, split: Split, batch_size, workers, hooks) -> _Features:
    """Features of the readable images of ``split`` (extracted once, cached) and which rows are
    training and validation images."""

    # under torchrun each rank's bar counts its own shard
    fs = extract(model, split.data, batch_size=batch_size, workers=workers, progress=hooks.progress,
                 on_forward=hooks.forward, engine=hooks.engine, threads=hooks.threads)
    x, y = fs.features(), fs.labels()
    train, val = fs.rows(split.train), fs.rows(split.val)
    _check_readable(split, y[train].tolist(), len(val))
    if fs.cached:
        hooks.message(f"features of {len(fs.kept)} images read from the feature cache (no backbone forward)")
    return _Features(x, y, train, val, fs.cached)


def _check_readable(split: Split, train_labels: list[int], val_size: int) -> None:
    """Every class keeps readable training images and validation is not empty, after skipping."""
    counts = [0] * len(split.data.classes)
    for label in train_labels:
        counts[label] += 1
    empty = [c for c, n in zip(split.data.classes, counts) if n == 0]
    if empty:
        raise UsageError(f"class {empty[0]!r} has no readable training images (all skipped as unreadable)")
    if val_size == 0:
        raise UsageError("no readable validation images (all skipped as unreadable)")


def _sample_similarity(model, split: Split, imagenet, seed, batch_size, workers, hooks):

    rng = random.Random(seed)
    sample = sorted(rng.sample(split.train, min(SIMILARITY_SAMPLE, len(split.train))))
    fs = extract(model, split.data.subset(sample), batch_size=batch_size, workers=workers, on_forward=hooks.forward,
                 engine=hooks.engine, threads=hooks.threads)
    return similarity(fs.features(), *imagenet)


def _train_on_features(model, features, plan: Plan, recipe: Recipe, batch_size, seed, hooks) -> Best:

    x, y, train, val = features.x, features.y, features.train, features.val
    head = model.get_classifier()
    with hooks.task("train the head on features", recipe.epochs, "epochs") as task:
        def on_epoch(e):
            hooks.message(e.line(), e)
            task.advance(1)

        best = train_head(head, x[train], y[train], x[val], y[val], recipe=recipe, lr=plan.lr,
                          batch_size=batch_size, seed=seed, on_epoch=on_epoch)
    model.eval()
    return best


def _freeze_for(model, plan: Plan) -> None:
    if plan.strategy == "head":
        heads.freeze(model, "backbone")
    elif plan.strategy in ("partial", "two-stage"):
        if plan.freeze is not None:
            heads.freeze(model, plan.freeze)
        else:
            heads.freeze(model, "backbone")
            heads.unfreeze(model, plan.open_blocks)


def _train_on_images(model, split: Split, plan: Plan, recipe: Recipe, batch_size, seed, workers, hooks,
                     notes: dict, prior: Best | None = None) -> Best:
    """Train on images; without augmentation the frozen prefix runs once (zoo.transfer.prefix) and
    the epochs train the open part from its cached output. ``prior``: stage 1's best (two-stage)."""
    _freeze_for(model, plan)
    head_params = {id(p) for p in model.get_classifier().parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:

        raise UsageError(f"--freeze {plan.freeze} freezes every layer, the head too: nothing would train "
                         f"(the model has {len(heads.param_modules(model))} parameter-owning modules)")
    stage = plan.stages
    head_lr = plan.backbone_lr if stage == 2 else plan.lr
    groups = [{"params": [p for p in trainable if id(p) in head_params], "lr": head_lr},
              {"params": [p for p in trainable if id(p) not in head_params], "lr": plan.backbone_lr}]
    try:
        target, train_loader, val_loader, steps, per_epoch = _loaders(model, split, plan, batch_size, seed, workers,
                                                                      hooks, notes)
        model.to(memory_format=torch.channels_last)
        best = None
        if prior is not None:  # stage 2 must beat stage 1's best, which is the model as it is now
            best = Best(recipe.monitor, recipe.patience, epoch=prior.epoch, state=trained_state(target),
                        history=list(prior.history), stopped=prior.stopped)
        label = f"train ({plan.strategy}{', stage 2' if stage == 2 else ''})"
        with hooks.task(label, recipe.epochs * per_epoch, "images") as task:
            def on_batch(n):
                hooks.forward(n)
                task.advance(n)

            return train_model(target, train_loader, val_loader, recipe=recipe, groups=groups, steps_per_epoch=steps,
                               on_epoch=lambda e: hooks.message(e.line(), e), on_batch=on_batch, stage=stage,
                               best=best)
    finally:
        model.to(memory_format=torch.contiguous_format)  # as zoo.load gives it (and load_run rebuilds it)


def _loaders(model, split: Split, plan: Plan, batch_size, seed, workers, hooks, notes: dict):
    """(module to train, training batches, validation batches, steps per epoch, images per epoch):
    the cached frozen prefix's outputs and the model's open part where it can be cut, images and
    the whole model otherwise."""
    data = split.data
    eval_tf = transforms(model)
    cut, why = (None, "augmentation changes every epoch's inputs") if plan.augment else \
        (None, "torchrun: each rank trains on images") if distributed.active() else \
        find_cut(model, model.data_config["input_size"])
    if cut is not None:
        outputs = cached_prefix(model, cut, data, batch_size=batch_size, workers=workers, progress=hooks.progress,
                                on_forward=hooks.forward)
        train = CachedBatches(outputs, split.train, batch_size, seed)
        valid = CachedBatches(outputs, split.val, batch_size)
        _check_readable(split, train.labels.tolist(), len(valid.rows))
        notes["frozen_prefix"] = f"cached up to {cut.name} ({len(cut.prefix)} modules)"
        hooks.message(f"frozen layers up to {cut.name} ran once{' (read from the feature cache)' if outputs.cached else ''}; "
                      f"every epoch trains the open layers from their cached output")
        return cut.suffix, train, valid, len(train), len(train.rows) + len(valid.rows)
    notes["frozen_prefix"] = f"not cached: {why}"
    train_tf = transforms(model, train=plan.augment)
    mine = len(distributed.shard(len(split.train)))
    train = _EpochShards(lambda indices: image_loader(data, indices, train_tf, batch_size, workers), split.train, seed)
    val_part = [split.val[i] for i in distributed.shard(len(split.val))]
    valid = image_loader(data, val_part, eval_tf, batch_size, workers)
    return model, train, valid, -(-mine // batch_size), mine + len(val_part)


class _EpochShards:
    """Training batches of a new seeded shuffle every epoch; under torchrun, this rank's contiguous
    shard of it (no padding: the ranks' last batches may differ, which DDP's join absorbs)."""

    def __init__(self, make_loader, indices: list[int], seed: int):
        self.make_loader, self.indices, self.seed, self.epoch = make_loader, indices, seed, 0

    def __iter__(self):

        order = random.Random(self.seed * 100_003 + self.epoch).sample(self.indices, len(self.indices))
        self.epoch += 1
        return iter(self.make_loader([order[i] for i in distributed.shard(len(order))]))


def _run_card(model, split: Split, plan: Plan, recipe: Recipe, best: Best, out, data, similar, batch_size, seed,
              notes: dict):

    card = model.card
    kept, last = best.epoch, best.history[-1]
    if last.val_size == 0:

        raise UsageError("no readable validation images (all skipped as unreadable)")
    transform = {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()}
    training = {
        "strategy": plan.strategy, "reason": plan.reason, "epochs": recipe.epochs, "lr": plan.lr,
        "backbone_lr": plan.backbone_lr, "batch_size": batch_size, "augment": plan.augment, "seed": seed,
        "open_blocks": plan.open_blocks, "trained_on": "cached features" if plan.on_features else "images",
        "validation": split.how, "train_size": len(split.train),
        "data_name": Path(data).resolve().name, "optimizer": "AdamW, cross-entropy", **recipe.as_dict(), **notes,
    }
    if plan.stages == 2:
        stage1 = [e for e in best.history if e.stage == 1]
        training.update(trained_on="stage 1: cached features; stage 2: images", stage1_epochs=len(stage1),
                        stage2_epochs=len(best.history) - len(stage1), stage2_lr=plan.backbone_lr)
    if split.fraction is not None:
        training["val_split"] = split.fraction
    if plan.freeze is not None:
        training["freeze"] = plan.freeze
    if similar is not None:
        training["imagenet_mean_top1"] = round(similar.mean_top1, 4)
        training["imagenet_top_share"] = round(similar.top_share, 4)
    # the figures of the model the run holds (the best epoch's), then the last epoch's beside them
    metrics = {"val_accuracy": kept.val_accuracy, "val_loss": kept.val_loss, "train_accuracy": kept.train_accuracy,
               "train_loss": kept.train_loss, "val_size": kept.val_size, "train_size": kept.train_size,
               "epochs": len(best.history), "monitor": recipe.monitor, "best_epoch": kept.epoch,
               "best_stage": kept.stage, "last_epoch": last.epoch, "last_stage": last.stage,
               "last_val_accuracy": last.val_accuracy, "last_val_loss": last.val_loss,
               "stopped_early": best.stopped}
    return RunCard(
        name=Path(out).resolve().name,
        base=Base(name=card.name, architecture=card.architecture, weights_sha256=model.weights_sha256,
                  num_features=model.num_features, license=card.license, hub_repo=card.hub_repo),
        classes=tuple(split.data.classes), pool="avg", transform=transform, training=training, metrics=metrics,
        versions={"zoo": __version__, "timm": timm.__version__, "torch": torch.__version__}, files={})
