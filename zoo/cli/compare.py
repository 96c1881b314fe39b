"""``zoo compare``: backbones side by side on this machine and, with ``--data``, on the user's images."""

from __future__ import annotations

import argparse

from zoo.cli.console import ENGINE_CHOICES, ProgressDisplay, console, positive_int, print_json

#: zoo.compare.measure.ROUNDS, repeated so that parsing the command line does not import torch
ROUNDS = 5


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


def _with_interval(value, interval) -> str:
    """``0.953 .931-.970``: an accuracy and its 95% interval, short enough for a 100-column table."""
    if value is None:
        return "-"
    lo, hi = (format(v, ".3f").lstrip("0") if v < 1 else format(v, ".3f") for v in interval)
    return f"{value:.3f} {lo}-{hi}"


def cmd_compare(args: argparse.Namespace) -> int:
    from zoo.compare.report import compare

    err = console(stderr=True)
    if args.plot:
        from zoo.util.plots import check_plot

        check_plot(args.plot)  # before minutes of measuring
    with ProgressDisplay() as progress:  # the tables come after the bars are gone
        result = compare(args.names, data=args.data, batch_sizes=args.batch_size, threads=args.threads,
                         device=args.device, rounds=args.rounds, progress=progress, engine=args.engine)
    if args.plot:
        from zoo.compare.plot import plot

        path = plot(result, args.plot)
        err.print(f"plot: {path}")
    if args.json:
        code = print_json(result)
    else:
        out = console()
        out.print(_speed_table(result))
        if result["data"] is not None:
            out.print(_data_table(result))
        for r in result["rows"]:
            if r["not_measured"]:
                out.print(f"{r['label']}: {r['not_measured']}")
        code = 0
    for warning in result["warnings"]:  # last, where they are seen: under the tables (stderr: not in --json)
        err.print(f"warning: {warning}", style="yellow")
    return code


