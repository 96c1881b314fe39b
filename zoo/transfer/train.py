"""Training loops: a head on cached features, or the model on images (partial and full fine-tuning).

Both report one :class:`Epoch` per epoch (train and validation loss and accuracy) to a callback,
take a seed, and leave the model in eval mode. Only ``finetune`` decides what to train; these
loops train what requires grad.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from zoo.util import distributed


@dataclass(frozen=True)
class Epoch:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    train_size: int
    val_size: int

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """The epoch as one aligned line (Keras' fit log), what a progress message carries as its text."""
        return (f"epoch {self.epoch:>3}: train loss {self.train_loss:.4f} acc {self.train_accuracy:.4f}  "
                f"val loss {self.val_loss:.4f} acc {self.val_accuracy:.4f}  ({self.seconds:.2f} s)")


def _optimizer(groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels, reduction="sum").item()
    return loss, (logits.argmax(-1) == labels).sum().item()


def train_head(head: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
               y_val: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int,
               weight_decay: float = 1e-4, on_epoch: Callable[[Epoch], None] | None = None) -> list[Epoch]:
    """Train ``head`` (the classifier) on pooled features: minibatch AdamW and cross-entropy.
    Costs milliseconds per epoch: the backbone never runs."""
    import time

    gen = torch.Generator().manual_seed(seed)  # the same order on every rank
    opt = _optimizer([{"params": [p for p in head.parameters() if p.requires_grad], "lr": lr}], weight_decay)
    # under torchrun each rank takes its contiguous part of every batch; DDP averages the gradients
    trained = distributed.data_parallel(head)
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        head.train()
        loss_sum = correct = 0.0
        for batch in torch.randperm(len(x_train), generator=gen).split(batch_size):
            split = distributed.active() and len(batch) >= distributed.world_size()
            part = distributed.shard(len(batch)) if split else range(len(batch))
            idx = batch[part.start:part.stop]
            # a last batch smaller than the world: every rank steps on all of it, rank 0 alone counts it
            counts = split or distributed.is_main()
            logits = trained(x_train[idx])
            loss = nn.functional.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if counts:
                loss_sum += loss.item() * len(idx)
                correct += (logits.argmax(-1) == y_train[idx]).sum().item()
        if distributed.active():  # epoch figures over all ranks' parts
            loss_sum, correct = (sum(v) for v in zip(*distributed.gather_objects((loss_sum, correct))))
        head.eval()
        with torch.no_grad():
            val_loss, val_correct = _scores(head(x_val), y_val) if len(x_val) else (float("nan"), 0)
        history.append(_epoch(epoch, loss_sum, correct, len(x_train), val_loss, val_correct, len(x_val), t0))
        if on_epoch:
            on_epoch(history[-1])
    return history


def _epoch(epoch, loss_sum, correct, n, val_loss, val_correct, n_val, t0) -> Epoch:
    import time

    return Epoch(epoch, loss_sum / max(n, 1), correct / max(n, 1), val_loss / max(n_val, 1),
                 val_correct / max(n_val, 1), time.perf_counter() - t0, int(n), int(n_val))


def train_model(model: nn.Module, train_loader, val_loader, *, epochs: int, groups: list[dict],
                weight_decay: float = 1e-4, on_epoch: Callable[[Epoch], None] | None = None,
                on_batch: Callable[[int], None] | None = None) -> list[Epoch]:
    """Train the parameters of ``model`` that require grad on images (loaders yield (x, y));
    ``groups`` are the optimizer's parameter groups (the head at a higher learning rate).

    Under torchrun the loaders hold this rank's shard: the model trains under
    DistributedDataParallel, whose ``join`` lets a rank with one batch fewer finish cleanly, and
    the epoch's figures are summed over ranks."""
    import contextlib
    import time

    opt = _optimizer(groups, weight_decay)
    trained = distributed.data_parallel(model)
    joined = trained.join if distributed.active() else contextlib.nullcontext
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum = correct = n = 0.0
        with joined():
            for x, y in train_loader:
                logits = trained(x.contiguous(memory_format=torch.channels_last))
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(-1) == y).sum().item()
                n += len(y)
                if on_batch:
                    on_batch(len(y))
        model.eval()
        val_loss = val_correct = n_val = 0.0
        with torch.inference_mode():
            for x, y in val_loader:
                loss, right = _scores(model(x.contiguous(memory_format=torch.channels_last)), y)
                val_loss, val_correct, n_val = val_loss + loss, val_correct + right, n_val + len(y)
                if on_batch:
                    on_batch(len(y))
        if distributed.active():
            parts = distributed.gather_objects((loss_sum, correct, n, val_loss, val_correct, n_val))
            loss_sum, correct, n, val_loss, val_correct, n_val = (sum(v) for v in zip(*parts))
        history.append(_epoch(epoch, loss_sum, correct, n, val_loss, val_correct, n_val, t0))
        if on_epoch:
            on_epoch(history[-1])
    return history
