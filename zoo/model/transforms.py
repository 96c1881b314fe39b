"""The card's preprocessing: timm's data config and the torchvision transform it makes.

The weights carry their own preprocessing (like torchvision's ``weights.transforms()``): resize,
center crop, interpolation, mean/std come from the card, and from a run's card for a fine-tuned head.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from zoo.cards.card import Card
from zoo.errors import UsageError
from zoo.model.resolve import card_for


def data_config(card: Card, input_size: Sequence[int] | None = None) -> dict[str, Any]:
    """The preprocessing the weights were trained with, as timm's ``resolve_data_config`` gives it."""
    return {"input_size": tuple(input_size or card.input_size), "interpolation": card.interpolation,
            "mean": tuple(card.mean), "std": tuple(card.std), "crop_pct": card.crop_pct, "crop_mode": card.crop_mode}


def transforms(name_or_model: str | Card | nn.Module, train: bool = False):
    """The card's preprocessing as a torchvision transform (timm ``create_transform``): resize,
    center crop, interpolation, mean/std; ``train=True`` adds timm's standard augmentation
    (random resized crop, horizontal flip)."""
    from timm.data import create_transform  # lazy: timm.data only when a transform is made

    if isinstance(name_or_model, nn.Module):
        config = getattr(name_or_model, "data_config", None)
        if config is None:
            raise UsageError("this model was not made by zoo.load; pass a model name instead")
    else:
        config = data_config(card_for(name_or_model))
    return create_transform(**config, is_training=train)
