"""Bottleneck features: run a frozen backbone once per image, cache each image's row, export a folder's.

The cache is per image. A row depends on its image and on its *space*: the backbone's weights
sha256, the layer, the pooling and the transform (the input size is part of it). Within a space a
row is found by its image's content sha256, so extracting a subset of a folder extracted before
runs no forward pass, a superset runs the backbone only on the new images, and an image renamed or
copied into another folder is still found.

Rows live in shard files, ``ZOO_HOME/features/<space>-<shard>.safetensors``: a ``features`` tensor
(rows, *row shape) and, in the metadata, the content sha256 of each row's image (zoo/home.py).
A shard is named after the hashes it holds, so two processes (or torchrun ranks) computing the
same images write the same name and the second rename is harmless; it is written to a temp file
and renamed into place, so a reader never sees half of one. Nothing needs a lock: at worst two
concurrent runs compute a row twice. A long extraction seals a shard every :data:`SHARD_BYTES`, so
an interrupted run keeps what it sealed (under torchrun: once the ranks' rows are gathered). A
shard's mtime says when it was last used (``zoo cache prune`` removes shards unused for
``--older-than``).

Extraction decodes images in DataLoader workers while the main process runs the model, batched,
under ``torch.inference_mode``, in channels_last (lite0 runs about 2x faster than NCHW on this
CPU). Rows stream to disk batch by batch and back in blocks: neither the cache nor an ``.h5``
export is ever held in memory whole.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import struct
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from zoo import home
from zoo.errors import ImageError, MissingExtra, UsageError
from zoo.model.images import open_rgb
from zoo.model.load import load
from zoo.model.transforms import transforms
from zoo.transfer.datasets import ImageFolder, _presplit, all_images, content_hashes, scan, split
from zoo.util import distributed
from zoo.util.progress import Progress, Task, message
from zoo.util.tempfiles import temp_beside
from zoo.weights.safetensors_writer import Chunked, write_safetensors

log = logging.getLogger(__name__)

#: rows per block when features are copied between files
BLOCK_ROWS = 1024
#: pending rows are sealed into a shard file once they reach this size: an interrupted run keeps them
SHARD_BYTES = 64 << 20
#: ``--pool``: average or max over the feature map, or the map itself
POOLS = ("avg", "max", "none")
#: the input sizes ``--input-size`` takes, in pixels a side
MIN_INPUT, MAX_INPUT = 32, 1024
#: a shard's mtime says when it was last used (``zoo cache prune`` reads it); refreshed at most this often
TOUCH_EVERY = 3600.0
#: images hashed between two progress updates
HASH_BLOCK = 256


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def cache_key(weights_sha256: str, layer: str, transform_repr: str, hashes: list[str]) -> str:
    """One key for what a set of outputs depends on: weights, layer, transform and the images' hashes."""
    return _digest(weights_sha256, layer, transform_repr, *hashes)


def space_key(weights_sha256: str, layer: str, pool: str, transform_repr: str) -> str:
    """The space of a row: everything it depends on besides its image (32 hex digits)."""
    return _digest("space", weights_sha256, layer, f"pool:{pool}", transform_repr)[:32]


