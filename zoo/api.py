"""The door: ``zoo.load`` takes any model reference, resolves it here once, and loads what it names.

A reference is one of:

- a directory made by ``zoo finetune`` (a run: ``card.toml`` beside ``head.safetensors``);
- ``hf://ORG/NAME[@rev]`` of a published run (any org but ``timm``), fetched once and verified;
- a merged export (``zoo export --merged``: ``config.json`` + ``model.safetensors``), a folder or
  the ``hf://ORG/NAME`` it was published to: the full model, built by timm as stock timm builds it;
- a card name, alias or architecture (``resnet50.a1_in1k``, ``ResNet50``, ``resnet50``), a timm tag
  without a card, or ``hf://timm/<tag>``: a :class:`~zoo.cards.Card` (zoo/model/resolve.py).

:func:`resolve` turns the reference into a Card, a :class:`Run` or an :class:`Export` and nothing below
it resolves the name again: a card goes to :func:`zoo.model.load.load`, the one place a model meets its
weights, a run to :func:`zoo.transfer.runs.load_run`, which loads its base through that same function,
then its head, and an export to :func:`zoo.transfer.exports.load_export`.
It sits above the model and transfer stages because a reference may be a run.

The other calls that take any reference live here for the same reason: :func:`predict` (a model or
any reference, and image files) and :func:`fetch` (what ``zoo pull`` does with a model name, a
published run or a source URI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cards.card import Card
from zoo.cards.uri import parse_uri
from zoo.errors import UsageError
from zoo.model.engine import Engine
from zoo.model.load import load as load_card
from zoo.model.predict import Predictions, predict as predict_images
from zoo.model.resolve import card_for
from zoo.transfer.evaluate import Evaluation, evaluate as evaluate_images
from zoo.transfer.exports import is_merged_export, load_export
from zoo.transfer.publish import fetch_published, is_published_uri, pull_published
from zoo.transfer.runs import is_run, load_run, read_run
from zoo.util.progress import Progress
from zoo.weights.pull import pull, pull_uri


@dataclass(frozen=True)
class Run:
    """A fine-tuned run on local disk (a published one is fetched into ``ZOO_HOME/runs`` first)."""

    path: Path
    reference: str  # what the caller wrote: the directory, or hf://ORG/NAME


@dataclass(frozen=True)
class Export:
    """A merged export on local disk (a published one is fetched into ``ZOO_HOME/runs`` first)."""

    path: Path
    reference: str  # what the caller wrote: the folder, or hf://ORG/NAME
    repo_id: str | None = None  # the hub repo it was fetched from


def resolve(reference: Any) -> Card | Run | Export:
    """What ``reference`` names: a run or a merged export (a directory, or the ``hf://`` URI it was
    published to) or a card."""
    if isinstance(reference, Card):
        return reference
    if isinstance(reference, (str, os.PathLike)):
        text = os.fspath(reference)
        if is_run(text):
            return Run(Path(text), text)
        if os.path.isdir(text) and is_merged_export(text):
            return Export(Path(text), text)
        if is_published_uri(text):
            path = fetch_published(text)
            return Run(path, text) if is_run(path) else Export(path, text, parse_uri(text).repo_id)
    return card_for(reference)


def load(name, head=None, engine=None, threads=None, **kwargs):
    """A ready model: see :func:`zoo.model.load.load` for card names and its options. A run directory
    or ``hf://ORG/NAME`` of a published run gives the fine-tuned model, and a merged export (a
    folder, or its ``hf://ORG/NAME``) the full model with its class names (``device`` is the only
    option either takes: its head, pooling and transform are the run's).

    ``engine`` (torch, onnxruntime or auto) gives the model wrapped in an
    :class:`~zoo.model.engine.Engine` (see :func:`engine`) instead of the torch module."""
    if engine is not None:
        return make_engine(load(name, head=head, **kwargs), engine, threads=threads)
    target = resolve(name)
    if isinstance(target, Card):
        return load_card(target, head=head, **kwargs)
    extra = sorted(k for k, v in kwargs.items() if v is not None and k != "device")
    if head is not None or extra:
        base = read_run(target.path).base.name if isinstance(target, Run) else "its base"
        raise UsageError(f"{target.reference} is a fine-tuned {'run' if isinstance(target, Run) else 'export'}: "
                         f"its head and options are fixed (got {', '.join((['head'] if head is not None else []) + extra)}); "
                         f"to train another head, load {base} instead")
    if isinstance(target, Export):
        return load_export(target.path, device=kwargs.get("device"), reference=target.reference,
                           repo_id=target.repo_id)
    return load_run(target.path, device=kwargs.get("device"))


def predict(model: Any, paths: list[str | os.PathLike], *, top: int = 5, batch_size: int = 16,
            progress: Progress | None = None, engine: str | None = None, threads: int | None = None) -> Predictions:
    """The ``top`` classes of every image of ``paths`` (files, or directory trees of images), in
    order: one :class:`~zoo.model.predict.Prediction` each (an unreadable image carries its
    ``error``), in a list whose ``accuracy`` sums up the images of a labelled tree (a directory
    whose class folders are the model's classes: each such image carries its ``label``).

    ``model`` is a loaded model, a :class:`~zoo.model.engine.Engine` (its engine runs it unless
    ``engine`` says otherwise) or any reference :func:`load` takes (a name, a run, ``hf://``);
    ``engine``: torch, onnxruntime or auto (zoo/model/engine.py)."""
    model, engine = _model_and_engine(model, engine)
    return predict_images(model, paths, top=top, batch_size=batch_size, progress=progress, engine=engine,
                          threads=threads)


def _model_and_engine(model: Any, engine: str | None):
    """The torch model behind ``model`` (an Engine, a module or a reference) and the engine to run it."""
    import torch

    if isinstance(model, Engine):
        return model.model, engine or model.requested or model.engine
    if not isinstance(model, torch.nn.Module):
        model = load(model)
        if isinstance(model, Engine):
            return model.model, engine or model.engine
    return model, engine


def evaluate(model: Any, data: str | os.PathLike, *, val: bool = False, top: int = 5, batch_size: int = 32,
             workers: int | None = None, progress: Progress | None = None, engine: str | None = None,
             threads: int | None = None) -> Evaluation:
    """Accuracy, top-``top`` accuracy, per-class precision/recall/F1 and the confusion matrix of
    ``model`` on the labelled ImageFolder ``data`` (class folders named as the model's classes),
    or with ``val=True`` on the validation split a run made of ``data`` (the accuracy it recorded):
    see :func:`zoo.transfer.evaluate.evaluate`. ``model`` is a loaded model or any reference
    :func:`load` takes (or an Engine); a reference lives here, above the transfer stage, because it
    may be a published run. ``engine``: torch, onnxruntime or auto (zoo/model/engine.py)."""
    model, engine = _model_and_engine(model, engine)
    return evaluate_images(model, data, val=val, top=top, batch_size=batch_size, workers=workers, progress=progress,
                           engine=engine, threads=threads)


def make_engine(model: Any, engine: str | None = "auto", threads: int | None = None,
                progress: Progress | None = None) -> Engine:
    """``zoo.engine``: ``model`` (a loaded model or any reference :func:`load` takes) as a callable
    run by ``engine`` (torch, onnxruntime, or auto: ONNX Runtime on the CPU when the fast extra is
    installed). ``engine(x)`` gives logits like ``model(x)``, ``engine.features(x)`` pooled
    features; ONNX Runtime's graph is built once and kept (zoo/model/engine.py), and a graph that
    disagrees with torch on a probe batch falls back to torch (``engine.engine`` says which runs)."""
    import torch

    if isinstance(model, Engine):
        model = model.model
    elif not isinstance(model, torch.nn.Module):
        model = load(model)
    return Engine(model, engine, threads=threads, progress=progress)


#: ``zoo.engine(model)`` (``load`` takes an ``engine=`` argument of its own, hence the two names)
engine = make_engine


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` put in the cache: ``kind`` is ``card``, ``run``, ``export`` or ``uri``."""

    reference: str
    kind: str
    path: Path  # the weights blob; for a run or a merged export, its directory
    base: Path | None = None  # a run's base weights blob


def is_source_uri(text: str) -> bool:
    """A URI or a file path (``hf://org/repo/file``, ``https://...``, ``pkg://...``, ``./w.pth``), not a model name."""
    return "://" in text or os.sep in text or os.path.exists(text)


def fetch(reference: str, *, progress: Progress | None = None) -> Fetched:
    """Download and verify whatever ``reference`` names, as ``zoo pull`` does: a published run
    (``hf://ORG/NAME`` of a run: its files, then its base through the base's card) or merged export
    (its folder), a source URI or path (the file itself, keyed by the URI), or a model name (the
    card's weights)."""
    if is_published_uri(reference):
        path, base = pull_published(reference, progress=progress)
        return Fetched(reference, "run" if base is not None else "export", path, base)
    if is_source_uri(reference):
        return Fetched(reference, "uri", pull_uri(reference, progress=progress))
    return Fetched(reference, "card", pull(reference, progress=progress))
