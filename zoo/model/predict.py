"""``zoo.predict``: the top classes of image files through a model, in batches.

Images are decoded one by one (an unreadable one becomes a record with its error, and the others
still run), then classified a batch at a time under ``torch.inference_mode``. What ``zoo predict``
prints is these records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from zoo.errors import ImageError
from zoo.model.decode import decode
from zoo.model.images import image_files, open_rgb
from zoo.model.transforms import transforms
from zoo.util.progress import Progress, Task


@dataclass(frozen=True)
class Prediction:
    """One image: its path and ``[(label, probability), ...]`` best first, or why it was not classified."""

    image: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        out = {"image": self.image, "predictions": [{"label": l, "probability": p} for l, p in self.top]}
        if self.error is not None:
            out["error"] = self.error
        return out


def predict(model: torch.nn.Module, paths: list[str | os.PathLike], *, top: int = 5, batch_size: int = 16,
            progress: Progress | None = None) -> list[Prediction]:
    """One :class:`Prediction` per image of ``paths`` (files, or directories of images), in order.

    ``model`` is a zoo.load model (a card's or a run's: its own transform and class names are
    used). ``progress`` (zoo.util.progress) sees one task in images."""
    files = image_files(paths)
    tf = transforms(model)
    name = getattr(getattr(model, "run", None), "name", None) or model.card.name
    out: list[Prediction] = []
    model.eval()
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
                    logits = model(torch.stack(batch))
                tops = dict(zip(names, decode(logits, top=top, model=model)))
            for path in files[start:start + batch_size]:  # in the order given
                out.append(Prediction(path, tops[path]) if path in tops else Prediction(path, error=failed[path]))
            task.advance(len(batch) + len(failed))
    return out
