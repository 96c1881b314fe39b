"""``zoo.evaluate``: how a model does on labelled images: accuracy, top-k, per-class precision,
recall and F1, and the confusion matrix.

The images are a labelled ImageFolder (``DIR/<class>/...``, or ``train/`` + ``validation/``: both,
see :func:`~zoo.transfer.datasets.all_images`) whose class folders are mapped to the model's
outputs by name, or a run's own validation split, re-created from what its card records. The
split is re-created exactly as ``zoo finetune`` made it (the same fraction, seed and
``split``), and the images go through the model as they did when the run measured them (in
order, batched, channels_last, under inference mode): on those images the accuracy is the one
the run recorded, which is what makes a recorded figure checkable.

Rows of the confusion matrix are the true classes present in the data, in the model's output
order; columns are the same classes, plus :data:`OTHER` when the model has classes the data lacks
(an ImageNet classifier on a few folders), so that the matrix stays the data's size and still
sums to the number of images evaluated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zoo.errors import UsageError
from zoo.model.decode import IMAGENET_CLASSES, class_indices, output_names
from zoo.model.engine import logits_forward
from zoo.model.transforms import transforms
from zoo.transfer.datasets import ImageFolder, all_images, split
from zoo.transfer.features import image_loader
from zoo.util.progress import Progress, Task
from zoo.util.plots import check_plot, pyplot, save_png

#: the confusion matrix's column for predictions of classes the data does not hold
OTHER = "(other)"


@dataclass(frozen=True)
class ClassScore:
    """One true class: precision, recall and F1 (0 where undefined, as sklearn's ``zero_division=0``)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured. ``images``, ``labels`` and ``predicted`` are per image read
    (in order; names are the model's class names); the figures are computed from them."""

    model: str  # the run's name, or the card's
    base: str  # the card the model is built on
    data: str  # what was evaluated, in words
    classes: list[str]  # the true classes present, in the model's output order: the matrix's rows
    other: bool  # whether the matrix has the OTHER column
    images: list[str]
    labels: list[str]
    predicted: list[str]
    top: int  # k of the top-k accuracy
    in_top: int  # images whose true class is among the model's top k
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why it could not be read)
    recorded_accuracy: float | None = None  # the run's metrics.val_accuracy, when its own split was evaluated

    @property
    def correct(self) -> int:
        return sum(t == p for t, p in zip(self.labels, self.predicted))

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.images)

    @property
    def top_accuracy(self) -> float:
        return self.in_top / len(self.images)

    @property
    def columns(self) -> list[str]:
        return self.classes + ([OTHER] if self.other else [])

    def confusion(self) -> list[list[int]]:
        """``matrix[i][j]``: images of true class ``classes[i]`` predicted as ``columns[j]``."""
        col = {c: j for j, c in enumerate(self.classes)}
        matrix = [[0] * len(self.columns) for _ in self.classes]
        for t, p in zip(self.labels, self.predicted):
            matrix[col[t]][col.get(p, len(self.classes))] += 1
        return matrix

    def per_class(self) -> list[ClassScore]:
        matrix = self.confusion()
        out = []
        for i, name in enumerate(self.classes):
            hit, support, chosen = matrix[i][i], sum(matrix[i]), sum(row[i] for row in matrix)
            precision = hit / chosen if chosen else 0.0
            recall = hit / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out.append(ClassScore(name, precision, recall, f1, support))
        return out

    def macro(self) -> dict[str, float]:
        """The unweighted mean over classes of precision, recall and F1 (sklearn's ``average='macro'``)."""
        scores = self.per_class()
        return {k: sum(getattr(s, k) for s in scores) / len(scores) for k in ("precision", "recall", "f1")}

    def as_dict(self) -> dict:
        return {
            "model": self.model, "base": self.base, "data": self.data, "images": len(self.images),
            "accuracy": self.accuracy, "correct": self.correct, "top": self.top, "top_k_accuracy": self.top_accuracy,
            "recorded_accuracy": self.recorded_accuracy,
            "classes": [vars(s) for s in self.per_class()], "macro": self.macro(),
            "confusion": {"true": self.classes, "predicted": self.columns, "matrix": self.confusion()},
            "misclassified": [{"image": i, "label": t, "predicted": p}
                              for i, t, p in zip(self.images, self.labels, self.predicted) if t != p],
            "skipped": [{"image": i, "error": why} for i, why in self.skipped],
        }


