#!/usr/bin/env python
"""``zoo finetune`` (head strategy) and ``zoo extract`` against plain PyTorch loops, same run.

    .venv/bin/python bench/bench_finetune.py [--images 500] [--epochs 10]

Data: sklearn's digits, ``--images`` of them (balanced), upsampled to 64x64 PNGs in an
ImageFolder; model: the bundled efficientnet_lite0; batch size 32; the same DataLoader workers.

1. Fine-tuning, 10 epochs, 20% held out:
   - ours cold: ``zoo.finetune`` with an empty feature cache (model load, hashing, one
     extraction over all images, head training on features, run directory written);
   - ours warm: the same with another learning rate (features from the cache);
   - baseline: a plain loop, torchvision ``ImageFolder`` + ``DataLoader``, that runs the frozen
     backbone (inference_mode, channels_last) every epoch over the training and validation images
     and trains the same linear head.
   Targets: cold / baseline <= 0.15; warm reported.
2. Extraction throughput (images/s), best of 2 alternating runs: ``zoo.features.extract`` (cold
   cache) against torchvision ``ImageFolder`` + ``DataLoader`` with the same transform, workers and
   batch size, forward under inference_mode in channels_last. Target >= 0.95.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_digits(root: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    per_class = n // 10
    counts = [0] * 10
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        if counts[label] >= per_class:
            continue
        counts[label] += 1
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize((64, 64), Image.BICUBIC).save(root / str(label) / f"{i:04d}.png")
    return root


def plain_loaders(root: Path, model, batch_size: int, workers: int):
    """What a tutorial writes: torchvision ImageFolder + DataLoader, over the same training and
    validation images as zoo's run (both sort the files), shuffled training batches."""
    import torch
    from torchvision.datasets import ImageFolder

    import zoo
    from zoo.transfer.datasets import split

    dataset = ImageFolder(str(root), transform=zoo.transforms(model))
    s = split(root, 0.2, seed=0)
    train = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, s.train), batch_size=batch_size,
                                        shuffle=True, num_workers=workers)
    val = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, s.val), batch_size=batch_size, num_workers=workers)
    return train, val


def plain_loop(root: Path, epochs: int, batch_size: int, workers: int, lr: float) -> float:
    """What a tutorial writes: the frozen backbone runs every epoch."""
    import torch

    import zoo

    t0 = time.perf_counter()
    model = zoo.load("efficientnet_lite0", head=10).eval().to(memory_format=torch.channels_last)
    train, val = plain_loaders(root, model, batch_size, workers)
    head = model.get_classifier()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        for x, y in train:
            with torch.inference_mode():
                f = model.forward_head(model.forward_features(x.contiguous(memory_format=torch.channels_last)), pre_logits=True)
            loss = torch.nn.functional.cross_entropy(head(f.clone()), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.inference_mode():
            for x, y in val:
                model(x.contiguous(memory_format=torch.channels_last))
    return time.perf_counter() - t0


def plain_extract(root: Path, batch_size: int, workers: int) -> float:
    import torch
    from torchvision.datasets import ImageFolder

    import zoo

    model = zoo.load("efficientnet_lite0", head=0).eval().to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(ImageFolder(str(root), transform=zoo.transforms(model)),
                                         batch_size=batch_size, num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for x, _ in loader:
            model(x.contiguous(memory_format=torch.channels_last))
            n += len(x)
    return n / (time.perf_counter() - t0)


def zoo_extract(root: Path, batch_size: int, workers: int, cache: Path) -> float:
    import zoo
    from zoo.transfer.datasets import scan
    from zoo.transfer.features import extract

    model = zoo.load("efficientnet_lite0", head=0)
    data = scan(root)
    t0 = time.perf_counter()
    extract(model, data, batch_size=batch_size, workers=workers, cache_dir=cache)
    return len(data.files) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.update(ZOO_HOME=str(tmp / "home"), ZOO_OFFLINE="1")
        from zoo.transfer.features import default_workers
        from zoo.transfer.finetune import finetune

        workers = default_workers()
        root = make_digits(tmp / "digits", args.images)
        n = sum(1 for _ in root.glob("*/*.png"))
        print(f"{n} images, {args.epochs} epochs, batch {args.batch_size}, {workers} DataLoader workers, "
              f"{os.cpu_count()} cores")
        plain_extract(root, args.batch_size, workers)  # warm-up: page cache, imports, allocator

        t0 = time.perf_counter()
        cold = finetune("efficientnet_lite0", root, tmp / "run1", epochs=args.epochs, batch_size=args.batch_size,
                        strategy="head", workers=workers)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = finetune("efficientnet_lite0", root, tmp / "run2", epochs=args.epochs, batch_size=args.batch_size,
                        strategy="head", lr=3e-3, workers=workers)
        t_warm = time.perf_counter() - t0
        assert warm.features_cached and not cold.features_cached
        t_base = plain_loop(root, args.epochs, args.batch_size, workers, lr=cold.plan.lr)
        r_cold, r_warm = t_cold / t_base, t_warm / t_base
        print(f"finetune {args.epochs} epochs, cold feature cache: ours {t_cold:.1f} s, plain loop {t_base:.1f} s, "
              f"ratio {r_cold:.3f} (target <= 0.15); val accuracy {cold.card.metrics['val_accuracy']:.3f}")
        print(f"finetune {args.epochs} epochs, warm feature cache: ours {t_warm:.2f} s, plain loop {t_base:.1f} s, "
              f"ratio {r_warm:.3f} (reported)")

        ours, base = [], []
        for i in range(2):
            base.append(plain_extract(root, args.batch_size, workers))
            ours.append(zoo_extract(root, args.batch_size, workers, tmp / f"cache{i}"))
        r_ext = max(ours) / max(base)
        print(f"extraction throughput: ours {max(ours):.1f} images/s, torchvision ImageFolder + DataLoader "
              f"{max(base):.1f} images/s, ratio {r_ext:.2f} (target >= 0.95)")
    return 0 if r_cold <= 0.15 and r_ext >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
