"""``zoo evaluate``: accuracy, top-k, per-class precision/recall/F1 and the confusion matrix of a
model on labelled images (a folder, or a run's own validation split)."""

from __future__ import annotations

import argparse

from zoo.cli.console import (ProgressDisplay, add_engine_arguments, apply_threads, console, non_negative_int,
                             positive_int, print_json)

#: the widest confusion matrix printed as a table (more columns: --json or --plot)
MAX_TABLE_COLUMNS = 25


def cmd_evaluate(args: argparse.Namespace) -> int:
    from zoo.api import evaluate, load
    from zoo.transfer.evaluate import plot_confusion
    from zoo.util.plots import check_plot

    if args.plot:
        check_plot(args.plot)  # before any model is loaded
    apply_threads(args.threads)
    model = load(args.name)
    with ProgressDisplay(bars=not args.json) as progress:
        result = evaluate(model, args.data, val=args.val, top=args.top, batch_size=args.batch_size,
                          workers=args.workers, progress=progress, engine=args.engine, threads=args.threads)
    err = console(stderr=True)
    for path, why in result.skipped:
        err.print(f"skipped {path}: {why}", style="yellow")
    if args.plot:
        err.print(f"plot: {plot_confusion(result, args.plot)}")
    if args.json:
        return print_json(result.as_dict())
    _print(result)
    return 0


def _print(result) -> None:
    from rich.table import Table

    out = console()
    on = f" (run on {result.base})" if result.model != result.base else ""
    out.print(f"{result.model}{on} on {result.data}: {len(result.images)} images")
    line = (f"accuracy {result.accuracy:.4f} ({result.correct}/{len(result.images)}), "
            f"top-{result.top} accuracy {result.top_accuracy:.4f}")
    if result.recorded_accuracy is not None:
        line += f"; the run recorded {result.recorded_accuracy:.4f}"
    out.print(line)
    table = Table("class", title="per class")
    for header in ("precision", "recall", "F1", "support"):
        table.add_column(header, justify="right")
    for s in result.per_class():
        table.add_row(s.name, f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}", str(s.support))
    macro = result.macro()
    table.add_row("macro average", f"{macro['precision']:.4f}", f"{macro['recall']:.4f}", f"{macro['f1']:.4f}",
                  str(len(result.images)), style="bold")
    out.print(table)
    if len(result.columns) > MAX_TABLE_COLUMNS:
        out.print(f"confusion matrix: {len(result.classes)} x {len(result.columns)}, too wide for a table "
                  "(see --json or --plot)")
        return
    matrix = Table("true \\ predicted", title="confusion matrix (rows: true class)")
    for name in result.columns:
        matrix.add_column(name, justify="right")
    for name, row in zip(result.classes, result.confusion()):
        matrix.add_row(name, *(str(n) if n else "." for n in row))
    out.print(matrix)


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate",
                       help="accuracy, per-class precision/recall/F1 and the confusion matrix on labelled images")
    p.add_argument("name", metavar="MODEL", help="a run directory, hf://ORG/NAME of a published run, or a model "
                   "name (an ImageNet classifier: class folders named by ImageNet label or WordNet id)")
    p.add_argument("data", metavar="DIR", help="an ImageFolder whose class folders are the model's classes "
                   "(train/ + validation/ inside: both are evaluated)")
    p.add_argument("--val", action="store_true", help="evaluate only the run's own validation split of DIR "
                   "(the data it was trained on), re-created from its card.toml: the accuracy it recorded")
    p.add_argument("--top", type=positive_int, default=5, metavar="K",
                   help="k of the top-k accuracy (at most the class count)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per forward pass")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="image-decoding processes (default: one per core, up to 4; 0: in this process)")
    add_engine_arguments(p)
    p.add_argument("--plot", metavar="FILE.png", help="also write the confusion matrix as a PNG (matplotlib)")
    p.add_argument("--json", action="store_true", help="print JSON (figures, matrix, misclassified and skipped images)")
    p.set_defaults(run=cmd_evaluate)
