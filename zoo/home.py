"""Every path under ``ZOO_HOME``: what it holds, which module writes it, and what ``zoo cache prune`` removes.

``ZOO_HOME`` (else ``~/.cache/zoo``, see :func:`zoo.config.zoo_home`) is one directory that several
processes, and on a shared file system several hosts, use at once: every file in it is written to a
temp file beside its destination and renamed into place (zoo/util/tempfiles.py), so a reader never
sees half a file. No module builds a path under it except through this table; ``zoo cache ls``
shows each area's size and ``zoo cache prune`` applies the rules (zoo/weights/cache.py).

Strings, not pathlib: the card index is on the ``zoo list`` path, which never imports pathlib.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from zoo import config


@dataclass(frozen=True)
class Area:
    """One folder (or file) directly under ``ZOO_HOME``."""

    name: str
    holds: str
    writer: str  # the module that writes it
    prune: str  # what `zoo cache prune` removes there


BLOBS, VERIFIED, VIEWS, MODELS, PINS, LOCKS = "blobs", "verified", "views", "models", "pins", "locks"
INDEX, CARDS, FEATURES, ENGINES, RUNS, MEASUREMENTS, REPOS, DATASETS, HUB_SECRET, XET = (
    "index", "cards", "features", "engines", "runs", "measurements", "repos", "datasets", "hub-secret", "xet")
#: an older zoo's pins, in one file (read, never written)
LEGACY_PINS = "pins.json"

AREAS: tuple[Area, ...] = (
    Area(BLOBS, "weights files named by the sha256 of their bytes (read-only), and downloads in progress",
         "zoo.weights.cache", "blobs no entry, pin, card or served revision refers to, once an hour old; "
                              "temp files whose writer is gone"),
    Area(VERIFIED, "each blob's stat when it was last hashed: a load compares it instead of re-hashing",
         "zoo.weights.cache", "with its blob"),
    Area(VIEWS, "<sha256>.safetensors links to blobs, for loaders that pick the format by extension",
         "zoo.weights.cache", "with its blob"),
    Area(MODELS, "one entry per cached name: its blob, source, revision, when pulled and last used",
         "zoo.weights.cache", "entries not used for --older-than"),
    Area(PINS, "the sha256 first downloaded for a card that pins none (trust on first use)",
         "zoo.weights.cache", "nothing: a pin is a record of trust, and keeps its blob"),
    Area(LOCKS, "fetch locks (empty files; the kernel releases a dead holder's lock)", "zoo.weights.cache", "nothing"),
    Area(INDEX, "cards.json: the parsed card files, rebuilt when a card file changes", "zoo.cards.registry",
         "nothing (a stale index is rebuilt, a missing one only costs a parse)"),
    Area(CARDS, "cards that arrived with an imported bundle", "zoo.weights.bundles", "nothing"),
    Area(FEATURES, "bottleneck features, one row per image: <space>-<shard>.safetensors files, where the space "
                   "is the weights, layer, pooling and transform, and each row is found by its image's sha256",
         "zoo.transfer.feature_cache", "shard files not used for --older-than; temp files whose writer is gone"),
    Area(ENGINES, "ONNX graphs of models' forward passes for --engine onnxruntime: <key>.onnx beside <key>.json, "
                  "which records its sha256 (the key: weights and head sha256, output, input size, opset, exporter)",
         "zoo.model.engine", "graphs not used for --older-than; temp files whose writer is gone"),
    Area(RUNS, "published runs fetched by zoo.load('hf://ORG/NAME'), in huggingface_hub's cache layout",
         "zoo.transfer.publish", "runs not fetched or loaded for --older-than"),
    Area(MEASUREMENTS, "the latest 'zoo compare' figures of each card on this machine",
         "zoo.compare.measurements", "measurements older than --older-than"),
    Area(REPOS, "model repos uploaded to a 'zoo serve' over this directory: commits, branches, tags, "
                "pull requests and discussions", "zoo.store.repos", "nothing (and the blobs their commits name stay)"),
    Area(DATASETS, "dataset repos uploaded to a 'zoo serve' over this directory, laid out as repos",
         "zoo.store.repos", "nothing (and the blobs their commits name stay)"),
    Area(HUB_SECRET, "the key 'zoo serve' signs upload links and Xet tokens with", "zoo.hub.auth", "nothing"),
    Area(XET, "the Xet store of a 'zoo serve' over this directory: verified xorbs and their chunk index, which "
              "repos hold each xorb, the dedupe index, and each uploaded file's reconstruction (its bytes are "
              "an ordinary blob)", "zoo.hub.xet.cas", "nothing (the blobs made from them are pruned as blobs)"),
)
#: temp directories of a bundle import, directly under ZOO_HOME (pruned when their writer is gone)
BUNDLE_STAGING = "bundle"


def root() -> str:
    """``ZOO_HOME`` now."""
    return config.zoo_home()


def path(area: str, *parts: str, base: str | os.PathLike | None = None) -> str:
    """``ZOO_HOME/<area>/<parts...>`` (or under ``base``, another zoo directory such as a
    ``zoo serve --cache`` root); ``area`` must be one of :data:`AREAS` (or the legacy pins file)."""
    if area not in _NAMES:
        raise ValueError(f"{area!r} is not an area of ZOO_HOME; add it to zoo/home.py first")
    return os.path.join(os.fspath(base) if base is not None else root(), area, *parts)


_NAMES = frozenset(a.name for a in AREAS) | {LEGACY_PINS, BUNDLE_STAGING}


def card_index() -> str:
    return path(INDEX, "cards.json")


def imported_cards() -> str:
    return path(CARDS)


def features() -> str:
    return path(FEATURES)


def engines() -> str:
    return path(ENGINES)


def runs() -> str:
    return path(RUNS)


def measurements(base: str | os.PathLike | None = None) -> str:
    """Where ``zoo compare`` keeps its latest figures (under ``base``: a ``zoo serve --cache`` root)."""
    return path(MEASUREMENTS, base=base)


def usage(base: str | os.PathLike | None = None) -> list[tuple[Area, int]]:
    """Bytes each area holds (links counted as links, not what they point to): ``zoo cache ls``."""
    out = []
    for area in AREAS:
        top = path(area.name, base=base)
        total = 0
        if os.path.isfile(top):
            total = os.lstat(top).st_size
        for folder, _, files in os.walk(top):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except FileNotFoundError:  # removed while we walked
                    pass
        out.append((area, total))
    return out
