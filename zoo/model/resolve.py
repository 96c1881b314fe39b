"""A model reference -> a :class:`~zoo.cards.Card`: the registry first (name, alias, architecture
default), else timm's own pretrained config for a timm tag without a card (``convnext_tiny.fb_in22k_ft_in1k``,
``hf://timm/<tag>``), built into a card on the fly (metrics unknown, sha256 recorded on first download).

The one place a name becomes a card for the model stage; everything below takes the Card.
"""

from __future__ import annotations

from zoo.cards.card import Card, card_from_dict
from zoo.cards.registry import get_registry
from zoo.cards.uri import parse_uri


def card_for(name: str | Card) -> Card:
    """A card by name (registry resolution), else built on the fly from timm's pretrained config
    for a timm tag (``convnext_tiny.fb_in22k_ft_in1k``) or an ``hf://timm/<tag>`` repo."""
    if isinstance(name, Card):
        return name
    registry = get_registry()
    if not isinstance(name, str):
        registry.resolve(name)  # raises UsageError naming what was given
    card = registry.find(name.strip())
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
    import timm  # lazy: only for a tag no card names (the registry answers the rest without timm)
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