def evaluate(model: torch.nn.Module, data: str | os.PathLike, *, val: bool = False, top: int = 5,
             batch_size: int = 32, workers: int | None = None, progress: Progress | None = None,
             engine: str | None = None, threads: int | None = None) -> Evaluation:
    """Evaluate ``model`` (a zoo.load model with class names: a run, ``head=[...]``, or an
    ImageNet classifier) on the labelled ImageFolder ``data``, or with ``val=True`` on the
    validation split the run made of ``data``. Unreadable images are skipped and listed.
    ``progress`` (zoo.util.progress) sees one task in images. ``engine`` runs the logits
    (zoo/model/engine.py; None: ``ZOO_ENGINE``, else auto), ONNX Runtime on ``threads``."""
    if top < 1:
        raise UsageError(f"top must be at least 1, not {top}")
    names = output_names(model)
    if names is None:
        raise UsageError("this model has no class names to match class folders with: load it with "
                         "head=[...] or evaluate a run")
    run = getattr(model, "run", None)
    if val:
        if run is None:
            raise UsageError(f"--val evaluates a run's own validation split; {model.card.name} is not a run: "
                             "evaluate a labelled folder instead (without --val)")
        folder, indices, what = validation_split(run, data)
    else:
        folder = all_images(data)
        indices, what = list(range(len(folder.files))), str(data)
    output = _output_index(model, names, folder, data)
    label = f"evaluate {run.name if run else model.card.name} on {what}"
    fast = logits_forward(model, engine, threads, progress)
    with Task(progress, "evaluate", label, len(indices), "images") as task:
        logits_top, best, read = _run(model, folder, indices, output, top, batch_size, workers, task, fast)
    if not read:
        raise UsageError(f"none of the {len(indices)} images of {what} could be read"
                         + (f" (first: {folder.skipped[0][0]}: {folder.skipped[0][1]})" if folder.skipped else ""))
    present = sorted({output[folder.labels[i]] for i in read})
    result = Evaluation(
        model=run.name if run else model.card.name, base=model.card.name, data=what,
        classes=[names[j] for j in present], other=len(present) < len(names),
        images=[str(folder.files[i]) for i in read], labels=[names[output[folder.labels[i]]] for i in read],
        predicted=[names[j] for j in best], top=min(top, len(names)), in_top=logits_top,
        skipped=[(str(p), why) for p, why in folder.skipped],
        recorded_accuracy=float(run.metrics["val_accuracy"]) if val else None)
    if val and len(result.images) != run.metrics.get("val_size", len(result.images)):
        raise _not_its_data(data, len(result.images), run)
    return result


def _output_index(model, names: list[str], folder: ImageFolder, data) -> list[int]:
    """Output index of each class of ``folder`` (by name); a folder the model does not know is an error."""
    index = class_indices(model, folder.classes)
    unknown = [c for c in folder.classes if c not in index]
    if unknown:
        if getattr(model, "class_names", None) is None and len(names) == IMAGENET_CLASSES:
            known = "ImageNet labels (a description such as 'tabby, tabby cat', or a WordNet id such as n02123045)"
        else:
            known = ", ".join(names[:20]) + (f", ... ({len(names)} classes)" if len(names) > 20 else "")
        raise UsageError(f"{data} has class folders the model does not know: {', '.join(unknown[:10])}"
                         f"{' ...' if len(unknown) > 10 else ''}; its classes are {known}")
    return [index[c] for c in folder.classes]


