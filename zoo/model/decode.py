"""Logits -> labels: ``[(label, probability), ...]`` per image, like Keras' ``decode_predictions``.

``decode(model(x))`` needs no ``model=``: every model zoo.load builds (a card's, a run's, one with
``head=[...]``) carries a forward hook, :func:`tag_output`, that sets ``class_names`` on the tensor
the model returns (a Python attribute: no copy, no tensor subclass, a few microseconds a forward,
and an inference-mode tensor takes it too). A tensor made from that output (``logits[0]``,
``logits.softmax(-1)``, ``.to("cuda")``) is a new tensor without the tag: decode the output as it
comes, or pass ``model=`` or ``class_names=``.

Also here: the names of a model's outputs and the matching of folder names to them, which
``zoo predict`` and ``zoo evaluate`` use to read labels off class folders.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
from torch import nn

from zoo.errors import UsageError

#: how many outputs an ImageNet-1k classifier has (its labels come with timm)
IMAGENET_CLASSES = 1000


def tag_output(module: nn.Module, _inputs, output):
    """Forward hook (registered by zoo.load): the output tensor carries the model's class names,
    read from the module at call time, so a ``model.class_names`` set later counts too."""
    names = getattr(module, "class_names", None)
    if names is not None and isinstance(output, torch.Tensor) and output.ndim and output.shape[-1] == len(names):
        output.class_names = names
    return None  # the output itself is unchanged


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(descriptions, WordNet ids) of the ImageNet-1k classes, in output order, from timm (no download).
    A description two classes share (``crane``: the bird and the machine) gets its WordNet id, so
    that a name says which output it is."""
    from collections import Counter

    from timm.data import ImageNetInfo  # lazy: the ImageNet label table only for 1000-class heads

    info = ImageNetInfo()
    n = range(IMAGENET_CLASSES)
    descriptions, wnids = [info.index_to_description(i) for i in n], tuple(info.index_to_label_name(i) for i in n)
    shared = {d for d, k in Counter(descriptions).items() if k > 1}
    return tuple(f"{d} ({w})" if d in shared else d for d, w in zip(descriptions, wnids)), wnids


def output_names(model: nn.Module) -> list[str] | None:
    """The names of ``model``'s outputs: its own class names, else the ImageNet labels for a
    1000-class classifier, else None (a head made with an int or a module has no names)."""
    names = getattr(model, "class_names", None)
    if names is not None:
        return list(names)
    if getattr(model, "num_classes", None) == IMAGENET_CLASSES:
        return list(imagenet_names()[0])
    return None


def class_indices(model: nn.Module, folders: Sequence[str]) -> dict[str, int]:
    """Class folder name -> output index of ``model``, for the folders that name one of its classes
    (for an ImageNet classifier, by description or by WordNet id such as ``n02123045``); the
    others are left out, so ``len(result) < len(folders)`` says some folder is not a class of it."""
    names = output_names(model)
    if names is None:
        return {}
    index = {name: i for i, name in enumerate(names)}
    if getattr(model, "class_names", None) is None and len(names) == IMAGENET_CLASSES:
        index.update((wnid, i) for i, wnid in enumerate(imagenet_names()[1]))
    return {f: index[f] for f in folders if f in index}


def decode(logits: torch.Tensor, top: int = 5, class_names: Sequence[str] | None = None,
           model: nn.Module | None = None) -> list[list[tuple[str, float]]]:
    """``[(label, probability), ...]`` per image, best first. The names are ``class_names``, else
    ``model``'s, else those the model's output carries (:func:`tag_output`), else the ImageNet-1k
    labels timm ships for 1000 outputs."""
    names = class_names or (getattr(model, "class_names", None) if model is not None else None) \
        or getattr(logits, "class_names", None)
    if logits.ndim == 1:
        logits = logits.unsqueeze(0)
    n = logits.shape[-1]
    if names is None:
        if n != IMAGENET_CLASSES:
            raise UsageError(f"{n} classes and no class names: decode the model's output as it comes "
                             "(decode(model(x))), or pass model= or class_names= (or load with head=[...])")
        names = imagenet_names()[0]
    elif len(names) != n:
        raise UsageError(f"{len(names)} class names for {n} outputs")
    probs = logits.detach().float().softmax(-1)
    values, indices = probs.topk(min(top, n), dim=-1)
    return [[(names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())] for vs, ix in zip(values, indices)]
