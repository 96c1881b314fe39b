"""``zoo predict`` (top-k classes per image) and ``zoo extract`` (bottleneck features of a folder)."""

from __future__ import annotations

import argparse
import os

from zoo.cli.console import console, non_negative_int, positive_int, print_json, progress_bars
from zoo.errors import UsageError
from zoo.model.images import IMAGE_EXTENSIONS, open_rgb
from zoo.util import distributed

def expand(paths: list[str]) -> list[str]:
    """Files as given; directories contribute their image files, sorted."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from zoo.api import load
    from zoo.model.decode import decode
    from zoo.model.transforms import transforms

    model = load(args.name)
    run = getattr(model, "run", None)
    label = f"{run.name} (run on {model.card.name})" if run else model.card.name
    tf = transforms(model)
    files = expand(args.images)
    if not files:
        raise UsageError("no images given (files or directories of .jpg/.png/...)")
    out, err = console(), console(stderr=True)
    results, failed = [], 0
    for start in range(0, len(files), args.batch_size):
        batch, names = [], []
        for path in files[start:start + args.batch_size]:
            try:
                batch.append(tf(open_rgb(path)))
                names.append(path)
            except ValueError as exc:
                err.print(f"error: {path}: {exc}", style="red")
                failed += 1
        if not batch:
            continue
        with torch.inference_mode():
            logits = model(torch.stack(batch))
        for path, top in zip(names, decode(logits, top=args.top, model=model)):
            results.append({"image": path, "predictions": [{"label": l, "probability": p} for l, p in top]})
    if args.json:
        print_json({"model": run.name if run else model.card.name, "base": model.card.name, "results": results})
    else:
        from rich.table import Table

        for r in results:
            out.print(f"{r['image']} ({label})")  # a line of its own: a table title wraps at the table's width
            table = Table("#", "class", "probability")
            for i, p in enumerate(r["predictions"], 1):
                table.add_row(str(i), p["label"], f"{p['probability']:.4f}")
            out.print(table)
    return 1 if failed else 0


def cmd_extract(args: argparse.Namespace) -> int:
    from zoo.model.load import load
    from zoo.model.transforms import transforms
    from zoo.transfer.datasets import all_images
    from zoo.transfer.features import check_output, extract, write_features

    check_output(args.out)
    data = all_images(args.data)
    model = load(args.name, head=0)
    bar, start = progress_bars()
    with bar:
        features = extract(model, data, batch_size=args.batch_size, workers=args.workers,
                           progress=start("extract", len(data.files)), layer=args.layer)
    for path, why in data.skipped:
        console(stderr=True).print(f"skipped {path}: {why}", style="yellow")
    meta = {"model": model.card.name, "weights_sha256": model.weights_sha256, "layer": args.layer,
            "transform": repr(transforms(model))}
    if not distributed.is_main():  # under torchrun: every rank extracted its shard; rank 0 writes
        return 0
    out = write_features(args.out, features, data, meta)
    console().print(f"{out}: {len(features.kept)} images x {features.num_features} features, "
                    f"{len(data.classes)} classes{' (from the feature cache)' if features.cached else ''}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("extract", help="bottleneck features of an ImageFolder through a frozen backbone (.h5 or .safetensors)")
    p.add_argument("name", help="model name")
    p.add_argument("--data", required=True, metavar="DIR", help="an ImageFolder: one sub-folder per class")
    p.add_argument("--out", required=True, metavar="FILE", help="FEATURES.h5 or FEATURES.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--layer", default="pooled", metavar="pooled|NAME",
                   help="pooled (what the classifier sees, default) or a module name (blocks.5), average-pooled")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="image-decoding processes (default: one per core, up to 4; 0: in this process)")
    p.set_defaults(run=cmd_extract)

    p = sub.add_parser("predict", help="classify images with a model (top-k classes and probabilities)")
    p.add_argument("name", help="model name (efficientnet_lite0, ResNet50, ...), a run directory, or hf://ORG/NAME of a published run")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_predict)
