"""Don't recompute the frozen part: the output of a fine-tune's frozen prefix, computed once and cached.

A partial fine-tune (the last K blocks open) or one frozen up to a boundary (``--freeze N``)
without augmentation feeds every epoch the same images through the same frozen layers. Here the
model is cut where its frozen layers end: the *prefix* runs once per image (eval mode, no grad),
its output is kept in the feature cache, per image like the features (the space: the base's
weights sha256, the cut, the transform; then each image's content sha256), and each epoch trains only the
*suffix* (the open blocks and the head) from it. On lite0 with the top quarter open the prefix is
about three quarters of the forward pass.

The cut is found, not declared per architecture: the model's children in order, ``nn.Sequential``
ones opened up, form a chain; the prefix is the longest run of fully frozen modules at its start.
Before it is used, the chain is checked against the model's own ``forward_features`` on a probe
batch; a model whose forward is not such a chain (extra ops between children, skips across
stages) is trained the plain way, and the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zoo.transfer.datasets import ImageFolder
from zoo.transfer.feature_cache import FeatureSet, RowReader
from zoo.transfer.features import extract

#: the chain must reproduce forward_features to this (float32, different op order in the cut)
CHECK_ATOL = 1e-4


@dataclass
class Cut:
    """The model split where its frozen layers end: ``prefix`` then ``suffix`` equal the model."""

    prefix: list[tuple[str, nn.Module]]
    suffix: "Suffix"

    @property
    def name(self) -> str:
        return self.prefix[-1][0]

    @property
    def key(self) -> str:
        """The prefix as the feature cache's layer: where it ends and how many modules it runs."""
        return f"prefix:{self.name}:{len(self.prefix)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, module in self.prefix:
            x = module(x)
        return x


class Suffix(nn.Module):
    """The open part of a model: the chain's modules after the cut, then the model's own head
    (``forward_head``). Holds the model's modules, not copies: training it trains the model."""

    def __init__(self, model: nn.Module, chain: list[tuple[str, nn.Module]], head: list[nn.Module]):
        super().__init__()
        self.chain = nn.ModuleList([m for _, m in chain])
        self.head = nn.ModuleList(head)  # registered so that DDP and the optimizer see the head's parameters
        self._forward_head = model.forward_head
        self._model = [model]  # in a list: not registered as a submodule (its prefix is not trained)

    def train(self, mode: bool = True) -> "Suffix":
        """Also the model's own flag: a ``forward_head`` that reads ``self.training`` (timm's
        head dropout, ``drop_rate > 0``) behaves as on the plain path."""
        super().train(mode)
        self._model[0].training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.chain:
            x = module(x)
        return self._forward_head(x)


def _chain(model: nn.Module, head: set[int]) -> list[tuple[str, nn.Module]]:
    out = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if id(child) in head:
                continue
            if isinstance(child, nn.Sequential) and len(child):
                walk(full + ".", child)
            else:
                out.append((full, child))

    walk("", model)
    return out


def _head_modules(model: nn.Module, sample: torch.Tensor) -> list[nn.Module]:
    """The top-level children ``forward_head`` calls (global pool, classifier, ...)."""
    called = []
    hooks = [m.register_forward_hook(lambda m, *_: called.append(m)) for m in model.children()]
    try:
        with torch.no_grad():
            model.forward_head(sample)
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(called))


def find_cut(model: nn.Module, input_size) -> tuple[Cut | None, str]:
    """Where the frozen layers of ``model`` end, checked on a probe batch; or None and why not."""
    if not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        return None, f"{type(model).__name__} has no forward_features/forward_head to cut between"
    was_training = model.training
    model.eval()
    try:
        probe = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            features = model.forward_features(probe)
        head = _head_modules(model, features)
        chain = _chain(model, {id(m) for m in head})
        frozen = 0
        for _, module in chain:
            if any(p.requires_grad for p in module.parameters()):
                break
            frozen += 1
        if frozen == 0:
            return None, "nothing before the open layers is frozen"
        if frozen == len(chain):
            return None, "every layer before the head is frozen (that run trains on cached features)"
        with torch.no_grad():
            x = probe
            for _, module in chain:
                x = module(x)
        if x.shape != features.shape or not torch.allclose(x, features, atol=CHECK_ATOL):
            return None, f"{type(model).__name__}'s forward is not a chain of its modules"
        return Cut(chain[:frozen], Suffix(model, chain[frozen:], head)), ""
    finally:
        model.train(was_training)


def cached_prefix(model: nn.Module, cut: Cut, data: ImageFolder, *, batch_size: int, workers: int | None,
                  progress=None, on_forward=None) -> FeatureSet:
    """The prefix's output for every readable image of ``data``, from the feature cache (per image,
    like the features: only images it does not hold go through the prefix)."""
    return extract(model, data, batch_size=batch_size, workers=workers, progress=progress, on_forward=on_forward,
                   layer=cut.key, pool="none", forward=cut.forward)


class CachedBatches:
    """(prefix output, label) batches of the given folder indices, read from the cache's shards;
    shuffled with a new seeded order every epoch when ``seed`` is given (training)."""

    def __init__(self, outputs: FeatureSet, indices: list[int], batch_size: int, seed: int | None = None):
        row = {f: r for r, f in enumerate(outputs.kept)}
        self.rows = [row[i] for i in indices if i in row]  # unreadable images have no row
        self.labels = torch.tensor([outputs.label_list[r] for r in self.rows], dtype=torch.int64)
        self.outputs, self.batch_size, self.seed, self.epoch = outputs, batch_size, seed, 0

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        order = torch.arange(len(self.rows))
        if self.seed is not None:
            order = torch.randperm(len(self.rows), generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
            self.epoch += 1
        where = self.outputs.where
        with RowReader() as reader:
            for part in order.split(self.batch_size):
                yield reader.rows([where[self.rows[i]] for i in part.tolist()], self.outputs.shape), self.labels[part]
