"""Verified offline bundles: move weights to machines without internet.

A bundle is a directory (or a ``.tar`` of one)::

    manifest.json            version, zoo version, and per model: name, sha256, size, source, hub repo, file;
                             per run: name, the base model it needs (card name and sha256), each file's sha256 and size
    manifest.json.sha256     the manifest's own sha256 (printed by export; check it out of band)
    blobs/<sha256>           the weights, named by their hash as in the cache
    cards/<name>.toml        each model's card, so a machine that lacks a card (a user's) learns it
    runs/<name>/<file>       fine-tuning runs, each a run directory as ``zoo finetune`` wrote it

``export_bundle`` reads from the local cache, or from a hub's store (``--from s3://BUCKET/PREFIX``
or a directory): both keep the same content-addressed ``blobs/<sha256>``, so a store's blobs are
streamed into the bundle and hashed on the way, without passing through a local cache.

Writing one is zoo/weights/bundle_export.py; the manifest and its checks are
zoo/weights/bundle_manifest.py; this module is the import side, and the bundle as a mirror.

``import_bundle`` hashes every file against the manifest before anything enters the cache: one bad
file aborts the import, names the file, and leaves the cache as it was.

A run travels with its base: the base's weights and card are an ordinary model entry, and the run's
files are carried verbatim. This stage knows a run only as a :class:`BundledRun` (files to carry
and the model they need); what makes the files a run, and checking one before it is imported, is
the transfer stage's (zoo/transfer/mirror.py passes ``check_run``). An imported run is a plain run
directory again, ``runs_to/<name>``, whose base is in the cache: ``zoo.load`` loads it offline. A bundle directory is also
a mirror (an entry of ``$ZOO_MIRRORS``), pulled from with the same verification; ``import_bundle
(hf_cache=True)`` also writes the Hugging Face cache layout (zoo/weights/hf_cache.py).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Callable

from zoo.cards.card import read_card, write_card
from zoo.cards.registry import get_registry, trial_registry
from zoo.errors import BundleError, CardError, UsageError
from zoo.util.hashing import sha256_files
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside
from zoo.weights.cache import Cache
from zoo.weights.hf_cache import link_hf_cache
from zoo.weights.bundle_manifest import check_members, read_manifest


def import_bundle(bundle: str | os.PathLike, *, cache: Cache | None = None, hf_cache: bool = False,
                  runs_to: str | os.PathLike | None = None, check_run: Callable[[Path], None] | None = None,
                  progress: Progress | None = None) -> list[dict]:
    """Verify every file of a bundle, then add them to the cache (all or nothing) and return its
    models. A bundle's runs are written to ``runs_to/<name>`` (required when it holds runs; a run
    already there with the same files is left as it is), each first checked by ``check_run`` (a
    staged run directory -> None; raising refuses the import). ``progress`` (zoo.util.progress)
    sees a task in bytes for the hashing."""
    cache = cache or Cache()
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    runs = manifest.get("runs", [])
    if runs and runs_to is None:
        raise UsageError(f"{bundle} holds runs ({', '.join(r['name'] for r in runs)}): say where they go (--runs-to DIR)")
    dests = _run_destinations(bundle, runs, Path(runs_to or "."))
    extracted = None
    staged: dict[str, Path] = {}
    try:
        root = bundle
        models = manifest["models"]
        need = sum(m["size"] for m in models) + sum(f["size"] for r in runs for f in r["files"].values())
        cache.root.mkdir(parents=True, exist_ok=True)
        if bundle.is_file():
            extracted = temp_beside(cache.root / "bundle", "import")  # a dead importer's is pruned (zoo/home.py)
            try:
                with tarfile.open(bundle) as tf:
                    cache.ensure_space(check_members(bundle, tf) + need, f"importing {bundle.name}")
                    extracted.mkdir()
                    tf.extractall(extracted, filter="data")  # checked above; the filter is a second guard
            except tarfile.TarError as exc:
                raise BundleError(f"{bundle}: {exc}; nothing was imported") from None
            root = extracted
        else:
            cache.ensure_space(need, f"importing {bundle.name}")
        cards = _bundle_cards(bundle, root, models)
        _verify_files(bundle, root, models, runs, progress)
        for r in runs:
            if check_run is not None:
                check_run(root / "runs" / r["name"])
            if dests[r["name"]] is not None:  # staged beside its destination, renamed into place at the end
                staged[r["name"]] = temp_beside(dests[r["name"]], "import")
                staged[r["name"]].mkdir(parents=True)
                for name in r["files"]:  # what the manifest lists and _verify_files hashed, nothing else
                    shutil.copyfile(root / "runs" / r["name"] / name, staged[r["name"]] / name)
        paths = [root / "blobs" / m["sha256"] for m in models]
        added = []  # every file is good: now the blobs enter the cache, all of them or none
        try:
            for m, p in zip(models, paths):
                if not cache.has_blob(m["sha256"]):
                    cache.add_file(p, m["sha256"])
                    added.append(m["sha256"])
        except BaseException:
            for sha in added:
                cache.remove_blob(sha)
            raise
        for m in models:  # then the names: cards and entries (small writes, renamed into place)
            if m["name"] in cards:  # validated, and owning nothing another card owns (_bundle_cards)
                (cache.root / "cards").mkdir(exist_ok=True)
                write_card(cards[m["name"]], cache.root / "cards" / f"{m['name']}.toml")
            cache.record(m["name"], m["sha256"], m["size"], f"bundle {bundle}", revision=m.get("revision") or None,
                         hub_repo=m.get("hub_repo"), filename=m.get("filename") or "model.safetensors")
        for name, tmp in staged.items():  # and the runs, each renamed into place whole
            os.replace(tmp, dests[name])
        if hf_cache:
            link_hf_cache([m["name"] for m in models], cache=cache)
        return models
    finally:
        if extracted:
            shutil.rmtree(extracted, ignore_errors=True)
        for tmp in staged.values():
            shutil.rmtree(tmp, ignore_errors=True)


def _run_destinations(bundle: Path, runs: list[dict], runs_to: Path) -> dict[str, Path | None]:
    """Where each run of the bundle goes: ``runs_to/<name>``, or None when that directory holds the
    same files already; a directory holding anything else refuses the import before any work."""
    out: dict[str, Path | None] = {}
    for r in runs:
        dest = Path(os.path.abspath(runs_to / r["name"]))
        if dest.exists():
            have = sorted(p.name for p in dest.iterdir()) if dest.is_dir() else None
            if have != sorted(r["files"]) or any(sha256_files([str(dest / f)])[0] != want["sha256"]
                                                 for f, want in r["files"].items()):
                raise BundleError(f"{dest} exists and is not the run {r['name']} of {bundle}; import to another "
                                  "directory (--runs-to DIR); nothing was imported")
            out[r["name"]] = None
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            out[r["name"]] = dest
    return out


def _verify_files(bundle: Path, root: Path, models: list[dict], runs: list[dict], progress: Progress | None) -> None:
    """Every blob and run file of the bundle hashes to its manifest's sha256, else a BundleError
    naming the file (before anything enters the cache)."""
    expected = [(root / "blobs" / m["sha256"], m["sha256"], m["name"]) for m in models]
    expected += [(root / "runs" / r["name"] / f, want["sha256"], f"run {r['name']}")
                 for r in runs for f, want in r["files"].items()]
    for path, _, what in expected:
        if not path.is_file():
            raise BundleError(f"{bundle}: {path.relative_to(root)} ({what}) is missing")
    with Task(progress, "mirror", f"verify {len(expected)} files of {bundle.name}",
              sum(p.stat().st_size for p, _, _ in expected), "bytes") as task:
        actual = sha256_files([str(p) for p, _, _ in expected], task)
    for (path, want, what), got in zip(expected, actual):
        if got != want:
            raise BundleError(f"{bundle}: {path.relative_to(root)} ({what}) is corrupt: expected sha256 "
                              f"{want}, got {got}; nothing was imported")


def _bundle_cards(bundle: Path, root: Path, models: list[dict]) -> dict:
    """The cards a bundle brings for models no card knows yet, each validated and checked against
    every card zoo reads now: a card that does not parse, or that takes a name, alias or
    architecture default another card owns, refuses the whole import (naming both cards) before
    anything enters the cache."""
    registry = get_registry()
    cards = {}
    for m in models:
        path = root / "cards" / f"{m['name']}.toml"
        if registry.find(m["name"]) is not None or not path.is_file():
            continue
        try:
            card = read_card(path)
        except CardError as exc:
            raise BundleError(f"{bundle}: its card for {m['name']} is invalid ({exc}); nothing was imported") from None
        if card.name != m["name"]:
            raise BundleError(f"{bundle}: cards/{path.name} is the card of {card.name}, not of {m['name']}; "
                              "nothing was imported")
        cards[card.name] = card
    for card, why in trial_registry(list(cards.values())).refused:
        if card.name in cards:
            raise BundleError(f"{bundle}: its card {card.name} is refused: {why}; nothing was imported")
    return cards


def fetch_from_bundle(bundle: str, name: str, sha256: str | None, cache: Cache) -> tuple[str, int] | None:
    """A bundle directory used as a mirror: add ``name``'s file to the cache if the bundle holds it
    (verified against ``sha256`` when given, else against the manifest); None when it does not."""
    manifest = read_manifest(bundle)
    for m in manifest["models"]:
        if m["name"] == name or (sha256 and m["sha256"] == sha256):
            want = sha256 or m["sha256"]
            got = cache.add_file(Path(bundle) / "blobs" / m["sha256"], want)
            return got, m["size"]
    return None
