"""The door: ``zoo.load`` takes any model reference, resolves it here once, and loads what it names.

A reference is one of:

- a directory made by ``zoo finetune`` (a run: ``card.toml`` beside ``head.safetensors``);
- ``hf://ORG/NAME[@rev]`` of a published run (any org but ``timm``), fetched once and verified;
- a card name, alias or architecture (``resnet50.a1_in1k``, ``ResNet50``, ``resnet50``), a timm tag
  without a card, or ``hf://timm/<tag>``: a :class:`~zoo.cards.Card` (zoo/model/resolve.py).

:func:`resolve` turns the reference into a Card or a :class:`Run` and nothing below it resolves the
name again: a card goes to :func:`zoo.model.load.load`, the one place a model meets its weights, and a
run to :func:`zoo.transfer.runs.load_run`, which loads its base through that same function, then its head.
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
from zoo.errors import UsageError
from zoo.model.load import load as load_card
from zoo.model.predict import Prediction, predict as predict_images
from zoo.model.resolve import card_for
from zoo.transfer.publish import fetch_run, is_published_run_uri, pull_run
from zoo.transfer.runs import is_run, load_run, read_run
from zoo.util.progress import Progress
from zoo.weights.pull import pull, pull_uri


@dataclass(frozen=True)
class Run:
    """A fine-tuned run on local disk (a published one is fetched into ``ZOO_HOME/runs`` first)."""

    path: Path
    reference: str  # what the caller wrote: the directory, or hf://ORG/NAME


def resolve(reference: Any) -> Card | Run:
    """What ``reference`` names: a run (a run directory, a published run's ``hf://`` URI) or a card."""
    if isinstance(reference, Card):
        return reference
    if isinstance(reference, (str, os.PathLike)):
        text = os.fspath(reference)
        if is_run(text):
            return Run(Path(text), text)
        if is_published_run_uri(text):
            return Run(fetch_run(text), text)
    return card_for(reference)


def load(name, head=None, **kwargs):
    """A ready model: see :func:`zoo.model.load.load` for card names and its options. A run directory
    or ``hf://ORG/NAME`` of a published run gives the fine-tuned model (``device`` is the only
    option it takes: its head, pooling and transform are the run's)."""
    target = resolve(name)
    if isinstance(target, Card):
        return load_card(target, head=head, **kwargs)
    extra = sorted(k for k, v in kwargs.items() if v is not None and k != "device")
    if head is not None or extra:
        raise UsageError(f"{target.reference} is a fine-tuned run: its head and options are fixed "
                         f"(got {', '.join((['head'] if head is not None else []) + extra)}); "
                         f"to train another head, load its base ({read_run(target.path).base.name}) instead")
    return load_run(target.path, device=kwargs.get("device"))


def predict(model: Any, paths: list[str | os.PathLike], *, top: int = 5, batch_size: int = 16,
            progress: Progress | None = None) -> list[Prediction]:
    """The ``top`` classes of every image of ``paths`` (files, or directories of images), in order:
    one :class:`~zoo.model.predict.Prediction` each (an unreadable image carries its ``error``).

    ``model`` is a loaded model or any reference :func:`load` takes (a name, a run, ``hf://``)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        model = load(model)
    return predict_images(model, paths, top=top, batch_size=batch_size, progress=progress)


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` put in the cache: ``kind`` is ``card``, ``run`` or ``uri``."""

    reference: str
    kind: str
    path: Path  # the weights blob; for a run, its directory
    base: Path | None = None  # a run's base weights blob


def is_source_uri(text: str) -> bool:
    """A URI or a file path (``hf://org/repo/file``, ``https://...``, ``pkg://...``, ``./w.pth``), not a model name."""
    return "://" in text or os.sep in text or os.path.exists(text)


def fetch(reference: str, *, progress: Progress | None = None) -> Fetched:
    """Download and verify whatever ``reference`` names, as ``zoo pull`` does: a published run
    (``hf://ORG/NAME`` of a run: its files, then its base through the base's card), a source URI or
    path (the file itself, keyed by the URI), or a model name (the card's weights)."""
    if is_published_run_uri(reference):
        run, base = pull_run(reference, progress=progress)
        return Fetched(reference, "run", run, base)
    if is_source_uri(reference):
        return Fetched(reference, "uri", pull_uri(reference, progress=progress))
    return Fetched(reference, "card", pull(reference, progress=progress))
