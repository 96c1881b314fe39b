"""``zoo.load``, ``zoo.transforms`` and ``zoo.decode``: the one place a card meets its weights.

``load`` builds the timm architecture and hands the verified safetensors file to timm's own
``load_pretrained`` (through ``pretrained_cfg['file']``), so timm does what it does for its
hub weights: drop the classifier when the class count differs, adapt input convs, resample a
ViT's position embeddings for another input size. zoo adds only the card, the verified file and
the head/freeze options; a warm load costs what timm + safetensors cost (bench/bench_load.py).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo.model import heads
from zoo.cards.card import Card, card_from_dict
from zoo.errors import UsageError, ZooError
from zoo.cards.registry import get_registry
from zoo.cards.uri import parse_uri

POOLS = {"avg": "avg", "max": "max", "avgmax": "avgmax", None: ""}


def card_for(name: str | Card) -> Card:
    """A card by name (registry resolution), else built on the fly from timm's pretrained config
    for a timm tag (``convnext_tiny.fb_in22k_ft_in1k``) or an ``hf://timm/<tag>`` repo."""
    if isinstance(name, Card):
        return name
    registry = get_registry()
    card = registry.find(name.strip()) if isinstance(name, str) else None
    if card is not None:
        return card
    tag = name.strip()
    if tag.startswith("hf://"):
        uri = parse_uri(tag)
        tag = uri.repo_id.split("/", 1)[1]
    card = _card_from_timm(tag)
    if card is None:
        registry.resolve(name)  # raises UnknownModelError with 'did you mean'
    return card


def _card_from_timm(tag: str) -> Card | None:
    import timm
    from timm.models import get_pretrained_cfg

    if "." not in tag or tag not in timm.list_pretrained(tag):
        return None
    cfg = get_pretrained_cfg(tag).to_dict()
    if not cfg.get("hf_hub_id"):
        return None
    arch, _, label = tag.partition(".")
    source = f"hf://{cfg['hf_hub_id']}/{cfg.get('hf_hub_filename') or 'model.safetensors'}"
    data = {
        "name": tag.lower(), "architecture": arch, "tag": label, "hub_repo": cfg["hf_hub_id"],
        "license": cfg.get("license") or "unknown", "sources": [{"uri": source}],
        "input_size": list(cfg["input_size"]), "interpolation": cfg.get("interpolation") or "bicubic",
        "crop_pct": cfg.get("crop_pct") or 0.875, "crop_mode": cfg.get("crop_mode") or "center",
        "mean": list(cfg["mean"]), "std": list(cfg["std"]), "num_classes": cfg.get("num_classes") or 0,
        "notes": "built on the fly from timm's pretrained config: no card, metrics unknown; "
                 "the sha256 is recorded on first download",
        "provenance": {"preprocessing": f"timm {timm.__version__} pretrained config of {tag}"},
    }
    return card_from_dict(data)


def pretrained_cfg(card: Card) -> dict[str, Any]:
    """timm's pretrained config for the card (its own preprocessing and classes win)."""
    from timm.models import get_pretrained_cfg

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
    ``model.data_config`` (the preprocessing it was trained with, at ``input_size``).
    """
    import timm

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
        from zoo.weights.cache import Cache
        from zoo.weights.pull import open_weights, pull

        from zoo.util.distributed import main_first

        cache = Cache()

        def weights():
            try:
                return open_weights(card, cache)
            except ZooError:
                return pull(card, cache=cache)  # not cached yet: fetch (fails with what to do when offline)

        path = main_first(weights)  # under torchrun: rank 0 fetches and verifies, the others then open it
        # timm reads a ".safetensors" file with safetensors (never unpickles it); passing the tensors
        # in the cfg instead would make timm deep-copy them (30 ms for lite0, bench/bench_load.py)
        cfg.update(source="", file=str(cache.safetensors_view(path.name)))
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
    model.data_config = data_config(card, input_size)
    return model


def _fixed_size(card: Card) -> bool:
    from timm.models import get_pretrained_cfg

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
    import copy

    def works(h: int, w: int) -> bool:
        try:
            with torch.no_grad():
                probe = copy.deepcopy(model).to("meta").eval()
                probe(torch.empty(1, size[0], h, w, device="meta"))
            return True
        except Exception:
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


def data_config(card: Card, input_size: Sequence[int] | None = None) -> dict[str, Any]:
    """The preprocessing the weights were trained with, as timm's ``resolve_data_config`` gives it."""
    return {"input_size": tuple(input_size or card.input_size), "interpolation": card.interpolation,
            "mean": tuple(card.mean), "std": tuple(card.std), "crop_pct": card.crop_pct, "crop_mode": card.crop_mode}


def transforms(name_or_model: str | Card | nn.Module, train: bool = False):
    """The card's preprocessing as a torchvision transform (timm ``create_transform``): resize,
    center crop, interpolation, mean/std; ``train=True`` adds timm's standard augmentation
    (random resized crop, horizontal flip)."""
    from timm.data import create_transform

    if isinstance(name_or_model, nn.Module):
        config = getattr(name_or_model, "data_config", None)
        if config is None:
            raise UsageError("this model was not made by zoo.load; pass a model name instead")
    else:
        config = data_config(card_for(name_or_model))
    return create_transform(**config, is_training=train)


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
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        names = [info.index_to_description(i) for i in range(n)]
    elif len(names) != n:
        raise UsageError(f"{len(names)} class names for {n} outputs")
    probs = logits.detach().float().softmax(-1)
    values, indices = probs.topk(min(top, n), dim=-1)
    return [[(names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist())] for vs, ix in zip(values, indices)]


def unfreeze(model: nn.Module, last: int) -> nn.Module:
    """Open the last ``last`` blocks and the head for a second stage (see zoo.heads.unfreeze)."""
    return heads.unfreeze(model, last)