@dataclass
class FeatureSet:
    """Features of the readable images of an ImageFolder, read from the shard files of the cache.

    ``kept[i]`` is the index (into the folder's files) of feature row ``i``, ``where[i]`` the shard
    file and row holding it; ``cached`` says whether no forward pass ran; ``from_cache`` how many
    rows were already in the cache. ``shape`` is one row's shape: ``(D,)`` pooled, ``(C, H, W)`` with
    ``pool="none"``. Labels come from the folder as it is now, not from the cache (moving an image
    to another class changes no content hash)."""

    kept: list[int]
    shape: tuple[int, ...]
    cached: bool
    label_list: list[int]
    where: list[tuple[Path, int]] = field(repr=False, default_factory=list)
    from_cache: int = 0
    space: str = ""

    @property
    def num_features(self) -> int:
        """Values per row (``C * H * W`` for a map)."""
        return math.prod(self.shape)

    def features(self):
        """All rows as one float32 tensor (N, *shape)."""
        with _Reader() as reader:
            return reader.rows(self.where, self.shape)

    def labels(self):
        return torch.tensor(self.label_list, dtype=torch.int64)

    def rows(self, file_indices: list[int]):
        """Row indices (a LongTensor) of those files, in that order; unreadable (skipped) files have none."""
        row = {f: r for r, f in enumerate(self.kept)}
        return torch.tensor([row[i] for i in file_indices if i in row], dtype=torch.int64)

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator:
        """Row blocks of the features, read from disk one block at a time."""
        with _Reader() as reader:
            for start in range(0, len(self.kept), rows):
                yield reader.rows(self.where[start:start + rows], self.shape)


class _Reader:
    """Open shard files, read runs of consecutive rows as slices (one read per run, not per row)."""

    def __init__(self):
        self._stack = ExitStack()
        self._slices: dict[Path, object] = {}

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def rows(self, where: list[tuple[Path, int]], shape: tuple[int, ...]):
        out = torch.empty((len(where), *shape), dtype=torch.float32)
        i = 0
        while i < len(where):
            path, first = where[i]
            j = i + 1
            while j < len(where) and where[j][0] == path and where[j][1] == first + j - i:
                j += 1
            out[i:j] = self._slice(path)[first:first + j - i]
            i = j
        return out

    def _slice(self, path: Path):
        if path not in self._slices:
            from safetensors import safe_open

            self._slices[path] = self._stack.enter_context(safe_open(str(path), "pt")).get_slice("features")
        return self._slices[path]


# --- what a row is: layer, pooling, input size


def check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise UsageError(f"--pool must be one of {', '.join(POOLS)}, not {pool!r}")
    return pool


def check_input_size(size) -> tuple[int, int] | None:
    """``(height, width)`` from ``N`` or ``(H, W)``, between :data:`MIN_INPUT` and :data:`MAX_INPUT`."""
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(v, int) and MIN_INPUT <= v <= MAX_INPUT for v in (h, w)):
        raise UsageError(f"--input-size must be {MIN_INPUT} to {MAX_INPUT} pixels a side (N or HxW), not {h}x{w}")
    return h, w


def feature_transform(model, input_size=None):
    """The model's eval transform, resized for ``input_size`` when given: timm's transform with that
    input size (resize, then center crop at the card's crop_pct)."""
    size = check_input_size(input_size)
    config = getattr(model, "data_config", None)
    if size is None or config is None:  # transforms() says what is wrong with a model without one
        return transforms(model)
    from timm.data import create_transform

    return create_transform(**{**config, "input_size": (3, *size)})


def pooled(model, x):
    """The pooled features the classifier sees (timm's pre-logits), whatever the model's head."""
    if getattr(model, "num_classes", 0) == 0 or not hasattr(model, "forward_head"):
        return model(x)
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _pool(model, out, pool: str):
    """``out`` pooled: a map (N, C, H, W; an NHWC model's maps are turned to NCHW first) over H and W,
    a ViT's (N, tokens, C) over its tokens, anything else flattened; ``none`` keeps it as it is."""
    if out.ndim == 4 and getattr(model, "output_fmt", "NCHW") == "NHWC":
        out = out.permute(0, 3, 1, 2)
    if pool == "none":
        return out
    dims = (2, 3) if out.ndim == 4 else (1,) if out.ndim == 3 else None
    if dims is None:
        return out.flatten(1)
    return out.mean(dim=dims) if pool == "avg" else out.amax(dim=dims)


