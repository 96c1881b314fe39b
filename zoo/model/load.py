"""The one place a card meets its weights: ``load(card)`` builds the timm model with them.

``load`` builds the timm architecture and hands the verified safetensors file to timm's own
``load_pretrained`` (through ``pretrained_cfg['file']``), so timm does what it does for its
hub weights: drop the classifier when the class count differs, adapt input convs, resample a
ViT's position embeddings for another input size. zoo adds only the card, the verified file and
the head/freeze options; a warm load costs what timm + safetensors cost (bench/bench_load.py).
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import timm
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from zoo.cards.card import Card
from zoo.errors import UsageError
from zoo.model import heads
from zoo.model.decode import tag_output
from zoo.model.resolve import card_for
from zoo.model.transforms import data_config
from zoo.util import logs
from zoo.weights.cache import Cache
from zoo.weights.pull import ensure

POOLS = {"avg": "avg", "max": "max", "avgmax": "avgmax", None: ""}
#: where timm logs while it builds a model and loads its weights (a filter works on the logger a record is made on)
TIMM_LOGGERS = ("timm.models._builder", "timm.models._helpers", "timm.models._features", "timm.models._hub")


def pretrained_cfg(card: Card) -> dict[str, Any]:
    """timm's pretrained config for the card (its own preprocessing and classes win)."""
    base = get_pretrained_cfg(card.architecture)
    cfg = base.to_dict() if base is not None else {}
    cfg.update(architecture=card.architecture, tag=card.tag, hf_hub_id=card.hub_repo,
               input_size=tuple(card.input_size), interpolation=card.interpolation, crop_pct=card.crop_pct,
               crop_mode=card.crop_mode, mean=tuple(card.mean), std=tuple(card.std), num_classes=card.num_classes)
    if card.test_input_size:
        cfg["test_input_size"] = tuple(card.test_input_size)
    return cfg


def load(name: str | Card, head: int | Sequence[str] | nn.Module | None = None, pretrained: bool = True,
         freeze: str | int | None = None, pool: str | None = "avg", features: bool = False,
         input_size: tuple[int, int, int] | None = None, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, out_indices: Sequence[int] | None = None) -> nn.Module:
    """A timm model with the card's verified weights, a new head if asked, part of it frozen if asked.

    - ``head``: None keeps the ImageNet classifier; an int ``n`` puts a fresh ``n``-way linear head
      (``0``: none, the model returns pooled features); a list of class names does the same and
      sets ``model.class_names``; an ``nn.Module`` replaces the classifier.
    - ``pool``: "avg", "max", "avgmax", or None for the spatial feature map (then ``head`` must be 0).
    - ``freeze``: "backbone", "bn" or a number of parameter-owning modules (see zoo.heads).
    - ``features=True``: intermediate feature maps (timm ``features_only``, ``out_indices``).
    - ``input_size=(3, H, W)``: another resolution where the architecture allows it.

    The model comes back in eval mode (call ``.train()`` to fine-tune), with ``model.card`` and
    ``model.data_config`` (the preprocessing it was trained with, at ``input_size``). A name is
    resolved here, once (:func:`zoo.model.resolve.card_for`); callers that hold a Card pass it.
    """
    card = card_for(name)
    if pool not in POOLS:
        raise UsageError(f"pool must be one of 'avg', 'max', 'avgmax' or None, not {pool!r}")
    class_names = None
    module_head = None
    if head is None:
        num_classes = card.num_classes
    elif isinstance(head, nn.Module):
        num_classes, module_head = 0, head
    elif isinstance(head, bool) or not isinstance(head, (int, list, tuple)):
        raise UsageError(f"head must be None, a number of classes, a list of class names or an nn.Module, not {head!r}")
    elif isinstance(head, int):
        if head < 0:
            raise UsageError(f"head={head}: a number of classes must be >= 0")
        num_classes = head
    else:
        class_names = [str(c) for c in head]
        if len(class_names) < 1 or len(set(class_names)) != len(class_names):
            raise UsageError("head as class names needs at least one name and no duplicates")
        num_classes = len(class_names)
    if pool is None and num_classes and not features:
        raise UsageError("pool=None returns the spatial feature map; it takes head=0")

    kwargs: dict[str, Any] = {"num_classes": num_classes, "global_pool": POOLS[pool]}
    if features:
        kwargs = {"features_only": True}
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
    if input_size is not None:
        input_size = _check_input_size(card, input_size)
        if _fixed_size(card):
            kwargs["img_size"] = input_size[1:]
    cfg = pretrained_cfg(card)
    if pretrained:
        cache = Cache()
        path = ensure(card, cache)  # verified; under torchrun rank 0 fetches, the others then open it
        # timm reads a ".safetensors" file with safetensors (never unpickles it); passing the tensors
        # in the cfg instead would make timm deep-copy them (30 ms for lite0, bench/bench_load.py)
        cfg.update(source="", file=str(cache.safetensors_view(path.name)))
    with logs.third_party_quiet(*TIMM_LOGGERS):  # zoo changes the head on purpose: timm's key warnings are noise
        model = timm.create_model(card.architecture, pretrained=pretrained, pretrained_cfg=cfg, **kwargs)
    if input_size is not None:
        _probe_forward(model, card, input_size)
    if module_head is not None:
        heads.set_head(model, module_head)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    model.eval()
    heads.freeze(model, freeze)
    model.card = card
    # the identity of the bytes actually loaded (also for cards that pin no sha256): feature caches key on it
    model.weights_sha256 = path.name if pretrained else None
    model.class_names = class_names
    # decode(model(x)) finds the class names on the output; torch.jit.script cannot compile the
    # hook: model.class_names_hook.remove() first (torch.compile and torch.export take it as it is)
    model.class_names_hook = model.register_forward_hook(tag_output)
    model.data_config = data_config(card, input_size)
    return model


def _fixed_size(card: Card) -> bool:
    cfg = get_pretrained_cfg(card.architecture)
    return bool(cfg and cfg.fixed_input_size)


def _check_input_size(card: Card, input_size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(int(x) for x in input_size)
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"input_size must be (channels, height, width), got {tuple(input_size)}")
    if size[0] != card.input_size[0]:
        raise UsageError(f"{card.name} takes {card.input_size[0]} input channels, not {size[0]}")
    return size  # type: ignore[return-value]


def _probe_forward(model: nn.Module, card: Card, size: tuple[int, int, int]) -> None:
    """Run the model on the meta device (no compute) at ``size``; if the architecture cannot take it,
    find the smallest square size it can and say so."""

    def works(h: int, w: int) -> bool:
        try:
            with torch.no_grad():
                probe = copy.deepcopy(model).to("meta").eval()
                probe(torch.empty(1, size[0], h, w, device="meta"))
            return True
        except Exception:  # deliberate: any failure of the architecture at this size means it cannot take it
            return False

    if works(size[1], size[2]):
        return
    lo, hi = 1, max(card.input_size[1:])
    if not works(hi, hi):
        raise UsageError(f"{card.name} cannot run at {size[1]}x{size[2]}")
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if works(mid, mid) else (mid + 1, hi)
    raise UsageError(f"input size {size[1]}x{size[2]} is too small for {card.architecture}: the minimum is {lo}x{lo}")
