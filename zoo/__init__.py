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
    "Card": "cards.card",
    "read_card": "cards.card",
    "card": "cards.registry",
    "list_models": "cards.registry",
    "register": "cards.registry",
    "unregister": "cards.registry",
    "get_registry": "cards.registry",
    "load": "api",
    "transforms": "model.transforms",
    "decode": "model.decode",
    "unfreeze": "model.heads",
    "finetune": "transfer.finetune",
    "extract_to_file": "transfer.feature_files",
    "publish": "transfer.publish",
    "load_run": "transfer.runs",
    "export_merged": "transfer.exports",
    "pull": "weights.pull",
    "attach": "weights.pull",
    "open_weights": "weights.pull",
    "verify": "weights.verify",
    "Cache": "weights.cache",
    "resolve": "api",
    "predict": "api",
    "evaluate": "api",
    "fetch": "api",
    "engine": "api",
    "Engine": "model.engine",
    "export_onnx": "transfer.exports",
    "Prediction": "model.predict",
    "Predictions": "model.predict",
    "Event": "util.progress",
    "ensure": "weights.pull",
    "pin": "weights.verify",
    # every exception of zoo/errors.py
    "ZooError": "errors",
    "UsageError": "errors",
    "UnknownModelError": "errors",
    "AmbiguousModelError": "errors",
    "UriError": "errors",
    "InvalidRepoId": "errors",
    "MissingExtra": "errors",
    "CardError": "errors",
    "FieldError": "errors",
    "ImageError": "errors",
    "WeightsError": "errors",
    "CacheError": "errors",
    "CorruptBlobError": "errors",
    "SourceError": "errors",
    "SourceNotFound": "errors",
    "OfflineError": "errors",
    "ConversionError": "errors",
    "PullError": "errors",
    "BundleError": "errors",
    "EngineError": "errors",
    "RunError": "errors",
    "PublishError": "errors",
    "StorageError": "errors",
    "ObjectNotFound": "errors",
    "PreconditionFailed": "errors",
    "HubError": "errors",
    "MalformedRequest": "errors",
    "EntryNotFound": "errors",
    "RepoNotFound": "errors",
    "RevisionNotFound": "errors",
    "RefExists": "errors",
    "Forbidden": "errors",
    "GatedRepo": "errors",
    "DiscussionNotFound": "errors",
    "NotOpen": "errors",
    "CommitConflict": "errors",
    "RequestTooLarge": "errors",
    "XetObjectError": "errors",
    "XetTokenError": "errors",
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
