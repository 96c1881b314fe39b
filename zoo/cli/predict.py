"""``zoo predict NAME IMAGE_OR_DIR...``: top-k ImageNet (or head) classes per image, batched."""

from __future__ import annotations

import argparse
import os

from . import console, positive_int, print_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def expand(paths: list[str]) -> list[str]:
    """Files as given; directories contribute their image files, sorted."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


def open_rgb(path: str):
    """The image as RGB, fully decoded (a truncated file fails here, naming itself)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (PIL cannot identify it)") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"unreadable image: {exc}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ..load import decode, load, transforms

    model = load(args.name)
    tf = transforms(model)
    files = expand(args.images)
    if not files:
        from ..errors import UsageError

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
        print_json({"model": model.card.name, "results": results})
    else:
        from rich.table import Table

        for r in results:
            table = Table("#", "class", "probability", title=f"{r['image']} ({model.card.name})", title_justify="left")
            for i, p in enumerate(r["predictions"], 1):
                table.add_row(str(i), p["label"], f"{p['probability']:.4f}")
            out.print(table)
    return 1 if failed else 0


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a model (top-k classes and probabilities)")
    p.add_argument("name", help="model name (efficientnet_lite0, ResNet50, ...)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_predict)
