"""Exports of a folder's bottleneck features to one file (``zoo extract``): ``.h5`` (h5py) or
``.safetensors``, with each row's image path, label and (when the folder's split is known) side,
and in the metadata the model, weights sha256, layer, pooling and transform. Rows are copied from
the feature cache block by block into a temp file beside the export, which is renamed into place.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import MissingExtra, UsageError
from zoo.model.load import load
from zoo.transfer.datasets import ImageFolder, _presplit, all_images, scan, split
from zoo.transfer.feature_cache import FeatureSet
from zoo.transfer.features import check_input_size, check_pool, extract, feature_transform
from zoo.util import distributed
from zoo.util.progress import Progress
from zoo.util.tempfiles import temp_beside
from zoo.weights.safetensors_writer import Chunked, write_safetensors


def check_output(path: str | os.PathLike) -> Path:
    """An export path zoo can write (``.h5`` with h5py installed, or ``.safetensors``): checked
    before any backbone runs."""
    path = Path(path)
    if path.suffix == ".h5":
        try:
            import h5py  # noqa: F401
        except ImportError:
            raise MissingExtra("writing .h5 (or write .safetensors)", "h5py", "features") from None
    elif path.suffix != ".safetensors":
        raise UsageError(f"--out must end in .h5 or .safetensors, not {path.suffix or 'nothing'}")
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory; name a file")
    return path


def write_features(path: str | os.PathLike, features: FeatureSet, data: ImageFolder, meta: dict,
                   split: list[str] | None = None) -> Path:
    """Save features as ``.h5`` (h5py: datasets features/labels/paths and, when known, split; class
    names and metadata in attributes; written in row blocks) or ``.safetensors`` (paths, classes and
    split in the metadata). ``split[i]`` is row i's side: ``train`` or ``validation``."""
    path = check_output(path)
    paths = [str(data.files[i]) for i in features.kept]
    meta = {**meta, "classes": json.dumps(data.classes)}
    tmp = temp_beside(path)
    n, shape = len(features.kept), features.shape
    try:
        if path.suffix == ".h5":
            _write_h5(tmp, features, paths, meta, split)
        elif path.suffix == ".safetensors":
            chunks = (b.contiguous().numpy().tobytes() for b in features.blocks())
            extra = {"split": json.dumps(split)} if split is not None else {}
            write_safetensors({"features": Chunked("F32", [n, *shape], chunks), "labels": features.labels()}, str(tmp),
                              {**{k: str(v) for k, v in meta.items()}, "paths": json.dumps(paths), **extra})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_h5(tmp: Path, features: FeatureSet, paths: list[str], meta: dict, split: list[str] | None) -> None:
    import h5py
    import numpy as np

    n, shape = len(features.kept), features.shape
    chunk_rows = max(1, min(n, 256, (1 << 20) // (4 * max(features.num_features, 1))))  # chunks of about 1 MB
    with h5py.File(tmp, "w") as h5:
        ds = h5.create_dataset("features", shape=(n, *shape), dtype="float32", chunks=(chunk_rows, *shape))
        start = 0
        for block in features.blocks():
            ds[start:start + len(block)] = block.numpy()
            start += len(block)
        h5.create_dataset("labels", data=features.labels().numpy())
        h5.create_dataset("paths", data=np.array(paths, dtype=h5py.string_dtype()))
        if split is not None:
            h5.create_dataset("split", data=np.array(split, dtype=h5py.string_dtype()))
        for k, v in meta.items():
            h5.attrs[k] = v


def folder_sides(root: str | os.PathLike, val_split: float | None = None,
                 seed: int = 0) -> tuple[ImageFolder, list[str] | None, str | None]:
    """Every labelled image under ``root``, each file's side (``train``/``validation``) and where the
    split comes from: a pre-split folder's own ``train/`` and ``validation/``, else a stratified
    ``val_split`` fraction (seeded, exactly as ``zoo finetune`` splits), else no sides (None, None);
    a lone ``train/`` is all training images unless ``val_split`` splits it."""
    root = Path(root)
    train_dir, val_dir = _presplit(root)
    if val_dir is not None:
        if val_split is not None:
            raise UsageError(f"{root} is already split into {train_dir.name}/ and {val_dir.name}/; drop --val-split")
        return _with_sides(split(root)) + (f"{train_dir.name}/ and {val_dir.name}/",)
    if val_split is not None:
        s = split(train_dir or root, val_split, seed=seed)
        return _with_sides(s) + (s.how,)
    if train_dir is not None:
        data = scan(train_dir)
        return data, ["train"] * len(data.files), f"{train_dir.name}/ (no validation folder)"
    return all_images(root), None, None


def _with_sides(s) -> tuple[ImageFolder, list[str]]:
    sides = ["train"] * len(s.data.files)
    for i in s.val:
        sides[i] = "validation"
    return s.data, sides


@dataclass(frozen=True)
class FeatureFile:
    """What :func:`extract_to_file` wrote (``path`` is None on a torchrun rank other than 0)."""

    path: Path | None
    images: int
    num_features: int
    classes: list[str]
    cached: bool  # the features came from the feature cache: no backbone forward
    skipped: list[tuple[Path, str]]  # unreadable images and why
    shape: tuple[int, ...] = ()  # one row's shape: (D,) pooled, (C, H, W) with pool "none"
    from_cache: int = 0  # rows the feature cache already held
    sides: dict[str, int] | None = None  # rows per split ("train", "validation"), when the split is known


def extract_to_file(name, data: str | os.PathLike, out: str | os.PathLike, *, batch_size: int = 32,
                    workers: int | None = None, layer: str = "pooled", pool: str = "avg",
                    input_size: int | tuple[int, int] | None = None, val_split: float | None = None,
                    seed: int = 0, progress: Progress | None = None, engine: str | None = None,
                    threads: int | None = None) -> FeatureFile:
    """``zoo extract``: the features of every image of the ImageFolder ``data`` through the frozen
    backbone of ``name`` (any model name; see :func:`extract` for ``layer``, ``pool`` and
    ``input_size``), written to ``out`` (``.h5`` or ``.safetensors``, checked before the backbone
    runs) with the model, weights sha256, layer, pooling and transform in its metadata, and each
    row's split (:func:`folder_sides`; ``val_split``/``seed`` for a folder not split on disk).
    ``engine`` and ``threads``: what runs the backbone (zoo/model/engine.py). Under torchrun every
    rank extracts its shard; rank 0 writes."""
    check_output(out)
    check_pool(pool)
    size = check_input_size(input_size)
    folder, sides, how = folder_sides(data, val_split, seed)
    model = load(name, head=0)
    features = extract(model, folder, batch_size=batch_size, workers=workers, progress=progress, layer=layer,
                       pool=pool, input_size=size, engine=engine, threads=threads)
    tf = feature_transform(model, size)
    meta = {"model": model.card.name, "weights_sha256": model.weights_sha256, "layer": layer, "pool": pool,
            "input_size": "x".join(map(str, size or model.data_config["input_size"][1:])), "transform": repr(tf)}
    if how:
        meta["split_from"] = how
    row_sides = [sides[i] for i in features.kept] if sides else None
    path = write_features(out, features, folder, meta, row_sides) if distributed.is_main() else None
    return FeatureFile(path, len(features.kept), features.num_features, list(folder.classes), features.cached,
                       list(folder.skipped), features.shape, features.from_cache,
                       _count_sides(row_sides))


def _count_sides(sides: list[str] | None) -> dict[str, int] | None:
    """Rows per side, train first."""
    counts = Counter(sides or ())
    return {side: counts[side] for side in ("train", "validation") if counts[side]} or None
