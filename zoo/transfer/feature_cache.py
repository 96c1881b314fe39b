"""The per-image feature cache: what is on disk, how a row is found, sealed into a shard and touched.

The cache is per image. A row depends on its image and on its *space*: the backbone's weights
sha256 (and a run's head), the layer, the pooling, the transform (the input size is part of it)
and the engine that ran the backbone (torch or ONNX Runtime: zoo/model/engine.py). Within a space a
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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import struct
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from zoo.errors import UsageError
from zoo.transfer.datasets import ImageFolder, content_hashes
from zoo.util import distributed
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside
from zoo.weights.safetensors_writer import Chunked, write_safetensors

log = logging.getLogger(__name__)

#: rows per block when features are copied between files
BLOCK_ROWS = 1024
#: pending rows are sealed into a shard file once they reach this size: an interrupted run keeps them
SHARD_BYTES = 64 << 20
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


def space_key(weights_sha256: str, layer: str, pool: str, transform_repr: str, engine: str = "torch") -> str:
    """The space of a row: everything it depends on besides its image (32 hex digits), the engine
    that computed it included, so that rows of two engines never mix. torch's key is the one zoo
    wrote before it had engines: caches made then stay valid."""
    parts = ("space", weights_sha256, layer, f"pool:{pool}", transform_repr)
    return _digest(*parts, *(() if engine == "torch" else (f"engine:{engine}",)))[:32]


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
        with RowReader() as reader:
            return reader.rows(self.where, self.shape)

    def labels(self):
        return torch.tensor(self.label_list, dtype=torch.int64)

    def rows(self, file_indices: list[int]):
        """Row indices (a LongTensor) of those files, in that order; unreadable (skipped) files have none."""
        row = {f: r for r, f in enumerate(self.kept)}
        return torch.tensor([row[i] for i in file_indices if i in row], dtype=torch.int64)

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator:
        """Row blocks of the features, read from disk one block at a time."""
        with RowReader() as reader:
            for start in range(0, len(self.kept), rows):
                yield reader.rows(self.where[start:start + rows], self.shape)


class RowReader:
    """Open shard files, read runs of consecutive rows as slices (one read per run, not per row)."""

    def __init__(self):
        self._stack = ExitStack()
        self._slices: dict[Path, object] = {}

    def __enter__(self) -> "RowReader":
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


# --- the shards of a space: finding rows, sealing new ones


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


def _hash_all(data: ImageFolder, progress: Progress | None, label: str) -> list[str]:
    """The content sha256 of every file (under torchrun each rank hashes its shard; all get all),
    kept on the folder: a run that extracts twice from one folder (features, then a frozen prefix;
    one compare's models) hashes it once."""
    if data.content is not None and len(data.content) == len(data.files):
        return data.content
    mine = list(distributed.shard(len(data.files)))
    out: list[str] = []
    with Task(progress, "extract", f"{label}: hash images", len(mine), "images") as task:
        for start in range(0, len(mine), HASH_BLOCK):
            out += content_hashes([data.files[i] for i in mine[start:start + HASH_BLOCK]])
            task.advance(len(mine[start:start + HASH_BLOCK]))
    data.content = [k for part in distributed.gather_objects(out) for k in part]
    return data.content


def _assemble(data: ImageFolder, keys: list[str], where: dict[str, tuple[Path, int]], new: set[str],
              why: dict[str, str], shape, space: str) -> FeatureSet:
    """The FeatureSet of ``data``'s files in order; files without a row are listed in ``data.skipped``."""
    kept = [i for i, k in enumerate(keys) if k in where]
    listed = {p for p, _ in data.skipped}  # a second extraction from the folder lists each once
    data.skipped += [(data.files[i], why.get(k, k)) for i, k in enumerate(keys) if k not in where
                     and data.files[i] not in listed]
    if not kept:
        raise UsageError(f"none of the {len(data.files)} images under {data.root} could be read "
                         f"(first: {data.skipped[0][0]}: {data.skipped[0][1]})" if data.skipped else
                         f"no images under {data.root}")
    return FeatureSet(kept, tuple(shape), cached=not new, label_list=[data.labels[i] for i in kept],
                      where=[where[keys[i]] for i in kept], from_cache=sum(keys[i] not in new for i in kept),
                      space=space)
