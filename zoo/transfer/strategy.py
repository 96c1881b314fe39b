"""Which layers to train: the four classic transfer-learning cases, decided from measurements.

The cases (dataset small or large x similar or different to ImageNet) are the ones every
transfer-learning guide draws (CS231n "Transfer Learning"; the Keras fine-tuning guide):

- small, similar:   train only a new head on the frozen backbone's features;
- small, different: still only the head (too few images to retrain blocks without overfitting);
- large, similar:   also unfreeze the top quarter of the blocks, at a lower learning rate;
- large, different: unfreeze everything (``full``), reused layers at a lower learning rate.

``two-stage`` is the Keras fine-tuning guide's recipe as one run: the head trains on the frozen
backbone's cached features first, then the last K blocks open and everything open trains at a much
lower rate (the guide's 1e-5 is for SGD-like steps on a whole model; AdamW here takes 1e-4).

Size is training images per class. Similarity is measured with the base's own ImageNet
classifier on a sample of the training images, from the pooled features the head is trained on
(no extra forward pass): the data look like ImageNet when that classifier is confident (mean top-1
probability >= 0.2) *and* spreads the images over ImageNet's classes (no single class takes more
than half). Confidence alone is fooled: lite0 calls 92% of sklearn's digits (upscaled 8x8
images) "crossword puzzle" at a mean top-1 probability of 0.35, about what natural photos get
(skimage and sklearn samples: 0.08-0.95, mean 0.35).
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo.errors import UsageError

STRATEGIES = ("auto", "head", "partial", "full", "two-stage")
#: what picks the epoch a run keeps, and the learning-rate schedules (zoo.transfer.train runs them)
MONITORS = ("val_loss", "val_accuracy")
SCHEDULES = ("constant", "cosine")
#: at least this many training images per class make a dataset "large"
LARGE_PER_CLASS = 1000
#: similar to ImageNet: mean top-1 probability at least this, and no ImageNet class above TOP_SHARE
SIMILAR_AT = 0.2
TOP_SHARE = 0.5
#: learning rates of the new head: on cached features (AdamW, 10 epochs on digits: 1e-3 0.79,
#: 1e-2 0.91 validation accuracy), and beside unfrozen layers, which train at a tenth of it
HEAD_LR = 1e-2
FINETUNE_LR = 1e-3
BACKBONE_LR_FACTOR = 0.1
#: two-stage: the second stage's rate, for the head and the opened blocks alike
STAGE2_LR = FINETUNE_LR * BACKBONE_LR_FACTOR


@dataclass(frozen=True)
class Similarity:
    """What the base's ImageNet classifier makes of the data."""

    mean_top1: float  # mean top-1 probability
    top_share: float  # share of the sample whose top-1 is the most common ImageNet class
    top_class: int  # that class's ImageNet index

    @property
    def similar(self) -> bool:
        return self.mean_top1 >= SIMILAR_AT and self.top_share <= TOP_SHARE

    def describe(self) -> str:
        from timm.data import ImageNetInfo

        name = ImageNetInfo().index_to_description(self.top_class).split(",")[0]
        verdict = "similar to" if self.similar else "different from"
        return (f"ImageNet head: mean top-1 probability {self.mean_top1:.2f} (similar needs >= {SIMILAR_AT}), "
                f"{self.top_share:.0%} of the sample called {name!r} (similar needs <= {TOP_SHARE:.0%}): "
                f"{verdict} ImageNet")


@dataclass(frozen=True)
class Plan:
    """What a fine-tuning run trains, and why (``reason`` is printed and recorded in the run)."""

    strategy: str  # head | partial | full | two-stage
    reason: str
    open_blocks: int  # partial, two-stage: how many of the last blocks train (head: 0; full: all)
    freeze: int | None  # --freeze N: the first N parameter-owning modules stay frozen instead
    augment: bool
    lr: float  # the new head's (two-stage: in stage 1, on features)
    backbone_lr: float  # unfrozen reused layers' (two-stage: stage 2's, the head's too)

    @property
    def on_features(self) -> bool:
        """The backbone is frozen and inputs fixed: train on cached features, one extraction in all."""
        return self.strategy == "head" and not self.augment

    @property
    def stages(self) -> int:
        return 2 if self.strategy == "two-stage" else 1


