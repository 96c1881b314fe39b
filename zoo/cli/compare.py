"""``zoo compare``: backbones side by side on this machine and, with ``--data``, on the user's images."""

from __future__ import annotations

import argparse

from zoo.cli.console import ProgressDisplay, console, positive_int, print_json


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,32, got {text!r}")
    return sizes


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def cmd_compare(args: argparse.Namespace) -> int:
    from zoo.compare.report import compare

    err = console(stderr=True)
    with ProgressDisplay() as progress:  # the table comes after the bars are gone
        result = compare(args.names, data=args.data, batch_sizes=args.batch_size, threads=args.threads,
                         device=args.device, progress=progress)
    if args.plot:
        from zoo.compare.plot import plot

        path = plot(result, args.plot)
        err.print(f"plot: {path}")
    if args.json:
        return print_json(result)
    from rich.table import Table

    rows = result["rows"]
    with_data = result["data"] is not None
    table = Table(caption=_caption(result), caption_justify="left")
    for header in ("#", "model", "top1*", "top5*", "params M", "MB", "depth", "res", "GMACs", "lat ms p50/p90",
                   "img/s", "peak MB", *(("probe", "kNN", "LogME", "front") if with_data else ("front",))):
        table.add_column(header, justify="left" if header == "model" else "right")
    for r in rows:
        measured = [f"{r['latency_ms']:.1f}/{r['latency_p90_ms']:.1f}", f"{r['throughput']:.1f}",
                    f"{r['peak_rss_mb']:.0f}"] if r["measured"] else ["not measured", "", ""]
        data = [_fmt(r["probe_accuracy"], ".3f"), _fmt(r["knn_accuracy"], ".3f"), _fmt(r["logme"], ".3f")] if with_data else []
        table.add_row(str(r["rank"]), r["name"], _fmt(r["top1"], ".2f"), _fmt(r["top5"], ".2f"),
                      _fmt(r["params"] and r["params"] / 1e6, ".1f"), _fmt(r["weights_mb"], ".1f"), _fmt(r["depth"], "d"),
                      str(r["input_size"][-1]), f"{r['gmacs']:.2f}", *measured, *data,
                      "*" if r["pareto_front"] else "")
    out = console()
    out.print(table)
    for r in rows:
        if r["not_measured"]:
            out.print(f"{r['name']}: {r['not_measured']}")
    return 0


def _caption(result: dict) -> str:
    rows = [r for r in result["rows"] if r["measured"]]
    machine = rows[0]["machine"] if rows else None
    parts = ["* published ImageNet-1k figures (zoo info NAME for the source); GMACs computed at the card's resolution"]
    if machine:
        parts.append(f"measured on {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
                     f"{machine['device']}: latency at batch 1, throughput at batch {rows[0]['throughput_batch']}, "
                     "peak RSS of a fresh process")
    if result["data"]:
        s = result["split"]
        tau = result["logme_probe_kendall_tau"]
        parts.append(f"probe/kNN: accuracy on {s['test']} held-out images ({s['how']}), trained on {s['train']}; "
                     f"LogME vs probe rank agreement (Kendall's tau): {_fmt(tau, '.2f', 'n/a')}")
    parts.append("front: Pareto front of accuracy against latency")
    return ". ".join(parts) + "."


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="compare backbones: published figures, GMACs, measured speed and memory, "
                                       "and with --data linear-probe/kNN/LogME on your images")
    p.add_argument("names", nargs="+", metavar="NAME", help="models to compare")
    p.add_argument("--data", metavar="DIR", help="an ImageFolder to probe (fixed 20%% split, seed 0)")
    p.add_argument("--batch-size", type=_batch_sizes, default=(1, 32), metavar="1,32",
                   help="batch sizes: latency at 1, throughput at the largest")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the models run")
    p.add_argument("--json", action="store_true", help="print every row as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="accuracy against latency as a PNG (needs matplotlib)")
    p.set_defaults(run=cmd_compare)
