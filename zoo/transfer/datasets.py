"""Labelled image folders: the classes and files of an ImageFolder, and a train/validation split.

The layouts of the classic tutorials are recognised: ``DIR/<class>/*.png``, split by a seeded
stratified fraction, or ``DIR/train/<class>`` beside ``DIR/validation/<class>`` (also ``val``,
``valid``) as in the dogs-vs-cats tutorial, or a validation folder given separately. Torch-free:
a folder is checked before any model is loaded.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import UsageError
from zoo.model.images import IMAGE_EXTENSIONS

#: sub-folder names that mark a pre-split dataset (dogs-vs-cats: train/ and validation/)
TRAIN_DIRS = ("train", "training")
VAL_DIRS = ("validation", "val", "valid")


@dataclass
class ImageFolder:
    """An ImageFolder (one sub-folder per class): files, integer labels and class names.
    ``skipped`` collects (file, reason) for images that could not be decoded."""

    root: Path
    classes: list[str]
    files: list[Path]
    labels: list[int]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    content: list[str] | None = field(default=None, repr=False)  # each file's sha256, once hashed

    def subset(self, indices: list[int]) -> "ImageFolder":
        return ImageFolder(self.root, self.classes, [self.files[i] for i in indices], [self.labels[i] for i in indices],
                           content=None if self.content is None else [self.content[i] for i in indices])


@dataclass
class Split:
    """All images (train first, then validation) and which indices of ``data`` belong to each side."""

    data: ImageFolder
    train: list[int]
    val: list[int]
    how: str  # said to the user: "20% held out (seed 0, stratified)" or "DIR/validation"
    fraction: float | None = None  # the held-out fraction, when the split was by fraction


def scan(root: str | os.PathLike, classes: list[str] | None = None) -> ImageFolder:
    """The classes (sorted sub-folders) and image files of ``root``.

    An empty class or fewer than 2 classes is an error naming the folder. With ``classes`` (a
    validation folder beside a training one) the folder must hold exactly those classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory of class folders")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is not None and found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise UsageError(f"{root} must hold the training classes; missing {missing or 'none'}, extra {extra or 'none'}")
    if len(found) < 2:
        raise UsageError(f"{root} needs at least 2 class folders (one per class), found {len(found)}")
    files, labels = [], []
    for i, name in enumerate(found):
        images = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not images:
            raise UsageError(f"class folder {root / name} holds no images")
        files += images
        labels += [i] * len(images)
    return ImageFolder(root, found, files, labels)


def _presplit(root: Path) -> tuple[Path | None, Path | None]:
    """``(root/train, root/validation)`` where they exist (any of the names in TRAIN_DIRS/VAL_DIRS)."""
    subdirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()} if root.is_dir() else {}
    train = next((subdirs[n] for n in TRAIN_DIRS if n in subdirs), None)
    val = next((subdirs[n] for n in VAL_DIRS if n in subdirs), None)
    return (train, val) if train is not None else (None, None)  # a lone "val" folder may be a class


def split(root: str | os.PathLike, val_split: float = 0.2, val_dir: str | os.PathLike | None = None,
          seed: int = 0) -> Split:
    """Train and validation images of ``root``: ``root/train`` + ``root/validation`` when present,
    else ``val_dir`` when given, else a stratified ``val_split`` fraction of every class (seeded)."""
    root = Path(root)
    train_dir, found_val = _presplit(root)
    if train_dir is not None and val_dir is None and found_val is None:
        raise UsageError(f"{root} has {train_dir.name}/ but no validation/ (or val/) folder: pass --val "
                         f"DIR (for example {root / 'test'}), or point --data at {train_dir} to split it")
    val_dir = Path(val_dir) if val_dir is not None else found_val
    if val_dir is not None:
        train = scan(train_dir or root)
        val = scan(val_dir, classes=train.classes)
        data = ImageFolder(train.root, train.classes, train.files + val.files, train.labels + val.labels)
        n = len(train.files)
        return Split(data, list(range(n)), list(range(n, len(data.files))), f"{val_dir}")
    if not 0 < val_split < 1:
        raise UsageError(f"--val-split must be between 0 and 1 (exclusive), not {val_split}")
    data = scan(root)
    rng = random.Random(seed)
    train, val = [], []
    for label in range(len(data.classes)):
        members = [i for i, y in enumerate(data.labels) if y == label]
        rng.shuffle(members)
        k = round(len(members) * val_split)
        if k == 0 or k == len(members):
            raise UsageError(f"class {data.classes[label]!r} has {len(members)} images: too few to hold out "
                             f"{val_split:.0%} for validation; add images or pass --val DIR")
        val += members[:k]
        train += members[k:]
    return Split(data, sorted(train), sorted(val), f"{val_split:.0%} of each class held out (seed {seed})", val_split)


def all_images(root: str | os.PathLike) -> ImageFolder:
    """Every labelled image under ``root``: a plain ImageFolder, or both sides of a pre-split one
    (``train/`` + ``validation/``), labelled by class either way (never by split)."""
    root = Path(root)
    train_dir, val_dir = _presplit(root)
    if train_dir is None:
        return scan(root)
    return split(root, val_dir=val_dir).data if val_dir is not None else scan(train_dir)


def content_hashes(files: list[Path]) -> list[str]:
    """sha256 of every file's bytes: features are cached by what the images are, not their names.
    A file that cannot be read hashes as its error (it is skipped later, when decoding fails)."""
    out = []
    for p in files:
        try:
            out.append(hashlib.sha256(p.read_bytes()).hexdigest())
        except OSError as exc:
            out.append(f"unreadable: {exc}")
    return out
