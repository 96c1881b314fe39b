"""Head replacement and freezing, in one place for every architecture (never per model).

The freezing unit is the card's ``depth`` unit: a module that directly owns parameters, counted in
``named_modules()`` order (which for timm models follows the forward pass). Keras counts layers
differently: its VGG16 tutorial's ``model.layers[:15]`` includes the input and pooling layers and
so freezes conv blocks 1-4, which is ``freeze=10`` here.
"""

from __future__ import annotations

import types
from typing import Iterable

import torch
from torch import nn

from zoo.errors import UsageError

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


def param_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that directly own parameters, in ``named_modules()`` order (the ``depth`` unit)."""
    return [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def depth(model: nn.Module) -> int:
    """The card's ``depth``: how many modules directly own parameters (the Keras table's count)."""
    return len(param_modules(model))


def classifier_names(model: nn.Module) -> list[str]:
    """Dotted names of the classifier module(s), from timm's pretrained config (e.g. ``head.fc``)."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or []
    return [names] if isinstance(names, str) else list(names)


def set_head(model: nn.Module, head: nn.Module) -> None:
    """Put a user's ``nn.Module`` where timm's classifier is (the model's forward calls it there)."""
    names = classifier_names(model)
    if len(names) != 1:
        raise UsageError(f"{type(model).__name__} has {len(names)} classifiers; pass head as an int instead of a module")
    parent_name, _, attr = names[0].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, head)


def _stay_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    # a frozen BN keeps using (and never updates) its running statistics, even in model.train()
    return nn.Module.train(self, False)


def _freeze_module(module: nn.Module) -> None:
    for p in module.parameters(recurse=False):
        p.requires_grad_(False)
    if isinstance(module, _BN_TYPES):
        module.train = types.MethodType(_stay_eval, module)
        module.eval()


def _unfreeze_module(module: nn.Module) -> None:
    for p in module.parameters(recurse=False):
        p.requires_grad_(True)
    if "train" in module.__dict__:
        del module.train  # back to nn.Module.train


def freeze(model: nn.Module, spec: str | int | None) -> nn.Module:
    """Freeze part of ``model`` in place and return it.

    ``"backbone"``: everything but the classifier. ``N`` (int): the first N parameter-owning
    modules. ``"bn"``: only batch-norm layers (statistics and affine weights). Frozen parameters
    get ``requires_grad=False``; frozen BN layers stay in eval mode under ``model.train()``.
    """
    if spec is None:
        return model
    modules = param_modules(model)
    if spec == "backbone":
        head = classifier_names(model)
        chosen = [m for n, m in modules if not _is_head(n, head)]
    elif spec == "bn":
        chosen = [m for _, m in modules if isinstance(m, _BN_TYPES)]
    elif isinstance(spec, int) and not isinstance(spec, bool):
        if not 0 <= spec <= len(modules):
            raise UsageError(f"freeze={spec}: the model has {len(modules)} parameter-owning modules (its depth)")
        chosen = [m for _, m in modules[:spec]]
    else:
        raise UsageError(f"freeze must be None, 'backbone', 'bn' or a number of modules, not {spec!r}")
    for module in chosen:
        _freeze_module(module)
    return model


def _is_head(name: str, head: Iterable[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in head)


def blocks(model: nn.Module) -> list[list[str]]:
    """The model's blocks, input to output: timm's coarse ``group_matcher`` groups (module names),
    without the classifier. The unit of ``unfreeze(last=K)`` and of partial fine-tuning."""
    from timm.models import group_modules

    if not hasattr(model, "group_matcher"):
        raise UsageError(f"{type(model).__name__} defines no blocks (timm group_matcher); use freeze=N instead")
    head = classifier_names(model)
    groups = group_modules(model, model.group_matcher(coarse=True), reverse=False)
    # the head is its own group in timm's matchers: it is always opened, and not one of the blocks
    return [names for _, names in sorted(groups.items()) if not all(_is_head(n, head) for n in names)]


def unfreeze(model: nn.Module, last: int) -> nn.Module:
    """Open the last ``last`` blocks (see :func:`blocks`) and the head, for a second fine-tuning
    stage; their BN layers train again."""
    ordered = blocks(model)
    if not 0 <= last <= len(ordered):
        raise UsageError(f"unfreeze(last={last}): the model has {len(ordered)} blocks")
    opened = set(classifier_names(model))
    for names in ordered[len(ordered) - last:] if last else []:
        opened.update(names)
    for name, module in param_modules(model):
        if _is_head(name, opened):
            _unfreeze_module(module)
            module.train(model.training)  # an opened BN follows the model's mode again
    return model


def trainable(model: nn.Module) -> Iterable[torch.nn.Parameter]:
    """The parameters an optimizer should get."""
    return (p for p in model.parameters() if p.requires_grad)


def imagenet_classifier(model: nn.Module, weights_file) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The base's own ImageNet classifier (weight, bias), read from its weights file (a model loaded
    with a new head no longer holds it), or None if it has none of the model's feature size. What
    measures similarity to ImageNet (zoo.transfer.strategy) and gives LEEP and NCE their source
    predictions (zoo.compare.scores) without another forward pass."""
    from safetensors import safe_open

    names = classifier_names(model)
    if len(names) != 1:
        return None
    with safe_open(str(weights_file), "pt") as f:
        keys = set(f.keys())
        w, b = f"{names[0]}.weight", f"{names[0]}.bias"
        if w not in keys or b not in keys or f.get_slice(w).get_shape()[-1] != model.num_features:
            return None
        return f.get_tensor(w), f.get_tensor(b)
