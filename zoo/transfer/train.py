"""Training loops: a head on cached features, or the model on images (partial and full fine-tuning).

Both loops share one :class:`Recipe` (what Keras spreads over ``compile`` and its callbacks): the
learning-rate schedule (constant or cosine, with linear warm-up, stepped every batch), label
smoothing, class weights, and which validation figure decides the best epoch. Every epoch is
reported as an :class:`Epoch`; the best epoch's weights are kept in memory and restored at the end
(Keras' ``ModelCheckpoint(save_best_only=True)`` + ``EarlyStopping(restore_best_weights=True)``),
and ``patience`` stops a run that no longer improves. Only ``finetune`` decides what to train;
these loops train what requires grad and leave the model in eval mode.

The validation loss is the plain cross-entropy, whatever the training loss (smoothed, weighted):
the figure a run is judged by means the same thing in every run.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable

import torch
from torch import nn

from zoo.errors import UsageError
from zoo.transfer.strategy import MONITORS, SCHEDULES
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
    lr: float = 0.0  # the first parameter group's rate at the end of the epoch
    stage: int = 1  # two-stage runs: 1 (head on features), 2 (open blocks on images)
    improved: bool = False  # the monitored figure improved: this epoch is the best so far

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """The epoch as one aligned line (Keras' fit log), what a progress message carries as its text."""
        stage = f"stage {self.stage} " if self.stage > 1 else ""
        return (f"{stage}epoch {self.epoch:>3}: train loss {self.train_loss:.4f} acc {self.train_accuracy:.4f}  "
                f"val loss {self.val_loss:.4f} acc {self.val_accuracy:.4f}  lr {self.lr:.2e}  "
                f"({self.seconds:.2f} s){'  best' if self.improved else ''}")


@dataclass(frozen=True)
class Recipe:
    """How to train, beside what: checked once, recorded in the run card."""

    epochs: int
    schedule: str = "constant"
    warmup: float = 0.0  # epochs of linear warm-up (fractions allowed), stepped per batch
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None  # per class, for the training loss
    monitor: str = "val_loss"
    patience: int | None = None  # stop after this many epochs without improvement
    weight_decay: float = 1e-4

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.monitor not in MONITORS:
            raise UsageError(f"--monitor must be one of {', '.join(MONITORS)}, not {self.monitor!r}")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.warmup < 0 or self.warmup >= self.epochs and self.warmup > 0:
            raise UsageError(f"--warmup {self.warmup} must be shorter than the {self.epochs} epochs it warms up")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss: cross-entropy, smoothed and class-weighted as the recipe says."""
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, dtype=logits.dtype)
        return nn.functional.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing)

    def scheduler(self, opt: torch.optim.Optimizer, steps_per_epoch: int):
        """Per-batch LambdaLR: linear warm-up from 1/steps to 1, then constant or half a cosine to 0."""
        warm = round(self.warmup * steps_per_epoch)
        total = max(self.epochs * steps_per_epoch, 1)

        def factor(step: int) -> float:  # step: batches done so far
            if step < warm:
                return (step + 1) / warm
            if self.schedule == "constant":
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(total - warm, 1))))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def as_dict(self) -> dict:
        out = {"schedule": self.schedule, "warmup_epochs": self.warmup, "label_smoothing": self.label_smoothing,
               "monitor": self.monitor, "weight_decay": self.weight_decay}
        if self.patience is not None:
            out["patience"] = self.patience
        if self.class_weights is not None:
            out["class_weights"] = [round(w, 6) for w in self.class_weights]
        return out


def balanced_weights(labels: Iterable[int], num_classes: int) -> tuple[float, ...]:
    """scikit-learn's ``class_weight="balanced"``: n / (classes * count of the class)."""
    counts = [0] * num_classes
    for y in labels:
        counts[int(y)] += 1
    n = sum(counts)
    return tuple(n / (num_classes * c) if c else 0.0 for c in counts)


@dataclass
class Best:
    """The best epoch so far by the recipe's monitor, and the trained tensors as they were then."""

    monitor: str
    patience: int | None
    epoch: Epoch | None = None
    state: dict | None = None
    since: int = 0  # epochs since the last improvement
    restored: bool = False
    stopped: bool = False  # patience ran out (in either stage)
    history: list = field(default_factory=list)

    def better(self, e: Epoch) -> bool:
        if self.epoch is None:
            return True
        if self.monitor == "val_loss":
            return e.val_loss < self.epoch.val_loss
        return e.val_accuracy > self.epoch.val_accuracy

    def offer(self, e: Epoch, module: nn.Module) -> tuple[Epoch, bool]:
        """Record epoch ``e`` (snapshotting ``module``'s trained tensors if it is the best);
        returns the epoch as reported (``improved`` set) and whether to stop early."""
        improved = self.better(e)
        if improved:
            e = replace(e, improved=True)
            self.epoch, self.state, self.since = e, trained_state(module), 0
        else:
            self.since += 1
        self.history.append(e)
        stop = self.patience is not None and self.since >= self.patience
        self.stopped = self.stopped or stop
        return e, stop

    def restore(self, module: nn.Module) -> None:
        """Put the best epoch's tensors back (nothing to do when the last epoch was the best)."""
        if self.state is not None and self.history and self.history[-1] is not self.epoch:
            module.load_state_dict(self.state, strict=False)
            self.restored = True


def trained_state(module: nn.Module) -> dict:
    """Copies of what training changes: parameters that require grad and the buffers (BN statistics)
    of the modules that own them. A frozen module's tensors are the base's and never change."""
    state = {}
    for name, sub in module.named_modules():
        params = list(sub.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in params):
            continue
        prefix = f"{name}." if name else ""
        for key, t in [*params, *sub.named_buffers(recurse=False)]:
            state[prefix + key] = t.detach().clone()
    return state


def _optimizer(groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels, reduction="sum").item()
    return loss, (logits.argmax(-1) == labels).sum().item()


def train_head(head: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
               y_val: torch.Tensor, *, recipe: Recipe, lr: float, batch_size: int, seed: int,
               on_epoch: Callable[[Epoch], None] | None = None) -> Best:
    """Train ``head`` (the classifier) on pooled features: minibatch AdamW. Costs milliseconds per
    epoch: the backbone never runs. Returns the :class:`Best` record (history included), with the
    best epoch's weights restored."""
    with _one_thread():
        return _train_head(head, x_train, y_train, x_val, y_val, recipe, lr, batch_size, seed, on_epoch)


@contextlib.contextmanager
def _one_thread():
    """A linear head's steps are too small to split across threads: with a second thread, every
    step waits on the other (17x slower for lite0's 1280 x 10 head on a 2-core machine that has
    other work, and no faster on an idle one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_head(head, x_train, y_train, x_val, y_val, recipe: Recipe, lr, batch_size, seed, on_epoch) -> Best:
    gen = torch.Generator().manual_seed(seed)  # the same order on every rank
    opt = _optimizer([{"params": [p for p in head.parameters() if p.requires_grad], "lr": lr}], recipe.weight_decay)
    sched = recipe.scheduler(opt, math.ceil(len(x_train) / batch_size))
    # under torchrun each rank takes its contiguous part of every batch; DDP averages the gradients
    trained = distributed.data_parallel(head)
    best = Best(recipe.monitor, recipe.patience)
    for epoch in range(1, recipe.epochs + 1):
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
            loss = recipe.loss(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if counts:
                loss_sum += loss.item() * len(idx)
                correct += (logits.argmax(-1) == y_train[idx]).sum().item()
        if distributed.active():  # epoch figures over all ranks' parts
            loss_sum, correct = (sum(v) for v in zip(*distributed.gather_objects((loss_sum, correct))))
        head.eval()
        with torch.no_grad():
            val_loss, val_correct = _scores(head(x_val), y_val) if len(x_val) else (float("nan"), 0)
        e = _epoch(epoch, loss_sum, correct, len(x_train), val_loss, val_correct, len(x_val), t0, opt)
        if _report(best, e, head, on_epoch):
            break
    best.restore(head)
    head.eval()
    return best


def _report(best: Best, e: Epoch, module: nn.Module, on_epoch) -> bool:
    e, stop = best.offer(e, module)
    if on_epoch:
        on_epoch(e)
    return stop


def _epoch(epoch, loss_sum, correct, n, val_loss, val_correct, n_val, t0, opt) -> Epoch:
    return Epoch(epoch, loss_sum / max(n, 1), correct / max(n, 1), val_loss / max(n_val, 1),
                 val_correct / max(n_val, 1), time.perf_counter() - t0, int(n), int(n_val),
                 lr=float(opt.param_groups[0]["lr"]))


def train_model(model: nn.Module, train_loader, val_loader, *, recipe: Recipe, groups: list[dict],
                steps_per_epoch: int, on_epoch: Callable[[Epoch], None] | None = None,
                on_batch: Callable[[int], None] | None = None, stage: int = 1, best: Best | None = None) -> Best:
    """Train the parameters of ``model`` that require grad on batches of (x, y): images, or the
    cached output of a frozen prefix (zoo.transfer.prefix), whatever ``model`` takes. ``groups``
    are the optimizer's parameter groups (the head at a higher learning rate). ``best`` carries the
    best so far from an earlier stage (two-stage runs); the best weights are restored at the end.

    Under torchrun the loaders hold this rank's shard: the model trains under
    DistributedDataParallel, whose ``join`` lets a rank with one batch fewer finish cleanly, and
    the epoch's figures are summed over ranks."""
    opt = _optimizer(groups, recipe.weight_decay)
    sched = recipe.scheduler(opt, steps_per_epoch)
    trained = distributed.data_parallel(model)
    joined = trained.join if distributed.active() else contextlib.nullcontext
    best = best or Best(recipe.monitor, recipe.patience)
    best.since = 0
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum = correct = n = 0.0
        with joined():
            for x, y in train_loader:
                logits = trained(_channels_last(x))
                loss = recipe.loss(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(-1) == y).sum().item()
                n += len(y)
                if on_batch:
                    on_batch(len(y))
        model.eval()
        val_loss = val_correct = n_val = 0.0
        with torch.inference_mode():
            for x, y in val_loader:
                loss, right = _scores(model(_channels_last(x)), y)
                val_loss, val_correct, n_val = val_loss + loss, val_correct + right, n_val + len(y)
                if on_batch:
                    on_batch(len(y))
        if distributed.active():
            parts = distributed.gather_objects((loss_sum, correct, n, val_loss, val_correct, n_val))
            loss_sum, correct, n, val_loss, val_correct, n_val = (sum(v) for v in zip(*parts))
        e = _epoch(epoch, loss_sum, correct, n, val_loss, val_correct, n_val, t0, opt)
        if _report(best, replace(e, stage=stage), model, on_epoch):
            break
    best.restore(model)
    model.eval()
    return best


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
