"""``zoo.compare``: backbones side by side, published figures beside what this machine and the
user's data say.

Per model: the card's published top-1/top-5 (marked with their source), params, size, depth and
input resolution; GMACs computed at that resolution; latency, throughput and peak memory measured
in each model's own process, in rounds interleaved across the models (``zoo.compare.measure``), and
marked ``busy`` when the machine was, per engine (torch always; ONNX Runtime too where the engine
asked for, or ``auto``, runs it: ``engines``, while the row's own figures stay torch's); and with ``data``, a linear probe and kNN on held-out images
with 95% bootstrap intervals (``zoo.compare.probe``) and the training-free scores LogME, H-score,
LEEP and NCE with the time each took (``zoo.compare.scores``), on the pooled features
(``zoo.transfer.features``: extracted once, cached, shared with ``zoo finetune``). The ranking
says which models are within noise of the best, and how well each score ranks the models as the
probe does (Kendall's tau, and whether there are enough models for it to mean anything). A model
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
from zoo.compare.measure import ROUNDS, gmacs, measure_models
from zoo.compare.measurements import save_measurement
from zoo.compare.probe import (bootstrap_interval, difference_interval, kendall_tau, knn_correct, pareto_front,
                               probe_correct)
from zoo.compare.scores import hscore, leep, logme, nce, source_probabilities
from zoo.errors import UsageError, ZooError
from zoo.model.engine import choose as choose_engine
from zoo.model.heads import imagenet_classifier
from zoo.model.load import load
from zoo.model.resolve import card_for
from zoo.transfer.datasets import split as split_folder
from zoo.transfer.features import extract
from zoo.util.progress import Progress, Task
from zoo.weights.pull import open_weights, pull

#: the fields a compare row always has (None where not applicable or not measured)
FIELDS = ("name", "label", "architecture", "top1", "top5", "metrics_source", "params", "weights_mb", "depth",
          "input_size", "gmacs", "measured", "not_measured", "latency_ms", "latency_p90_ms", "runs", "rounds",
          "latency_rounds_ms", "others_cpu", "load_avg", "busy", "throughput", "throughput_batch", "memory_format",
          "peak_rss_mb", "machine", "probe_accuracy", "probe_interval", "probe_diff_interval", "within_noise_of_best",
          "probe_seconds", "knn_accuracy", "knn_interval", "knn_seconds", "logme", "logme_seconds", "hscore",
          "hscore_seconds", "leep", "leep_seconds", "nce", "nce_seconds", "scores_note", "extract_seconds",
          "features_cached", "pareto_front", "rank", "engine", "engines", "feature_engine")
#: the training-free scores, each ranked against the probe (Kendall's tau)
SCORES = ("logme", "hscore", "leep", "nce")
#: below this many probed models Kendall's tau says nothing: 2 give +-1, 3 one of four values
MIN_TAU_MODELS = 4


def _weights_available(card: Card, progress: Progress | None) -> str | None:
    """None if the weights are cached or can be fetched now (bundled ones even offline); else why
    the model cannot be measured, with what to do."""
    try:
        pull(card, progress=progress)
        return None
    except ZooError as exc:
        return f"not measured: {exc}"


def compare(names: list[str], data: str | os.PathLike | None = None, batch_sizes: tuple[int, ...] = (1, 32),
            threads: int | None = None, device: str = "cpu", rounds: int = ROUNDS,
            progress: Progress | None = None, engine: str | None = None) -> dict[str, Any]:
    """Rows for ``names`` (see FIELDS), ranked; with ``data``, each training-free score's rank
    agreement with the probe (``kendall_tau``); ``warnings`` says what to distrust (a busy
    machine, too few models for tau). ``progress`` (zoo.util.progress) sees one task in models
    (its status says which model and stage), and the pulls and extractions it runs. ``engine``
    (zoo/model/engine.py) runs the feature pass and, besides torch, is timed."""
    if not names:
        raise UsageError("name at least one model to compare")
    if rounds < 1:
        raise UsageError(f"rounds must be at least 1, not {rounds}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here")
    chosen = choose_engine(engine, device)
    engines = ("torch",) if chosen == "torch" else ("torch", chosen)
    cards, typed, warnings = _unique([(n, card_for(n)) for n in names])
    split = split_folder(data, 0.2, seed=0) if data is not None else None  # fixed: every model sees the same images
    rows = [_card_row(card, label) for card, label in zip(cards, short_labels(cards, typed))]
    correct: dict[str, Any] = {}  # name -> the probe's per-image results on the held-out images
    with Task(progress, "compare", f"compare {len(cards)} models", len(cards), "models") as task:
        for card, row in zip(cards, rows):
            task.status(f"{row['label']}: GMACs and weights")
            row["gmacs"] = round(gmacs(card.architecture, tuple(card.input_size)), 4)
            row["not_measured"] = _weights_available(card, progress)
            if row["not_measured"]:
                task.advance(1)
        _time(cards, rows, batch_sizes, device, threads, rounds, task, engines)
        for card, row in zip(cards, rows):
            if row["measured"] and split is not None:
                row.update(_probes(card, row["label"], split, device, task, progress, correct, chosen, threads))
            if not row["not_measured"]:
                task.advance(1)
    rows = _rank(rows, split is not None, correct)
    taus, probed = _taus(rows)
    note = (f"Kendall's tau is not meaningful with {probed} models (at least {MIN_TAU_MODELS} needed)"
            if split is not None and probed < MIN_TAU_MODELS else None)
    warnings += _busy_warnings(rows) + ([note] if note else [])
    return {"rows": rows, "logme_probe_kendall_tau": taus["logme"], "kendall_tau": taus,
            "kendall_tau_models": probed, "kendall_tau_note": note, "warnings": warnings,
            "data": str(data) if data is not None else None, "rounds": rounds,
            "split": {"train": len(split.train), "test": len(split.val), "how": split.how} if split else None}


def _busy_warnings(rows: list[dict]) -> list[str]:
    """A line per row timed on a busy machine, saying why, and one saying what to do."""
    busy = [f"{r['label']} timed on a busy machine: {r['busy']}" for r in rows if r["busy"]]
    return busy + ["latencies timed on a busy machine may be inflated: rerun 'zoo compare' when it is idle"] if busy else []


def _unique(named: list[tuple[str, Card]]) -> tuple[list[Card], list[str], list[str]]:
    """The cards once each (a card named twice is measured once), what the user typed for each,
    and a warning per repeat."""
    cards, typed, warnings = [], [], []
    for name, card in named:
        if card in cards:
            first = typed[cards.index(card)]
            same = f"{first} named twice" if first == name else f"{first} and {name} are both {card.name}"
            warnings.append(f"{same}: compared once")
            continue
        cards.append(card)
        typed.append(name)
    return cards, typed, warnings


def short_labels(cards: list[Card], typed: list[str]) -> list[str]:
    """A short name per card that tells the rows apart: the shortest of what the user typed and
    the card's aliases (what the user typed wins a tie), unless another row would read the same
    but for case (``resnet50`` and ``ResNet50`` are two cards); then the full card name, unique."""
    choices = [sorted({t, *c.aliases}, key=lambda a: (len(a), a != t))[0] for c, t in zip(cards, typed)]
    folded = [c.lower() for c in choices]
    return [choice if folded.count(choice.lower()) == 1 else card.name for choice, card in zip(choices, cards)]


def _card_row(card: Card, label: str) -> dict[str, Any]:
    """The columns a card gives without running anything."""
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(name=card.name, label=label, architecture=card.architecture, top1=card.top1, top5=card.top5,
               metrics_source=card.metrics_source, params=card.params, weights_mb=card.size_mb,
               depth=card.depth, input_size=list(card.input_size), measured=False)
    return row


def _time(cards: list[Card], rows: list[dict], batch_sizes, device: str, threads, rounds: int, task: Task,
          engines: tuple[str, ...] = ("torch",)) -> None:
    """Latency, throughput and peak memory of the rows whose weights are here, on each of
    ``engines``, timed together in interleaved rounds; each result saved for ``zoo list --measured``."""
    todo = [(c, r) for c, r in zip(cards, rows) if not r["not_measured"]]
    results = measure_models([c.name for c, _ in todo], list(batch_sizes), device, threads, rounds,
                             labels=[r["label"] for _, r in todo], status=task.status, engines=engines)
    for (card, row), result in zip(todo, results):
        if isinstance(result, ZooError):  # one model failing to run (memory, an op missing) costs its row
            row["not_measured"] = f"not measured: {result}"
            task.advance(1)
            continue
        row.update(result, measured=True)
        save_measurement(card.name, row)


def _timed(out: dict, key: str, fn):
    """``fn()``, with its seconds in ``out[key + '_seconds']``."""
    t0 = time.perf_counter()
    value = fn()
    out[f"{key}_seconds"] = round(time.perf_counter() - t0, 4)
    return value


def _probes(card: Card, label: str, split, device: str, task: Task, progress: Progress | None,
            correct: dict, engine: str = "torch", threads: int | None = None) -> dict[str, Any]:
    """Probes, intervals and training-free scores of one model on the split; its probe's
    per-image results go into ``correct`` for the paired comparison with the best."""
    task.status(f"{label}: features")
    model = load(card, head=0, device=device)
    out: dict[str, Any] = {}
    fs = _timed(out, "extract", lambda: extract(model, split.data, progress=progress, engine=engine, threads=threads))
    out["features_cached"] = fs.cached
    out["feature_engine"] = engine
    x, y = fs.features(), fs.labels()
    train, test = fs.rows(split.train), fs.rows(split.val)
    task.status(f"{label}: linear probe")
    correct[card.name] = _timed(out, "probe", lambda: probe_correct(x, y, train, test))
    task.status(f"{label}: kNN")
    knn = _timed(out, "knn", lambda: knn_correct(x, y, train, test))
    out.update(probe_accuracy=float(correct[card.name].double().mean()), knn_accuracy=float(knn.double().mean()),
               probe_interval=list(bootstrap_interval(correct[card.name])), knn_interval=list(bootstrap_interval(knn)))
    xt, yt = x[train], y[train]
    task.status(f"{label}: LogME and H-score")
    out["logme"] = _timed(out, "logme", lambda: logme(xt, yt))
    out["hscore"] = _timed(out, "hscore", lambda: hscore(xt, yt))
    classifier = imagenet_classifier(model, open_weights(card))
    if classifier is None:
        out["scores_note"] = "LEEP and NCE: the base has no classifier over its pooled features"
        return out
    task.status(f"{label}: LEEP and NCE")
    t0 = time.perf_counter()
    probs = source_probabilities(xt, *classifier)  # its own predictions: no forward pass
    shared = time.perf_counter() - t0
    out["leep"] = _timed(out, "leep", lambda: leep(probs, yt))
    out["nce"] = _timed(out, "nce", lambda: nce(probs.argmax(1), yt))
    for key in ("leep", "nce"):  # each pays the softmax they share
        out[f"{key}_seconds"] = round(out[f"{key}_seconds"] + shared, 4)
    return out


def _rank(rows: list[dict], with_data: bool, correct: dict) -> list[dict]:
    """Best first (probe accuracy with data, else published top-1); say which rows are within
    noise of the best (the paired bootstrap interval of their difference holds 0); mark the Pareto
    front of accuracy against batch-1 latency among the measured rows."""
    key = "probe_accuracy" if with_data else "top1"
    rows = sorted(rows, key=lambda r: (r[key] is None, -(r[key] or 0)))
    best = rows[0]["name"] if rows and rows[0]["name"] in correct else None
    for r in rows[1:]:
        if best and r["name"] in correct:
            lo, hi = difference_interval(correct[r["name"]], correct[best])
            r.update(probe_diff_interval=[lo, hi], within_noise_of_best=hi >= 0)
    scored = [r for r in rows if r[key] is not None and r["latency_ms"] is not None]
    for r, front in zip(scored, pareto_front([(r[key], r["latency_ms"]) for r in scored])):
        r["pareto_front"] = front
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _taus(rows: list[dict]) -> tuple[dict[str, float | None], int]:
    """Kendall's tau of each training-free score against the probe accuracy, and how many models
    were probed."""
    probed = [r for r in rows if r["probe_accuracy"] is not None]
    taus = {}
    for score in SCORES:
        both = [r for r in probed if r[score] is not None]
        scores, probes = [r[score] for r in both], [r["probe_accuracy"] for r in both]
        taus[score] = kendall_tau(scores, probes) if len(both) >= 2 else None
    return taus, len(probed)
