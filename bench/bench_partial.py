#!/usr/bin/env python
"""Partial fine-tuning with the frozen prefix computed once, against a plain loop, same run.

    .venv/bin/python bench/bench_partial.py [--images 200] [--epochs 10]

Data: sklearn's digits, ``--images`` of them (balanced), upsampled to 64x64 PNGs (lite0 resizes
them to 224); model: the bundled efficientnet_lite0; batch size 32; no augmentation.

- ours: ``zoo.finetune(strategy="partial", augment=False)`` with an empty feature cache: model
  load, hashing, the frozen prefix over every image once, then each epoch trains the open blocks
  and the head from the prefix's cached output, validation included; the run directory written.
- baseline: the loop a tutorial writes for the same run: the same model with the same layers
  frozen (zoo.model.heads), torchvision ``ImageFolder`` + ``DataLoader`` with the same transform
  and workers, AdamW with the same two parameter groups, and the whole model (frozen part included,
  channels_last) every epoch over the training and validation images.

Reported for the default cut (the top quarter of the blocks open: on lite0, the last two of eight)
and with only the last block open. Target: ratio <= 0.7 with the top quarter open.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_finetune import make_digits, plain_loaders  # noqa: E402


def plain_loop(root: Path, epochs: int, batch_size: int, workers: int, open_blocks: int, lr: float) -> float:
    import torch

    import zoo
    from zoo.model import heads

    t0 = time.perf_counter()
    model = zoo.load("efficientnet_lite0", head=10)
    heads.freeze(model, "backbone")
    heads.unfreeze(model, open_blocks)
    model.to(memory_format=torch.channels_last)
    train, val = plain_loaders(root, model, batch_size, workers)
    head = {id(p) for p in model.get_classifier().parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if id(p) in head], "lr": lr},
                             {"params": [p for p in params if id(p) not in head], "lr": lr / 10}], weight_decay=1e-4)
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            for x, _ in val:
                model(x.contiguous(memory_format=torch.channels_last))
    return time.perf_counter() - t0


def ours(root: Path, out: Path, epochs: int, batch_size: int, workers: int, unfreeze: int | None):
    from zoo.transfer.finetune import finetune

    t0 = time.perf_counter()
    result = finetune("efficientnet_lite0", root, out, strategy="partial", augment=False, epochs=epochs,
                      batch_size=batch_size, workers=workers, unfreeze=unfreeze)
    return time.perf_counter() - t0, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.update(ZOO_OFFLINE="1")
        from zoo.transfer.features import default_workers

        workers = default_workers()
        root = make_digits(tmp / "digits", args.images)
        n = sum(1 for _ in root.glob("*/*.png"))
        print(f"{n} images, {args.epochs} epochs, batch {args.batch_size}, {workers} DataLoader workers, "
              f"{os.cpu_count()} cores, no augmentation")
        for label, unfreeze in (("top quarter open (default)", None), ("last block open", 1)):
            os.environ["ZOO_HOME"] = str(tmp / f"home-{unfreeze}")  # an empty feature cache: the prefix runs
            t_ours, result = ours(root, tmp / f"run-{unfreeze}", args.epochs, args.batch_size, workers, unfreeze)
            assert result.card.training["frozen_prefix"].startswith("cached up to"), result.card.training
            t_base = plain_loop(root, args.epochs, args.batch_size, workers, result.plan.open_blocks, result.plan.lr)
            ratios[label] = t_ours / t_base
            print(f"partial, {label}: {result.plan.open_blocks} of 8 blocks open, prefix "
                  f"{result.card.training['frozen_prefix']}: ours {t_ours:.1f} s, plain loop {t_base:.1f} s, "
                  f"ratio {ratios[label]:.3f}" + (" (target <= 0.7)" if unfreeze is None else " (reported)")
                  + f"; kept epoch {result.best.epoch}, val accuracy {result.best.val_accuracy:.3f}")
    return 0 if ratios["top quarter open (default)"] <= 0.7 else 1


if __name__ == "__main__":
    raise SystemExit(main())