def similarity(features, classifier_weight, classifier_bias, sample: int = 256) -> Similarity:
    """The base's ImageNet classifier over the first ``sample`` rows of (shuffled) pooled features."""
    import torch

    x = features[:sample].float()
    with torch.no_grad():
        probs = (x @ classifier_weight.float().T + classifier_bias.float()).softmax(-1)
    top = probs.argmax(-1)
    counts = torch.bincount(top, minlength=probs.shape[-1])
    return Similarity(float(probs.max(-1).values.mean()), float(counts.max()) / max(len(top), 1), int(counts.argmax()))


def plan(strategy: str, *, train_size: int, num_classes: int, num_blocks: int, similar: Similarity | None,
         freeze: int | None = None, augment: bool | None = None, lr: float | None = None,
         backbone_lr: float | None = None, unfreeze: int | None = None, not_measured: str | None = None) -> Plan:
    """The run's plan: ``strategy`` as asked, or for ``auto`` the classic case the data fall in.

    ``similar`` is :func:`similarity`, or None with ``not_measured`` saying why (the base has no
    ImageNet classifier; an explicit strategy needs no measurement). ``unfreeze``: how many of the
    last blocks a partial or two-stage run opens (default: the top quarter). ``augment`` defaults
    to off for the head and two-stage (features and frozen outputs are computed once) and on
    for partial and full."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if freeze is not None and strategy not in ("auto", "partial"):
        raise UsageError(f"--freeze sets the partial strategy's frozen layers; it does not go with --strategy {strategy}"
                         + (" (open the last K blocks with --unfreeze K)" if strategy == "two-stage" else ""))
    if strategy in ("partial", "two-stage") and freeze is None and num_blocks == 0:
        raise UsageError(f"--strategy {strategy} opens the last blocks, and this model defines none (timm "
                         "group_matcher); pass --freeze N to keep its first N parameter-owning modules frozen")
    if unfreeze is not None and not 1 <= unfreeze <= max(num_blocks, 1):
        raise UsageError(f"--unfreeze {unfreeze}: the model has {num_blocks} blocks (1 to {num_blocks})")
    per_class = train_size / max(num_classes, 1)
    large = per_class >= LARGE_PER_CLASS
    size_text = (f"{train_size} training images, {per_class:.0f} per class "
                 f"({'>=' if large else '<'} {LARGE_PER_CLASS} per class: {'large' if large else 'small'})")
    if similar is None:
        like, sim_text = True, f"similarity not measured ({not_measured or 'the base has no ImageNet classifier'})"
        sim_text += ": assumed similar" if strategy == "auto" else ""
    else:
        like, sim_text = similar.similar, similar.describe()
    if freeze is not None:
        chosen, why = "partial", f"--freeze {freeze}: the first {freeze} parameter-owning modules stay frozen"
    elif strategy != "auto":
        chosen, why = strategy, f"--strategy {strategy} as asked"
    elif not large:
        chosen = "head"
        why = ("small dataset: only a new head trains on the frozen features"
               + ("" if like else "; the data differ from ImageNet, but too few images to retrain blocks"
                  " without overfitting (more data, or --strategy partial, may help)"))
    elif like:
        chosen, why = "partial", "large dataset, similar data: the top quarter of the blocks trains too, at a lower rate"
    else:
        chosen, why = "full", "large dataset, different data: every layer trains, reused ones at a lower rate"
    quarter = max(1, round(num_blocks / 4))
    open_blocks = {"head": 0, "partial": unfreeze or quarter, "two-stage": unfreeze or quarter, "full": num_blocks}[chosen]
    if chosen == "two-stage":
        why += (f": the head trains on cached features, then the last {open_blocks} of {num_blocks} blocks "
                "open at a lower rate")
    lr = (HEAD_LR if chosen in ("head", "two-stage") else FINETUNE_LR) if lr is None else lr
    if backbone_lr is None:
        backbone_lr = STAGE2_LR if chosen == "two-stage" else lr * BACKBONE_LR_FACTOR
    return Plan(strategy=chosen, reason=f"{size_text}; {sim_text}. {why[0].upper()}{why[1:]}.",
                open_blocks=open_blocks, freeze=freeze,
                augment=(chosen not in ("head", "two-stage")) if augment is None else augment,
                lr=lr, backbone_lr=backbone_lr)
