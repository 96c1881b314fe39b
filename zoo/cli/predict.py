"""``zoo predict`` (top-k classes per image, and the accuracy on a labelled tree) and ``zoo extract``
(bottleneck features of a folder)."""

from __future__ import annotations

import argparse

from zoo.cli.console import (ProgressDisplay, add_engine_arguments, apply_threads, console, fraction, non_negative_int,
                             positive_int, print_json)


def cmd_predict(args: argparse.Namespace) -> int:
    from zoo.api import load, predict

    apply_threads(args.threads)
    model = load(args.name)
    run = getattr(model, "run", None)
    label = f"{run.name} (run on {model.card.name})" if run else model.card.name
    with ProgressDisplay(bars=not args.json) as progress:
        results = predict(model, args.images, top=args.top, batch_size=args.batch_size, progress=progress,
                          engine=args.engine, threads=args.threads)
    out, err = console(), console(stderr=True)
    for r in results:
        if not r.ok:
            err.print(f"error: {r.image}: {r.error}", style="red")
    good = [r for r in results if r.ok]
    scored = results.accuracy
    if args.json:
        print_json({"model": run.name if run else model.card.name, "base": model.card.name,
                    "results": [r.as_dict() for r in good],
                    "failed": [{"image": r.image, "error": r.error} for r in results if not r.ok],
                    **({"accuracy": scored.as_dict()} if scored else {})})
    else:
        from rich.table import Table

        for r in good:
            truth = f", true class {r.label}" if r.label is not None else ""
            out.print(f"{r.image} ({label}{truth})")  # a line of its own: a table title wraps at the table's width
            table = Table("#", "class", "probability")
            for i, (name, p) in enumerate(r.top, 1):
                table.add_row(str(i), name, f"{p:.4f}")
            out.print(table)
        if scored:
            out.print(f"accuracy {scored.accuracy:.4f} ({scored.correct}/{scored.images} labelled images), "
                      f"top-{scored.top} {scored.top_accuracy:.4f}")
    return 1 if len(good) < len(results) else 0


def cmd_extract(args: argparse.Namespace) -> int:
    from zoo.transfer.feature_files import extract_to_file

    apply_threads(args.threads)
    with ProgressDisplay() as progress:
        done = extract_to_file(args.name, args.data, args.out, batch_size=args.batch_size, workers=args.workers,
                               layer=args.layer, pool=args.pool, input_size=args.input_size,
                               val_split=args.val_split, seed=args.seed, progress=progress, engine=args.engine,
                               threads=args.threads)
    for path, why in done.skipped:
        console(stderr=True).print(f"skipped {path}: {why}", style="yellow")
    if done.path is None:  # under torchrun: every rank extracted its shard; rank 0 wrote
        return 0
    sides = f" ({', '.join(f'{n} {side}' for side, n in done.sides.items())})" if done.sides else ""
    cache = (" (all from the feature cache)" if done.cached else
             f" ({done.from_cache} from the feature cache)" if done.from_cache else "")
    console().print(f"{done.path}: {done.images} images{sides} x {'x'.join(map(str, done.shape))} features, "
                    f"{len(done.classes)} classes{cache}")
    return 0


def _input_size(text: str) -> int | tuple[int, int]:
    """``N`` or ``HxW`` (whether the size is sane is checked by zoo.transfer.features)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or HxW (224, 150x150), got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def add_parsers(sub) -> None:
    p = sub.add_parser("extract", help="bottleneck features of an ImageFolder through a frozen backbone (.h5 or .safetensors)")
    p.add_argument("name", metavar="MODEL", help="a model name (efficientnet_lite0, ResNet50, ...)")
    p.add_argument("--data", required=True, metavar="DIR", help="an ImageFolder: one sub-folder per class")
    p.add_argument("--out", required=True, metavar="FILE", help="FEATURES.h5 or FEATURES.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per forward pass")
    p.add_argument("--layer", default="pooled", metavar="pooled|NAME",
                   help="pooled (the final features: what the classifier sees, default) or a module name (blocks.5)")
    p.add_argument("--pool", choices=("avg", "max", "none"), default="avg",
                   help="global average (default) or max pooling of the layer's feature map, or none: "
                        "each row keeps the (C, H, W) map")
    p.add_argument("--input-size", type=_input_size, default=None, metavar="N|HxW",
                   help="resize to this input (timm's transform at that size; default: the card's)")
    p.add_argument("--val-split", type=fraction, default=None, metavar="F",
                   help="record each row's split, holding out this fraction of each class as finetune does "
                        "(a folder with train/ and validation/ records its own split)")
    p.add_argument("--seed", type=int, default=0, help="seeds --val-split (default 0)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="image-decoding processes (default: one per core, up to 4; 0: in this process)")
    add_engine_arguments(p, "the backbone")
    p.set_defaults(run=cmd_extract)

    p = sub.add_parser("predict", help="classify images with a model (top-k classes and probabilities)")
    p.add_argument("name", metavar="MODEL", help="a model name (efficientnet_lite0, ResNet50, ...), a run directory, "
                   "or hf://ORG/NAME of a published run")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files, or directories whose image files are all classified (sorted, sub-folders "
                   "included); a directory whose class folders are the model's classes also gets its accuracy")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes shown per image")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="images per forward pass")
    p.add_argument("--json", action="store_true",
                   help="print JSON (results, the images that failed, and the accuracy of a labelled tree) instead of tables")
    add_engine_arguments(p)
    p.set_defaults(run=cmd_predict)