def _table(caption: str, headers: tuple[str, ...], rows: list[dict]):
    """A compact table (two spaces between columns) whose model column fits its longest label, so
    that a 100-column terminal shows every name whole."""
    from rich import box
    from rich.table import Table

    table = Table(caption=caption, caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    widest = max((len(r["label"]) for r in rows), default=5)
    for header in headers:
        if header == "model":
            table.add_column(header, min_width=min(widest, 36), overflow="fold")
        else:
            table.add_column(header, justify="right")
    return table


def _speed_table(result: dict):
    """Published figures, GMACs and this machine's timings: one row per model, best first.

    Other engines' figures share torch's columns' room (a 100-column terminal shows every name whole): an
    ``ORT ms`` column with the batch-1 speed-up, and their throughput after torch's in ``img/s``; the Pareto
    front is a mark next to the rank."""
    others = sorted({e for r in result["rows"] for e in (r.get("engines") or {}) if e != "torch"})
    extra = tuple(f"{_SHORT.get(e, e)} ms" for e in others)
    rate = "img/s" + "".join(f"\n/{_SHORT.get(e, e)}" for e in others)
    table = _table(_speed_caption(result), ("#", "model", "top1*", "top5*", "params", "res", "GMACs",
                                            "p50/p90 ms", *extra, rate, "peak\nMB"), result["rows"])
    for r in result["rows"]:
        if r["measured"]:
            lat = f"{r['latency_ms']:.1f}/{r['latency_p90_ms']:.1f}" + (" !" if r["busy"] else "")
            latencies, rates = _engine_cells(r, others)
            measured = [lat, *latencies, "/".join([_rate(r["throughput"]), *rates]), f"{r['peak_rss_mb']:.0f}"]
        else:
            measured = ["not measured", *[""] * len(extra), "", ""]
        table.add_row(f"{r['rank']}{' ◆' if r['pareto_front'] else ''}", r["label"], _fmt(r["top1"], ".2f"),
                      _fmt(r["top5"], ".2f"), _fmt(r["params"] and r["params"] / 1e6, ".1f"),
                      str(r["input_size"][-1]), f"{r['gmacs']:.2f}", *measured)
    return table


#: engines' names in table headers
_SHORT = {"onnxruntime": "ORT"}


def _rate(images_per_second: float) -> str:
    """Three significant figures: 34.2, 118, 1204."""
    return f"{images_per_second:.1f}" if images_per_second < 100 else f"{images_per_second:.0f}"


def _engine_cells(row: dict, engines: list[str]) -> tuple[list[str], list[str]]:
    """Each other engine's batch-1 latency with its speed-up over torch, and its throughput."""
    latencies, rates = [], []
    for e in engines:
        got = (row.get("engines") or {}).get(e)
        if not got or got.get("error"):
            latencies.append("-")
            rates.append("-")
            continue
        speedup = row["latency_ms"] / got["latency_ms"] if got["latency_ms"] else None
        latencies.append(f"{got['latency_ms']:.1f}" + (f" {speedup:.1f}x" if speedup else "")
                         + ("!" if got["busy"] else ""))
        rates.append(_rate(got["throughput"]))
    return latencies, rates


def _data_table(result: dict):
    """The probes with their intervals, which differences are noise, and the training-free scores."""
    probed = [r for r in result["rows"] if r["probe_accuracy"] is not None]
    table = _table(_data_caption(result), ("#", "model", "probe  95% CI", "kNN  95% CI", "≈#1", "LogME", "H-score",
                                           "LEEP", "NCE"), probed)
    for r in probed:
        noise = "" if r["within_noise_of_best"] is None else ("yes" if r["within_noise_of_best"] else "no")
        table.add_row(str(r["rank"]), r["label"], _with_interval(r["probe_accuracy"], r["probe_interval"]),
                      _with_interval(r["knn_accuracy"], r["knn_interval"]), noise, _fmt(r["logme"], ".3f"),
                      _fmt(r["hscore"], ".2f"), _fmt(r["leep"], ".3f"), _fmt(r["nce"], ".3f"))
    return table


def _speed_caption(result: dict) -> str:
    rows = [r for r in result["rows"] if r["measured"]]
    machine = rows[0]["machine"] if rows else None
    parts = ["* published ImageNet-1k figures (zoo info NAME for the source and the full name); GMACs computed "
             "at the card's resolution, params in millions"]
    if machine:
        parts.append(f"measured on {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
                     f"{machine['device']}: p50/p90 latency at batch 1 over {result['rounds']} rounds interleaved across the "
                     f"models, throughput at batch {rows[0]['throughput_batch']}, peak RSS of each model's own process")
        if any(e != "torch" for r in rows for e in (r.get("engines") or {})):
            parts.append("ORT: the same model on ONNX Runtime (an ONNX graph built once, zoo --engine onnxruntime), "
                         "timed in the same rounds; Nx: its batch-1 speed-up over torch; img/s: torch's, then ORT's")
    if any(r["busy"] for r in rows):
        parts.append("! timed on a busy machine (see the warnings): the latency may be inflated")
    parts.append("◆: on the Pareto front of accuracy against latency (no model both more accurate and faster)")
    return ". ".join(parts) + "."


def _data_caption(result: dict) -> str:
    s = result["split"]
    taus = ", ".join(f"{k} {_fmt(v, '.2f', 'n/a')}" for k, v in result["kendall_tau"].items())
    parts = [f"probe/kNN: accuracy on {s['test']} held-out images ({s['how']}), trained on {s['train']}, with "
             "the 95% bootstrap interval over the held-out images",
             "≈#1: within noise of #1 (yes: the paired bootstrap 95% interval of the accuracy difference to #1 "
             "holds 0, the ranking between them is noise)",
             "LogME, H-score, LEEP (ImageNet predictions), NCE: training-free scores on the training images, "
             "higher is better",
             f"rank agreement with the probe (Kendall's tau over {result['kendall_tau_models']} models): {taus}"]
    if result["kendall_tau_note"]:
        parts.append(result["kendall_tau_note"].replace("Kendall's tau is", "tau is"))
    return ". ".join(parts) + "."


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="compare backbones: published figures, GMACs, measured speed and memory, "
                                       "and with --data linear-probe/kNN and training-free scores on your images")
    p.add_argument("names", nargs="+", metavar="NAME", help="models to compare")
    p.add_argument("--data", metavar="DIR", help="an ImageFolder to probe (fixed 20%% split, seed 0)")
    p.add_argument("--batch-size", type=_batch_sizes, default=(1, 32), metavar="1,32",
                   help="batch sizes: latency at 1, throughput at the largest")
    p.add_argument("--rounds", type=positive_int, default=ROUNDS, metavar="N",
                   help="timing rounds, interleaved across the models (each model's batch-1 runs in every round)")
    p.add_argument("--threads", type=positive_int, default=None, help="threads of each timed model, torch's and ONNX Runtime's (default: the cores)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the models run")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                   help="what runs the feature pass, and is timed beside torch: onnxruntime (the fast extra), torch, "
                        "or auto: ONNX Runtime on the CPU when installed (default: $ZOO_ENGINE, else auto)")
    p.add_argument("--json", action="store_true", help="print every row as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="accuracy against latency as a PNG (needs matplotlib)")
    p.set_defaults(run=cmd_compare)
