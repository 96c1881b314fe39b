"""``zoo.compare``: backbones side by side, published figures beside what this machine and the
user's data say.

Per model: the card's published top-1/top-5 (marked with their source), params, size, depth and
input resolution; GMACs computed at that resolution; latency, throughput and peak memory measured
in a fresh subprocess (``zoo.compare.measure``); and with ``data``, a linear probe, kNN and LogME on the
pooled features (``zoo.transfer.features``: extracted once, cached, shared with ``zoo finetune``). A model
whose weights are not cached, offline, keeps its computed and published columns and says why the
rest is "not measured". Measurements are kept in ``ZOO_HOME/measurements`` with the machine they
were taken on, for ``zoo list --measured`` (zoo/compare/measurements.py).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from zoo.cards.card import Card
from zoo.compare.measure import gmacs, measure
from zoo.compare.measurements import save_measurement
from zoo.compare.probe import kendall_tau, knn_accuracy, linear_probe, logme, pareto_front
from zoo.errors import UsageError, ZooError
from zoo.model.load import load
from zoo.model.resolve import card_for
from zoo.transfer.datasets import split as split_folder
from zoo.transfer.features import extract
from zoo.util.progress import Progress, Task
from zoo.weights.pull import pull

#: the fields a compare row always has (None where not applicable or not measured)
FIELDS = ("name", "architecture", "top1", "top5", "metrics_source", "params", "weights_mb", "depth", "input_size",
          "gmacs", "measured", "not_measured", "latency_ms", "latency_p90_ms", "runs", "throughput", "throughput_batch",
          "memory_format",
          "peak_rss_mb", "machine", "probe_accuracy", "probe_seconds", "knn_accuracy", "knn_seconds", "logme",
          "logme_seconds", "extract_seconds", "features_cached", "pareto_front", "rank")


def _weights_available(card: Card, progress: Progress | None) -> str | None:
    """None if the weights are cached or can be fetched now (bundled ones even offline); else why
    the model cannot be measured, with what to do."""
    try:
        pull(card, progress=progress)
        return None
    except ZooError as exc:
        return f"not measured: {exc}"


def compare(names: list[str], data: str | os.PathLike | None = None, batch_sizes: tuple[int, ...] = (1, 32),
            threads: int | None = None, device: str = "cpu",
            progress: Progress | None = None) -> dict[str, Any]:
    """Rows for ``names`` (see FIELDS), ranked; and, with ``data``, the rank agreement between
    LogME and probe accuracy (Kendall's tau). ``progress`` (zoo.util.progress) sees one task in
    models (its status says which step), and the pulls and extractions it runs."""

    if not names:
        raise UsageError("name at least one model to compare")
    if device.startswith("cuda"):

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device here")
    cards = [card_for(n) for n in names]
    split = None
    if data is not None:

        split = split_folder(data, 0.2, seed=0)  # fixed: every model sees the same images on each side
    rows = []
    with Task(progress, "compare", f"compare {len(cards)} models", len(cards), "models") as task:
        for card in cards:
            rows.append(_row(card, batch_sizes, device, threads, split, task, progress))
            task.advance(1)
    return {"rows": _rank(rows, with_data=split is not None), "logme_probe_kendall_tau": _tau(rows),
            "data": str(data) if data is not None else None,
            "split": {"train": len(split.train), "test": len(split.val), "how": split.how} if split else None}


def _row(card: Card, batch_sizes, device: str, threads, split, task: Task, progress: Progress | None) -> dict:
    """One model's row: the card's figures, GMACs, timings from a fresh process, and probes on ``split``."""
    say = task.status
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(name=card.name, architecture=card.architecture, top1=card.top1, top5=card.top5,
               metrics_source=card.metrics_source, params=card.params, weights_mb=card.size_mb,
               depth=card.depth, input_size=list(card.input_size), measured=False)
    say(f"{card.name}: GMACs")
    row["gmacs"] = round(gmacs(card.architecture, tuple(card.input_size)), 4)
    why = _weights_available(card, progress)
    if why:
        row["not_measured"] = why
    else:
        say(f"{card.name}: timing in a fresh process")
        try:
            row.update(measure(card.name, list(batch_sizes), device, threads), measured=True)
        except ZooError as exc:  # one model failing to run (memory, an op missing on the device) costs its row
            row["not_measured"] = f"not measured: {exc}"
            return row
        save_measurement(card.name, row)
        if split is not None:
            say(f"{card.name}: features and probes")
            row.update(_probes(card, split, device, progress))
    return row


def _probes(card: Card, split, device: str, progress: Progress | None) -> dict[str, Any]:

    model = load(card, head=0, device=device)
    t0 = time.perf_counter()
    fs = extract(model, split.data, progress=progress)
    extract_seconds = time.perf_counter() - t0
    x, y = fs.features(), fs.labels()
    train, test = fs.rows(split.train), fs.rows(split.val)
    out: dict[str, Any] = {"extract_seconds": round(extract_seconds, 3), "features_cached": fs.cached}
    for key, fn in (("probe", lambda: linear_probe(x, y, train, test)), ("knn", lambda: knn_accuracy(x, y, train, test)),
                    ("logme", lambda: logme(x[train], y[train]))):
        t0 = time.perf_counter()
        value = fn()
        out[f"{key}_accuracy" if key != "logme" else "logme"] = value
        out[f"{key}_seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _rank(rows: list[dict], with_data: bool) -> list[dict]:
    """Best first (probe accuracy with data, else published top-1); mark the Pareto front of
    accuracy against batch-1 latency among the measured rows."""

    key = "probe_accuracy" if with_data else "top1"
    rows = sorted(rows, key=lambda r: (r[key] is None, -(r[key] or 0)))
    scored = [r for r in rows if r[key] is not None and r["latency_ms"] is not None]
    for r, front in zip(scored, pareto_front([(r[key], r["latency_ms"]) for r in scored])):
        r["pareto_front"] = front
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _tau(rows: list[dict]) -> float | None:

    both = [r for r in rows if r["logme"] is not None and r["probe_accuracy"] is not None]
    return kendall_tau([r["logme"] for r in both], [r["probe_accuracy"] for r in both]) if len(both) >= 2 else None
