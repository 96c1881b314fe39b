"""Bottleneck features: run a frozen backbone once per image. Each image's row is kept in the
per-image feature cache (``zoo.transfer.feature_cache``: only images it does not hold go through the
backbone); ``zoo.transfer.feature_files`` exports a folder's rows to a file (``zoo extract``).

Extraction decodes images in DataLoader workers while the main process runs the model, batched,
under ``torch.inference_mode``, in channels_last (lite0 runs about 2x faster than NCHW on this
CPU). Rows stream to disk batch by batch and back in blocks: neither the cache nor an ``.h5``
export is ever held in memory whole.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Callable

import torch

from zoo import home
from zoo.errors import ImageError, UsageError
from zoo.model.engine import choose as choose_engine, identity, onnx_forward
from zoo.model.images import open_rgb
from zoo.model.transforms import transforms
from zoo.transfer.datasets import ImageFolder
from zoo.transfer.feature_cache import (BLOCK_ROWS, FeatureSet, _assemble, _cacheable, _hash_all, _ShardWriter,
                                        _Space, space_key)
from zoo.util import distributed
from zoo.util.progress import Progress, Task, message

#: ``--pool``: average or max over the feature map, or the map itself
POOLS = ("avg", "max", "none")
#: the input sizes ``--input-size`` takes, in pixels a side
MIN_INPUT, MAX_INPUT = 32, 1024


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
    if layer == "pooled":
        return f"pooled:{pool}"
    return layer if layer.startswith("prefix:") else f"module:{layer}"


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


# --- extraction


def extract(model, data: ImageFolder, *, batch_size: int = 32, workers: int | None = None,
            cache_dir: str | os.PathLike | None = None, progress: Progress | None = None,
            on_forward: Callable[[int], None] | None = None, layer: str = "pooled", pool: str = "avg",
            input_size: int | tuple[int, int] | None = None,
            forward: Callable | None = None, engine: str | None = None, threads: int | None = None) -> FeatureSet:
    """Features (``layer`` and ``pool``: see :func:`layer_features`; ``input_size``: N or (H, W),
    default the card's) of every readable image of ``data`` through ``model`` (a zoo.load model).

    Unreadable images are skipped and listed in ``data.skipped``. Uses and fills the per-image
    feature cache in ``cache_dir`` (default ``ZOO_HOME/features``): only images it does not hold
    go through the backbone. ``on_forward(n)`` is called for every backbone batch actually run
    (tests and benchmarks count them). ``progress`` (zoo.util.progress) sees a task hashing the
    images and one extracting those not cached (under torchrun: this rank's shard of each).

    ``engine`` (torch, onnxruntime or auto; None: ``ZOO_ENGINE``, else auto) runs the backbone
    (zoo/model/engine.py): ONNX Runtime builds its graph the first time it is needed, and falls
    back to torch when the two disagree; rows are cached per engine. ``threads``: ONNX Runtime's.

    ``forward`` replaces the layer's function with the caller's (its outputs are kept as they
    come, ``pool="none"``; torch runs it), ``layer`` naming it in the cache key:
    zoo.transfer.prefix caches a fine-tune's frozen part this way."""
    if not getattr(model, "weights_sha256", None):  # random init or not zoo.load's: its features cannot be reused
        raise UsageError("feature extraction needs a model loaded by zoo.load with pretrained weights")
    tf = feature_transform(model, input_size)
    chosen = "torch" if forward is not None else choose_engine(engine, next(model.parameters()).device)
    if forward is not None:
        if pool != "none":
            raise UsageError("a custom forward keeps its outputs as they come: pass pool='none'")
        hook = None
    else:
        forward, hook = layer_features(model, layer, pool)  # an unknown layer fails before any image is read
    name = getattr(getattr(model, "card", None), "name", "features")
    label = f"extract {name} ({layer}{'' if pool == 'avg' else ', pool ' + pool})"
    output = f"{layer_key(model, layer)} pool:{pool}"

    def space_of(engine_name: str) -> _Space:
        return _Space(Path(cache_dir or home.features()),
                      space_key(identity(model), layer_key(model, layer), pool, repr(tf), engine_name),
                      {"model": name, "weights_sha256": model.weights_sha256, "layer": layer, "pool": pool,
                       "transform": repr(tf), "engine": engine_name})

    def missing(space: _Space):
        found, shape = space.lookup({k for k in keys if _cacheable(k)})
        # under torchrun every rank must agree on what to compute: an image any rank lacks is computed
        lacking = set().union(*distributed.gather_objects({k for k in keys if _cacheable(k) and k not in found}))
        return found, shape, _first_of_each(keys, lacking)

    try:
        keys = _hash_all(data, progress, label)
        space = space_of(chosen)
        found, shape, todo = missing(space)
        run = forward
        if todo and chosen == "onnxruntime":
            size = _input_size(model, tf, input_size)
            run = onnx_forward(model, output, forward, size, threads=threads, progress=progress)
            if run is None:  # it disagreed with torch (logged): torch's rows, in torch's space
                run, space = forward, space_of("torch")
                found, shape, todo = missing(space)
        why: dict[str, str] = {}
        new: dict[str, tuple[Path, int]] = {}
        if todo:
            if found:
                message(progress, "extract", f"{label}: {sum(k in found for k in keys)} of {len(keys)} images "
                                             f"from the feature cache, {len(todo)} to compute")
            new, why, new_shape = _compute(model, run, data, todo, keys, space, tf, batch_size, workers,
                                           progress, label, on_forward, input_size, torch_run=run is forward)
            shape = shape or new_shape
    finally:
        if hook:
            hook.remove()
    return _assemble(data, keys, {**found, **new}, set(new), why, shape, space.key)


def _input_size(model, tf, input_size) -> tuple[int, int, int]:
    """(C, H, W) of the batches ``tf`` makes: the card's, or ``input_size``."""
    size = check_input_size(input_size)
    channels, *card_hw = model.data_config["input_size"]
    return (channels, *(size or card_hw))


def _first_of_each(keys: list[str], wanted: set[str]) -> list[int]:
    """The index of the first file of each wanted content hash (identical files are computed once)."""
    seen: set[str] = set()
    out = []
    for i, k in enumerate(keys):
        if k in wanted and k not in seen:
            seen.add(k)
            out.append(i)
    return out


def _compute(model, forward, data: ImageFolder, todo: list[int], keys: list[str], space: _Space, tf,
             batch_size: int, workers: int | None, progress, label: str, on_forward, input_size, torch_run: bool):
    """Run the backbone (``forward``: torch's function when ``torch_run``, else an engine's) over
    the files at ``todo`` (under torchrun: this rank's contiguous shard of them) and seal their
    rows into shards: (content sha256 -> (shard, row), why each unreadable one failed, the row shape)."""
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
    if torch_run:
        model.eval().to(memory_format=torch.channels_last)
    device = next(model.parameters()).device  # zoo compare --device cuda: batches go where the model is
    try:
        with Task(progress, "extract", label, len(mine), "images") as task:
            for batch, idx, bad in loader:
                why.update({keys[mine[j]]: reason for j, reason in bad})
                if batch is not None:
                    out = _forward(forward, batch.to(device), input_size).cpu() if torch_run else forward(batch)
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
