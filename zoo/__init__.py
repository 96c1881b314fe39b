"""zoo: a model-zoo hub for transfer learning.

``import zoo`` is cheap: the public API is resolved lazily (PEP 562), so ``zoo list`` and
``zoo.card(...)`` never import torch, timm or huggingface_hub.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_LAZY = {
    "Card": "cards",
    "read_card": "cards",
    "card": "registry",
    "list_models": "registry",
    "register": "registry",
    "unregister": "registry",
    "get_registry": "registry",
    "load": "api",
    "transforms": "loader",
    "decode": "loader",
    "unfreeze": "loader",
    "finetune": "finetune",
    "publish": "publish",
    "load_run": "runs",
    "export_merged": "runs",
    "pull": "weights",
    "open_weights": "weights",
    "verify": "weights",
    "Cache": "cache",
    "ZooError": "errors",
    "UsageError": "errors",
    "UnknownModelError": "errors",
    "CardError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
