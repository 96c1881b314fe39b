"""Bottleneck features: run a frozen backbone once over an image folder, cache and export the result.

The cache key is what the features depend on: the backbone's weights sha256, the layer, the
transform, and each image's content sha256. A second run (other head hyper-parameters, the same
images) reads the cached features and runs no forward pass at all. Extraction decodes images in
DataLoader workers while the main process runs the model, batched, under ``torch.inference_mode``,
in channels_last (lite0 runs about 2x faster than NCHW on this CPU). Features stream to disk batch
by batch: neither the cache file nor an ``.h5`` export is ever held in memory whole.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from zoo import home
from zoo.errors import ImageError, MissingExtra, UsageError
from zoo.model.images import open_rgb
from zoo.model.load import load
from zoo.model.transforms import transforms
from zoo.transfer.datasets import ImageFolder, all_images, content_hashes
from zoo.util import distributed
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside
from zoo.weights.safetensors_writer import Chunked, write_safetensors

#: rows per block when features are copied between files
BLOCK_ROWS = 1024


def cache_key(weights_sha256: str, layer: str, transform_repr: str, hashes: list[str]) -> str:
    h = hashlib.sha256()
    for part in (weights_sha256, layer, transform_repr, *hashes):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


@dataclass
class FeatureSet:
    """Features of the readable images of an ImageFolder, in a safetensors file of the cache.

    ``kept[i]`` is the index (into the folder's files) of feature row ``i``; ``cached`` says
    whether the set came from the cache without a forward pass. Labels come from the folder as it
    is now, not from the cache (moving an image to another class changes no content hash)."""

    path: Path
    kept: list[int]
    num_features: int
    cached: bool
    label_list: list[int]

    def features(self):
        """All rows as one float32 tensor (N, D)."""
        from safetensors.torch import load_file

        return load_file(str(self.path))["features"]

    def labels(self):
        return torch.tensor(self.label_list, dtype=torch.int64)

    def rows(self, file_indices: list[int]):
        """Row indices (a LongTensor) of those files, in that order; unreadable (skipped) files have none."""
        row = {f: r for r, f in enumerate(self.kept)}
        return torch.tensor([row[i] for i in file_indices if i in row], dtype=torch.int64)

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator:
        """Row blocks of the features, read from disk one block at a time."""
        from safetensors import safe_open

        with safe_open(str(self.path), "pt") as f:
            sl = f.get_slice("features")
            for start in range(0, len(self.kept), rows):
                yield sl[start:start + rows]


def pooled(model, x):
    """The pooled features the classifier sees (timm's pre-logits), whatever the model's head."""
    if getattr(model, "num_classes", 0) == 0 or not hasattr(model, "forward_head"):
        return model(x)
    return model.forward_head(model.forward_features(x), pre_logits=True)


def layer_features(model, layer: str):
    """(function images -> (N, D) features, hook handle to remove or None): ``"pooled"`` (what the
    classifier sees), or the output of the module named ``layer`` (``blocks.5``),
    global-average-pooled when it is a feature map."""
    if layer == "pooled":
        return (lambda x: pooled(model, x)), None
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
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)

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


def extract(model, data: ImageFolder, *, batch_size: int = 32, workers: int | None = None,
            cache_dir: str | os.PathLike | None = None, progress: Progress | None = None,
            on_forward: Callable[[int], None] | None = None, layer: str = "pooled") -> FeatureSet:
    """Features (``layer``: see :func:`layer_features`) of every readable image of ``data``
    through ``model`` (a zoo.load model).

    Unreadable images are skipped and listed in ``data.skipped``. Uses and fills the feature
    cache in ``cache_dir`` (default ``ZOO_HOME/features``). ``on_forward(n)`` is called for every
    backbone batch actually run (tests and benchmarks count them). ``progress``
    (zoo.util.progress) sees one task in images (under torchrun: this rank's shard)."""
    tf = transforms(model)
    weights = getattr(model, "weights_sha256", None)
    if not weights:  # random init or a model not made by zoo.load: its features cannot be reused
        raise UsageError("feature extraction needs a model loaded by zoo.load with pretrained weights")
    forward, hook = layer_features(model, layer)
    # under torchrun each rank hashes its own shard of the files; the key needs all of them
    mine = list(distributed.shard(len(data.files)))
    hashes = [h for part in distributed.gather_objects(content_hashes([data.files[i] for i in mine])) for h in part]
    key = cache_key(weights, layer_key(model, layer), repr(tf), hashes)
    cache_dir = Path(cache_dir or home.features())
    cached = cache_dir / f"{key}.safetensors"
    # under torchrun every rank must take the same branch: a hit only if every rank sees the file
    label = f"extract {getattr(getattr(model, 'card', None), 'name', 'features')} ({layer})"
    if all(distributed.gather_objects(cached.is_file())):
        if hook:
            hook.remove()
        with Task(progress, "extract", f"{label} from the feature cache", len(data.files), "images") as task:
            return _from_cache(cached, data, task)

    cache_dir.mkdir(parents=True, exist_ok=True)
    raw = temp_beside(cache_dir / key, "rows")
    workers = default_workers() if workers is None else workers
    # under torchrun: this rank's contiguous shard, every image extracted exactly once across ranks
    loader = torch.utils.data.DataLoader(_Images([data.files[i] for i in mine], tf), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate, shuffle=False)
    model.eval().to(memory_format=torch.channels_last)
    kept: list[int] = []
    dim = 0
    task = Task(progress, "extract", label, len(mine), "images")
    try:
        with task, open(raw, "wb") as rows:
            for batch, idx, bad in loader:
                idx = [mine[j] for j in idx]
                for j, why in bad:
                    data.skipped.append((data.files[mine[j]], why))
                if batch is not None:
                    with torch.inference_mode():
                        out = forward(batch.contiguous(memory_format=torch.channels_last)).float()
                    if on_forward:
                        on_forward(len(idx))
                    dim = out.shape[-1]
                    rows.write(out.contiguous().numpy().tobytes())
                    kept += idx
                task.advance(len(idx) + len(bad))
        if distributed.active():
            kept, dim = _gather_shards(raw, kept, dim, data)
        if not kept:
            raise UsageError(f"none of the {len(data.files)} images under {data.root} could be read "
                             f"(first: {data.skipped[0][0]}: {data.skipped[0][1]})" if data.skipped else
                             f"no images under {data.root}")
        labels = torch.tensor([data.labels[i] for i in kept], dtype=torch.int64)

        def chunks():
            with open(raw, "rb") as fh:
                while piece := fh.read(BLOCK_ROWS * max(dim, 1) * 4):
                    yield piece

        write_safetensors({"features": Chunked("F32", [len(kept), dim], chunks()), "labels": labels,
                           "kept": torch.tensor(kept, dtype=torch.int64)},
                          str(cached), {"classes": json.dumps(data.classes), "weights_sha256": weights})
    finally:
        raw.unlink(missing_ok=True)
        model.to(memory_format=torch.contiguous_format)  # hand the model back as it came
        if hook:
            hook.remove()
    return FeatureSet(cached, kept, dim, cached=False, label_list=[data.labels[i] for i in kept])


def _gather_shards(raw: Path, kept: list[int], dim: int, data: ImageFolder) -> tuple[list[int], int]:
    """Every rank's rows into this rank's ``raw`` file (rank order = file order, since shards are
    contiguous), with the kept indices and skipped images of all ranks."""
    dim = max(distributed.gather_objects(dim))
    mine = torch.frombuffer(bytearray(raw.read_bytes()), dtype=torch.float32).reshape(len(kept), dim) \
        if kept else torch.empty(0, dim)
    rows = distributed.gather_rows(mine)
    raw.write_bytes(rows.contiguous().numpy().tobytes())
    skipped = distributed.gather_objects([(str(p), why) for p, why in data.skipped])
    data.skipped = [(Path(p), why) for part in skipped for p, why in part]
    return [i for part in distributed.gather_objects(kept) for i in part], dim


#: a feature file's mtime says when it was last used (``zoo cache prune`` reads it); refreshed at most this often
TOUCH_EVERY = 3600.0


def _from_cache(path: Path, data: ImageFolder, task: Task) -> FeatureSet:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        kept = f.get_tensor("kept").tolist()
        dim = f.get_slice("features").get_shape()[-1]
    keep = set(kept)
    data.skipped += [(data.files[i], "unreadable (found so when the features were cached)")
                     for i in range(len(data.files)) if i not in keep]
    task.advance(len(data.files))
    try:
        if time.time() - path.stat().st_mtime > TOUCH_EVERY:
            os.utime(path)
    except OSError:  # a read-only cache still serves its features
        pass
    return FeatureSet(path, kept, dim, cached=True, label_list=[data.labels[i] for i in kept])


def write_features(path: str | os.PathLike, features: FeatureSet, data: ImageFolder, meta: dict) -> Path:
    """Save features as ``.h5`` (h5py: datasets features/labels/paths, class names and metadata in
    attributes, written in row blocks) or ``.safetensors`` (paths and classes in the metadata)."""
    path = check_output(path)
    paths = [str(data.files[i]) for i in features.kept]
    meta = {**meta, "classes": json.dumps(data.classes)}
    tmp = temp_beside(path)
    n, d = len(features.kept), features.num_features
    try:
        if path.suffix == ".h5":
            import h5py
            import numpy as np

            with h5py.File(tmp, "w") as h5:
                ds = h5.create_dataset("features", shape=(n, d), dtype="float32", chunks=(min(max(n, 1), 256), max(d, 1)))
                start = 0
                for block in features.blocks():
                    ds[start:start + len(block)] = block.numpy()
                    start += len(block)
                h5.create_dataset("labels", data=features.labels().numpy())
                h5.create_dataset("paths", data=np.array(paths, dtype=h5py.string_dtype()))
                for k, v in meta.items():
                    h5.attrs[k] = v
        elif path.suffix == ".safetensors":
            chunks = (b.contiguous().numpy().tobytes() for b in features.blocks())
            write_safetensors({"features": Chunked("F32", [n, d], chunks), "labels": features.labels()}, str(tmp),
                              {**{k: str(v) for k, v in meta.items()}, "paths": json.dumps(paths)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class FeatureFile:
    """What :func:`extract_to_file` wrote (``path`` is None on a torchrun rank other than 0)."""

    path: Path | None
    images: int
    num_features: int
    classes: list[str]
    cached: bool  # the features came from the feature cache: no backbone forward
    skipped: list[tuple[Path, str]]  # unreadable images and why


def extract_to_file(name, data: str | os.PathLike, out: str | os.PathLike, *, batch_size: int = 32,
                    workers: int | None = None, layer: str = "pooled", progress: Progress | None = None) -> FeatureFile:
    """``zoo extract``: the features of every image of the ImageFolder ``data`` through the frozen
    backbone of ``name`` (any model name; see :func:`extract` for ``layer``), written to ``out``
    (``.h5`` or ``.safetensors``, checked before the backbone runs) with the model, weights sha256,
    layer and transform in its metadata. Under torchrun every rank extracts its shard; rank 0 writes."""
    check_output(out)
    folder = all_images(data)
    model = load(name, head=0)
    features = extract(model, folder, batch_size=batch_size, workers=workers, progress=progress, layer=layer)
    meta = {"model": model.card.name, "weights_sha256": model.weights_sha256, "layer": layer,
            "transform": repr(transforms(model))}
    path = write_features(out, features, folder, meta) if distributed.is_main() else None
    return FeatureFile(path, len(features.kept), features.num_features, list(folder.classes), features.cached,
                       list(folder.skipped))
