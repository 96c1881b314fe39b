"""``zoo.predict``: the top classes of image files through a model, in batches.

Directories are walked whole (sub-folders at any depth). Images are decoded one by one (an
unreadable one becomes a record with its error, and the others still run), then classified a
batch at a time under ``torch.inference_mode``. A directory that is an ImageFolder of the model's
classes (every class folder names one of them) is labelled: each record carries its true class and
the answer its accuracy. What ``zoo predict`` prints is these records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from zoo.errors import ImageError
from zoo.model.decode import class_indices, decode, output_names
from zoo.model.engine import logits_forward
from zoo.model.images import image_tree, open_rgb
from zoo.model.transforms import transforms
from zoo.util.progress import Progress, Task


@dataclass(frozen=True)
class Prediction:
    """One image: its path and ``[(label, probability), ...]`` best first, or why it was not
    classified; ``label`` is its true class (the model's name for its class folder) when known."""

    image: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    label: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> bool | None:
        """Whether the best class is the true one; None when the image has no label or was not read."""
        return None if self.label is None or not self.ok else self.top[0][0] == self.label

    def as_dict(self) -> dict:
        out = {"image": self.image, "predictions": [{"label": l, "probability": p} for l, p in self.top]}
        if self.label is not None:
            out["true_label"] = self.label
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Accuracy:
    """Accuracy over the labelled images that were read: top-1, and the label among the ``top`` shown."""

    correct: int
    in_top: int
    images: int
    top: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.images

    @property
    def top_accuracy(self) -> float:
        return self.in_top / self.images

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "top_k_accuracy": self.top_accuracy, "correct": self.correct,
                "images": self.images, "top": self.top}


class Predictions(list):
    """What :func:`predict` returns: the list of :class:`Prediction` it always was (index it,
    iterate it, compare it to a list), plus :attr:`accuracy` over its labelled images. A list
    subclass rather than a new return type, so that code written for the list keeps working and
    the summary cannot be separated from the records it sums up."""

    @property
    def accuracy(self) -> Accuracy | None:
        """None when no image was labelled (no directory was an ImageFolder of the model's classes)."""
        scored = [p for p in self if p.correct is not None]
        if not scored:
            return None
        return Accuracy(sum(p.correct for p in scored), sum(p.label in [l for l, _ in p.top] for p in scored),
                        len(scored), max(len(p.top) for p in scored))


def true_labels(model: torch.nn.Module, tree: list[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """file -> its true class, for the files of each directory whose class folders all name
    classes of ``model`` (an ImageFolder of its classes; images loose in the directory have none)."""
    names = output_names(model)
    out: dict[str, str] = {}
    for root in dict.fromkeys(r for _, r, _ in tree if r is not None):
        mine = [(f, c) for f, r, c in tree if r == root and c is not None]
        folders = {c for _, c in mine}
        index = class_indices(model, sorted(folders))
        if folders and len(index) == len(folders):
            out.update((f, names[index[c]]) for f, c in mine)
    return out


def predict(model: torch.nn.Module, paths: list[str | os.PathLike], *, top: int = 5, batch_size: int = 16,
            progress: Progress | None = None, engine: str | None = None, threads: int | None = None) -> Predictions:
    """One :class:`Prediction` per image of ``paths`` (files, or directory trees of images), in order.

    ``model`` is a zoo.load model (a card's or a run's: its own transform and class names are
    used). Images under a directory that is an ImageFolder of the model's classes carry their
    ``label``, and the answer's ``accuracy`` sums them up. ``progress`` (zoo.util.progress) sees
    one task in images."""
    tree = image_tree(paths)
    files = [f for f, _, _ in tree]
    labels = true_labels(model, tree)
    tf = transforms(model)
    name = getattr(getattr(model, "run", None), "name", None) or model.card.name
    out = Predictions()
    device = next(model.parameters()).device  # a model loaded with device= gets its batches there
    model.eval()
    fast = logits_forward(model, engine, threads, progress)
    with Task(progress, "predict", f"predict with {name}", len(files), "images") as task:
        for start in range(0, len(files), batch_size):
            batch, names, failed = [], [], {}
            for path in files[start:start + batch_size]:
                try:
                    batch.append(tf(open_rgb(path)))
                    names.append(path)
                except ImageError as exc:
                    failed[path] = str(exc)
            tops = {}
            if batch:
                with torch.inference_mode():
                    logits = fast(torch.stack(batch)) if fast else model(torch.stack(batch).to(device))
                tops = dict(zip(names, decode(logits, top=top, model=model)))
            for path in files[start:start + batch_size]:  # in the order given
                label = labels.get(path)
                out.append(Prediction(path, tops[path], label=label) if path in tops
                           else Prediction(path, error=failed[path], label=label))
            task.advance(len(batch) + len(failed))
    return out