def _run(model, folder: ImageFolder, indices: list[int], output: list[int], top: int, batch_size: int,
         workers: int | None, task: Task, fast=None) -> tuple[int, list[int], list[int]]:
    """(images with the true class in the top k, best output per image read, indices of the images
    read): the images of ``indices`` through ``model`` (or ``fast``, ONNX Runtime's logits),
    decoded in DataLoader workers, in order."""
    target = torch.tensor(output)
    device = next(model.parameters()).device
    loader = image_loader(folder, indices, transforms(model), batch_size, workers)
    in_top, best, seen = 0, [], 0
    model.eval().to(memory_format=torch.channels_last)  # as extraction and training ran it (same figures)
    try:
        for x, y in loader:  # the loader records unreadable images in folder.skipped as it meets them
            with torch.inference_mode():
                logits = fast(x) if fast else model(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
            best += logits.argmax(-1).tolist()
            in_top += (logits.topk(min(top, logits.shape[-1]), -1).indices == target[y][:, None]).any(-1).sum().item()
            task.advance(len(y) + len(folder.skipped) - seen)
            seen = len(folder.skipped)
    finally:
        model.to(memory_format=torch.contiguous_format)  # hand the model back as it came
    task.advance(len(folder.skipped) - seen)
    unreadable = {p for p, _ in folder.skipped}
    return in_top, best, [i for i in indices if folder.files[i] not in unreadable]


def validation_split(run, data: str | os.PathLike) -> tuple[ImageFolder, list[int], str]:
    """(folder, validation indices, description) of ``data`` split as the run's card says
    ``zoo finetune`` split it; a card that does not say, or data that cannot be the run's, is an error."""
    training, name = run.training, run.name
    fraction, seed, recorded = training.get("val_split"), training.get("seed"), training.get("validation")
    if fraction is not None:
        if seed is None:
            raise UsageError(f"{name}'s card.toml records training.val_split but no training.seed: its "
                             "validation split cannot be re-created")
        made = split(data, val_split=fraction, seed=seed)
        if made.fraction is None:
            raise UsageError(f"{data} is split into folders ({made.how}), but {name} held out {fraction:.0%} of "
                             "its data: it is not the folder the run was trained on")
    elif recorded:  # no fraction: the run was validated on a folder
        made = split(data)
        if made.fraction is not None or Path(made.how).name != Path(str(recorded)).name:
            raise UsageError(f"{name}'s card.toml records no training.val_split, and its validation ({recorded}) "
                             f"is not a validation folder of {data}: evaluate the folder it was validated on, "
                             "without --val")
    else:
        raise UsageError(f"{name}'s card.toml records neither training.val_split nor training.validation: its "
                         "validation split cannot be re-created; evaluate a labelled folder without --val")
    if made.data.classes != list(run.classes):
        raise UsageError(f"{data} holds the classes {', '.join(made.data.classes)}, but {name} was trained on "
                         f"{', '.join(run.classes)}: it is not the run's data")
    if len(made.val) < run.metrics.get("val_size", 0):
        raise _not_its_data(data, len(made.val), run)
    return made.data, made.val, f"the validation split of {data} ({made.how})"


def _not_its_data(data, images: int, run) -> UsageError:
    return UsageError(f"the validation split of {data} holds {images} images, but {run.name} recorded "
                      f"{run.metrics['val_size']}: it is not the data the run was validated on")


def plot_confusion(result: Evaluation, out: str | os.PathLike) -> Path:
    """The confusion matrix as a PNG: each cell's count, shaded by its share of the true class
    (the row), so a class that is often mistaken stands out whatever its size."""
    out = check_plot(out)
    plt = pyplot()
    matrix = result.confusion()
    rows, cols = len(result.classes), len(result.columns)
    share = [[n / max(sum(row), 1) for n in row] for row in matrix]
    side = min(0.45 * max(rows, cols) + 2.5, 30)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=120)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if rows * cols <= 900:  # counts stay legible up to about 30 x 30
        for i, row in enumerate(matrix):
            for j, n in enumerate(row):
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if share[i][j] > 0.5 else "black" if n else "#b0b0b0")
    ax.set_xticks(range(cols), result.columns, rotation=90 if cols > 10 else 0, fontsize=8)
    ax.set_yticks(range(rows), result.classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="share of the true class")
    where = result.data if len(result.data) <= 70 else "..." + result.data[-67:]
    ax.set_title(f"{result.model}: accuracy {result.accuracy:.3f} ({result.correct}/{len(result.images)})\n{where}",
                 fontsize=10)
    fig.tight_layout()
    return save_png(fig, out)