def layer_features(model, layer: str, pool: str = "avg"):
    """(function images -> features, hook handle to remove or None): ``"pooled"`` (the final
    features: with ``pool="avg"`` what the classifier sees, else the final feature map max-pooled
    or kept whole), or the output of the module named ``layer`` (``blocks.5``), pooled as ``pool``
    says (:func:`_pool`). An unknown layer fails here, before any image is read."""
    check_pool(pool)
    if layer == "pooled":
        if pool == "avg":
            return (lambda x: pooled(model, x)), None
        if not hasattr(model, "forward_features"):
            raise UsageError(f"--pool {pool} needs the final feature map, and {type(model).__name__} has no "
                             "forward_features; use --pool avg")
        return (lambda x: _pool(model, model.forward_features(x), pool)), None
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=3)
        raise UsageError(f"{type(model).__name__} has no layer {layer!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else "; use 'pooled' or a module name"))
    box = {}
    handle = modules[layer].register_forward_hook(lambda _m, _i, out: box.__setitem__("out", out))

    def run(x):
        model.forward_features(x) if hasattr(model, "forward_features") else model(x)
        out = box.pop("out")
        return _pool(model, out[0] if isinstance(out, (tuple, list)) else out, pool)

    return run, handle


def layer_key(model, layer: str) -> str:
    """What the cache key says of the layer: its name, and for ``pooled`` the pooling type."""
    pool = getattr(getattr(model, "global_pool", None), "pool_type", "")
    return f"pooled:{pool}" if layer == "pooled" else f"module:{layer}"


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


# --- decoding images


class _Images:
    """Map-style dataset for DataLoader workers: (image tensor or None, index, why unreadable)."""

    def __init__(self, files: list[Path], transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return self.transform(open_rgb(str(self.files[i]))), i, ""
        except Exception as exc:  # deliberate: one bad image (or a transform that fails on it) never stops a run
            return None, i, str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"


def _collate(items):
    good = [(x, i) for x, i, _ in items if x is not None]
    bad = [(i, why) for x, i, why in items if x is None]
    batch = torch.stack([x for x, _ in good]) if good else None
    return batch, [i for _, i in good], bad


class _Labelled:
    """Training batches: (images, labels), unreadable images dropped and recorded in ``skipped``."""

    def __init__(self, loader, data: ImageFolder, indices: list[int]):
        self.loader, self.data, self.indices = loader, data, indices

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        seen = {p for p, _ in self.data.skipped}
        for batch, idx, bad in self.loader:
            for i, why in bad:
                path = self.data.files[self.indices[i]]
                if path not in seen:
                    seen.add(path)
                    self.data.skipped.append((path, why))
            if batch is not None:
                yield batch, torch.tensor([self.data.labels[self.indices[i]] for i in idx], dtype=torch.int64)


def image_loader(data: ImageFolder, indices: list[int], transform, batch_size: int, workers: int | None,
                 seed: int | None = None):
    """(images, labels) batches of ``data``'s images at ``indices``, decoded in DataLoader workers;
    shuffled with ``seed`` when one is given (training), in order otherwise."""
    files = [data.files[i] for i in indices]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = torch.utils.data.DataLoader(_Images(files, transform), batch_size=batch_size,
                                         num_workers=default_workers() if workers is None else workers,
                                         collate_fn=_collate, shuffle=seed is not None, generator=gen)
    return _Labelled(loader, data, indices)


def default_workers() -> int:
    """DataLoader workers for decoding: one per core, at most 4 (the forward pass wants the rest)."""
    return max(1, min(4, os.cpu_count() or 1))


# --- the per-image cache


def _cacheable(key: str) -> bool:
    """A content sha256 (a file that could not be read hashes as its error, and is never cached)."""
    return len(key) == 64 and not key.startswith("unreadable")


class _Space:
    """The shard files of one space in the cache folder, and the metadata every new shard carries."""

    def __init__(self, folder: Path, key: str, meta: dict[str, str]):
        self.folder, self.key, self.meta = folder, key, meta

    def shard_path(self, hashes: list[str]) -> Path:
        return self.folder / f"{self.key}-{_digest(*hashes)[:32]}.safetensors"

    def lookup(self, wanted: set[str]) -> tuple[dict[str, tuple[Path, int]], tuple[int, ...] | None]:
        """(content sha256 -> (shard, row) for the ``wanted`` hashes the cache holds, the row shape).
        Reads only the shards' headers; a shard that gives rows has its mtime refreshed (last use)."""
        found: dict[str, tuple[Path, int]] = {}
        shape = None
        for path in sorted(self.folder.glob(f"{self.key}-*.safetensors")) if wanted else ():
            try:
                header = _header(path)
                hashes = json.loads(header["__metadata__"]["hashes"])
                rows_shape = tuple(header["features"]["shape"][1:])
            except (OSError, ValueError, KeyError, struct.error) as exc:  # a shard pruned meanwhile, or not zoo's
                log.warning("ignoring feature shard %s: %s", path, exc)
                continue
            used = False
            for row, h in enumerate(hashes):
                if h in wanted and h not in found:
                    found[h] = (path, row)
                    used = True
            if used:
                shape = rows_shape
                _touch(path)
        return found, shape


def _header(path: Path) -> dict:
    """A safetensors file's JSON header, read without mapping the file."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(size))


def _touch(path: Path) -> None:
    try:
        if time.time() - path.stat().st_mtime > TOUCH_EVERY:
            os.utime(path)
    except OSError:  # a read-only cache still serves its features
        pass


class _ShardWriter:
    """Rows of newly computed images, streamed to a temp file and sealed into a shard of the space
    every :data:`SHARD_BYTES` (and at :meth:`seal`); ``found`` says where each sealed row is."""

    def __init__(self, space: _Space):
        self.space = space
        self.found: dict[str, tuple[Path, int]] = {}
        self.shape: tuple[int, ...] | None = None
        self._raw: Path | None = None
        self._fh = None
        self._hashes: list[str] = []

    def add(self, hashes: list[str], rows) -> None:
        if self._fh is None:
            self.space.folder.mkdir(parents=True, exist_ok=True)
            self._raw = temp_beside(self.space.folder / f"{self.space.key}-pending", "rows")
            self._fh = open(self._raw, "wb")
        self.shape = tuple(rows.shape[1:])
        self._fh.write(rows.contiguous().numpy().tobytes())
        self._hashes += hashes
        if len(self._hashes) * 4 * math.prod(self.shape) >= SHARD_BYTES:
            self.seal()

    def seal(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        hashes, raw, row_bytes = self._hashes, self._raw, 4 * math.prod(self.shape)

        def chunks():
            with open(raw, "rb") as fh:
                while piece := fh.read(BLOCK_ROWS * max(row_bytes, 1)):
                    yield piece

        path = self.space.shard_path(hashes)
        write_safetensors({"features": Chunked("F32", [len(hashes), *self.shape], chunks())}, str(path),
                          {**self.space.meta, "hashes": json.dumps(hashes)})
        self.found.update({h: (path, row) for row, h in enumerate(hashes)})
        self.discard()

    def discard(self) -> None:
        """Drop what is not sealed (the temp file), as on an error."""
        if self._fh is not None:
            self._fh.close()
            self._raw.unlink(missing_ok=True)
        self._fh, self._raw, self._hashes = None, None, []


# --- extraction


def extract(model, data: ImageFolder, *, batch_size: int = 32, workers: int | None = None,
            cache_dir: str | os.PathLike | None = None, progress: Progress | None = None,
            on_forward: Callable[[int], None] | None = None, layer: str = "pooled", pool: str = "avg",
            input_size: int | tuple[int, int] | None = None) -> FeatureSet:
    """Features (``layer`` and ``pool``: see :func:`layer_features`; ``input_size``: N or (H, W),
    default the card's) of every readable image of ``data`` through ``model`` (a zoo.load model).

    Unreadable images are skipped and listed in ``data.skipped``. Uses and fills the per-image
    feature cache in ``cache_dir`` (default ``ZOO_HOME/features``): only images it does not hold
    go through the backbone. ``on_forward(n)`` is called for every backbone batch actually run
    (tests and benchmarks count them). ``progress`` (zoo.util.progress) sees a task hashing the
    images and one extracting those not cached (under torchrun: this rank's shard of each)."""
    weights = getattr(model, "weights_sha256", None)
    if not weights:  # random init or a model not made by zoo.load: its features cannot be reused
        raise UsageError("feature extraction needs a model loaded by zoo.load with pretrained weights")
    tf = feature_transform(model, input_size)
    forward, hook = layer_features(model, layer, pool)  # an unknown layer fails before any image is read
    name = getattr(getattr(model, "card", None), "name", "features")
    space = _Space(Path(cache_dir or home.features()), space_key(weights, layer_key(model, layer), pool, repr(tf)),
                   {"model": name, "weights_sha256": weights, "layer": layer, "pool": pool, "transform": repr(tf)})
    label = f"extract {name} ({layer}{'' if pool == 'avg' else ', pool ' + pool})"
    try:
        keys = _hash_all(data, progress, label)
        found, shape = space.lookup({k for k in keys if _cacheable(k)})
        # under torchrun every rank must agree on what to compute: an image any rank lacks is computed
        lacking = set().union(*distributed.gather_objects({k for k in keys if _cacheable(k) and k not in found}))
        todo = _first_of_each(keys, lacking)
        why: dict[str, str] = {}
        new: dict[str, tuple[Path, int]] = {}
        if todo:
            if found:
                message(progress, "extract", f"{label}: {sum(k in found for k in keys)} of {len(keys)} images "
                                             f"from the feature cache, {len(todo)} to compute")
            new, why, new_shape = _compute(model, forward, data, todo, keys, space, tf, batch_size, workers,
                                           progress, label, on_forward, input_size)
            shape = shape or new_shape
    finally:
        if hook:
            hook.remove()
    return _assemble(data, keys, {**found, **new}, set(new), why, shape, space.key)


def _first_of_each(keys: list[str], wanted: set[str]) -> list[int]:
    """The index of the first file of each wanted content hash (identical files are computed once)."""
    seen: set[str] = set()
    out = []
    for i, k in enumerate(keys):
        if k in wanted and k not in seen:
            seen.add(k)
            out.append(i)
    return out


def _hash_all(data: ImageFolder, progress: Progress | None, label: str) -> list[str]:
    """The content sha256 of every file (under torchrun each rank hashes its shard; all get all)."""
    mine = list(distributed.shard(len(data.files)))
    out: list[str] = []
    with Task(progress, "extract", f"{label}: hash images", len(mine), "images") as task:
        for start in range(0, len(mine), HASH_BLOCK):
            out += content_hashes([data.files[i] for i in mine[start:start + HASH_BLOCK]])
            task.advance(len(mine[start:start + HASH_BLOCK]))
    return [k for part in distributed.gather_objects(out) for k in part]


def _compute(model, forward, data: ImageFolder, todo: list[int], keys: list[str], space: _Space, tf,
             batch_size: int, workers: int | None, progress, label: str, on_forward, input_size):
    """Run the backbone over the files at ``todo`` (under torchrun: this rank's contiguous shard of
    them) and seal their rows into shards: (content sha256 -> (shard, row), why each unreadable
    one failed, the row shape)."""
    mine = [todo[j] for j in distributed.shard(len(todo))]
    loader = torch.utils.data.DataLoader(_Images([data.files[i] for i in mine], tf), batch_size=batch_size,
                                         num_workers=default_workers() if workers is None else workers,
                                         collate_fn=_collate, shuffle=False)
    writer = _ShardWriter(space)
    # under torchrun the rows are gathered, and every rank seals them all (its node may not see the others' files)
    gather = distributed.active()
    done: list[str] = []
    parts: list = []
    why: dict[str, str] = {}
    model.eval().to(memory_format=torch.channels_last)
    try:
        with Task(progress, "extract", label, len(mine), "images") as task:
            for batch, idx, bad in loader:
                why.update({keys[mine[j]]: reason for j, reason in bad})
                if batch is not None:
                    out = _forward(forward, batch, input_size)
                    if on_forward:
                        on_forward(len(idx))
                    hashes = [keys[mine[j]] for j in idx]
                    if gather:
                        done += hashes
                        parts.append(out)
                    else:
                        writer.add(hashes, out)
                task.advance(len(idx) + len(bad))
        if gather:
            _seal_gathered(writer, done, parts, why)
        writer.seal()
    finally:
        writer.discard()
        model.to(memory_format=torch.contiguous_format)  # hand the model back as it came
    return writer.found, why, writer.shape


def _forward(forward, batch, input_size):
    with torch.inference_mode():
        try:
            return forward(batch.contiguous(memory_format=torch.channels_last)).float()
        except (RuntimeError, AssertionError) as exc:
            if input_size is None:
                raise
            raise UsageError(f"the model cannot run at --input-size {batch.shape[-2]}x{batch.shape[-1]} ({exc}); "
                             "try its card's input size") from None


def _seal_gathered(writer: _ShardWriter, done: list[str], parts: list, why: dict[str, str]) -> None:
    """Every rank's rows (rank order = file order: shards are contiguous) into ``writer``, and every
    rank's unreadable images into ``why``."""
    shape = next((s for s in distributed.gather_objects(tuple(parts[0].shape[1:]) if parts else None) if s), None)
    for part in distributed.gather_objects(why):
        why.update(part)
    if shape is None:  # no rank read any image
        return
    rows = distributed.gather_rows(torch.cat(parts) if parts else torch.empty((0, *shape)))
    hashes = [h for part in distributed.gather_objects(done) for h in part]
    for start in range(0, len(hashes), BLOCK_ROWS):
        writer.add(hashes[start:start + BLOCK_ROWS], rows[start:start + BLOCK_ROWS])


def _assemble(data: ImageFolder, keys: list[str], where: dict[str, tuple[Path, int]], new: set[str],
              why: dict[str, str], shape, space: str) -> FeatureSet:
    """The FeatureSet of ``data``'s files in order; files without a row are listed in ``data.skipped``."""
    kept = [i for i, k in enumerate(keys) if k in where]
    data.skipped += [(data.files[i], why.get(k, k)) for i, k in enumerate(keys) if k not in where]
    if not kept:
        raise UsageError(f"none of the {len(data.files)} images under {data.root} could be read "
                         f"(first: {data.skipped[0][0]}: {data.skipped[0][1]})" if data.skipped else
                         f"no images under {data.root}")
    return FeatureSet(kept, tuple(shape), cached=not new, label_list=[data.labels[i] for i in kept],
                      where=[where[keys[i]] for i in kept], from_cache=sum(keys[i] not in new for i in kept),
                      space=space)


# --- export


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
                    seed: int = 0, progress: Progress | None = None) -> FeatureFile:
    """``zoo extract``: the features of every image of the ImageFolder ``data`` through the frozen
    backbone of ``name`` (any model name; see :func:`extract` for ``layer``, ``pool`` and
    ``input_size``), written to ``out`` (``.h5`` or ``.safetensors``, checked before the backbone
    runs) with the model, weights sha256, layer, pooling and transform in its metadata, and each
    row's split (:func:`folder_sides`; ``val_split``/``seed`` for a folder not split on disk).
    Under torchrun every rank extracts its shard; rank 0 writes."""
    check_output(out)
    check_pool(pool)
    size = check_input_size(input_size)
    folder, sides, how = folder_sides(data, val_split, seed)
    model = load(name, head=0)
    features = extract(model, folder, batch_size=batch_size, workers=workers, progress=progress, layer=layer,
                       pool=pool, input_size=size)
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
