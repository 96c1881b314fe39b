"""Logits -> labels: ``[(label, probability), ...]`` per image, like Keras' ``decode_predictions``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from zoo.errors import UsageError


def decode(logits: torch.Tensor, top: int = 5, class_names: Sequence[str] | None = None,
           model: nn.Module | None = None) -> list[list[tuple[str, float]]]:
    """``[(label, probability), ...]`` per image, best first: the head's class names, else the
    ImageNet-1k labels timm ships (no download)."""
    if logits.ndim == 1:
        logits = logits.unsqueeze(0)
    names = class_names or (getattr(model, "class_names", None) if model is not None else None)
    n = logits.shape[-1]
    if names is None:
        if n != 1000:
            raise UsageError(f"{n} classes and no class names: pass class_names= (or load with head=[...])")
        from timm.data import ImageNetInfo  # lazy: the ImageNet label table only for 1000-class heads

        info = ImageNetInfo()
        names = [info.index_to_description(i) for i in range(n)]
    elif len(names) != n:
        raise UsageError(f"{len(names)} class names for {n} outputs")
    probs = logits.detach().float().softmax(-1)
    values, indices = probs.topk(min(top, n), dim=-1)
    return [[(names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())] for vs, ix in zip(values, indices)]
