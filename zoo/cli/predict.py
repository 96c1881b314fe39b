"""``zoo predict`` (top-k classes per image) and ``zoo extract`` (bottleneck features of a folder)."""

from __future__ import annotations

import argparse

from zoo.cli.console import ProgressDisplay, console, non_negative_int, positive_int, print_json


def cmd_predict(args: argparse.Namespace) -> int:
    from zoo.api import load, predict

    model = load(args.name)
    run = getattr(model, "run", None)
    label = f"{run.name} (run on {model.card.name})" if run else model.card.name
    with ProgressDisplay(bars=not args.json) as progress:
        results = predict(model, args.images, top=args.top, batch_size=args.batch_size, progress=progress)
    out, err = console(), console(stderr=True)
    for r in results:
        if not r.ok:
            err.print(f"error: {r.image}: {r.error}", style="red")
    good = [r for r in results if r.ok]
    if args.json:
        print_json({"model": run.name if run else model.card.name, "base": model.card.name,
                    "results": [r.as_dict() for r in good],
                    "failed": [{"image": r.image, "error": r.error} for r in results if not r.ok]})
    else:
        from rich.table import Table

        for r in good:
            out.print(f"{r.image} ({label})")  # a line of its own: a table title wraps at the table's width
            table = Table("#", "class", "probability")
            for i, (name, p) in enumerate(r.top, 1):
                table.add_row(str(i), name, f"{p:.4f}")
            out.print(table)
    return 1 if len(good) < len(results) else 0


def cmd_extract(args: argparse.Namespace) -> int:
    from zoo.transfer.features import extract_to_file

    with ProgressDisplay() as progress:
        done = extract_to_file(args.name, args.data, args.out, batch_size=args.batch_size, workers=args.workers,
                               layer=args.layer, progress=progress)
    for path, why in done.skipped:
        console(stderr=True).print(f"skipped {path}: {why}", style="yellow")
    if done.path is None:  # under torchrun: every rank extracted its shard; rank 0 wrote
        return 0
    console().print(f"{done.path}: {done.images} images x {done.num_features} features, "
                    f"{len(done.classes)} classes{' (from the feature cache)' if done.cached else ''}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("extract", help="bottleneck features of an ImageFolder through a frozen backbone (.h5 or .safetensors)")
    p.add_argument("name", metavar="MODEL", help="a model name (efficientnet_lite0, ResNet50, ...)")
    p.add_argument("--data", required=True, metavar="DIR", help="an ImageFolder: one sub-folder per class")
    p.add_argument("--out", required=True, metavar="FILE", help="FEATURES.h5 or FEATURES.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per forward pass")
    p.add_argument("--layer", default="pooled", metavar="pooled|NAME",
                   help="pooled (what the classifier sees, default) or a module name (blocks.5), average-pooled")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="image-decoding processes (default: one per core, up to 4; 0: in this process)")
    p.set_defaults(run=cmd_extract)

    p = sub.add_parser("predict", help="classify images with a model (top-k classes and probabilities)")
    p.add_argument("name", metavar="MODEL", help="a model name (efficientnet_lite0, ResNet50, ...), a run directory, "
                   "or hf://ORG/NAME of a published run")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files, or directories whose image files are all classified (sorted)")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes shown per image")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="images per forward pass")
    p.add_argument("--json", action="store_true", help="print JSON (results, and the images that failed) instead of tables")
    p.set_defaults(run=cmd_predict)
