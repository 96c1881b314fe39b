"""Writing a verified offline bundle (the layout: zoo/weights/bundles.py) from the local cache or
from a hub's store: the chosen models' blobs copied and re-hashed on the way, their cards, the runs
the stages above hand over (:class:`~zoo.weights.bundle_manifest.BundledRun`), then the manifest.

Kept apart from the import side, which every pull reaches (a bundle is also a mirror): pulling
never loads the export's store and tar-writing code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from zoo import __version__
from zoo.cards.card import dump_card, hub_filename
from zoo.cards.registry import get_registry, list_models
from zoo.errors import BundleError, CacheError, UsageError
from zoo.store.objects import open_storage
from zoo.store.repos import RepoStore
from zoo.util.hashing import sha256_files
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside
from zoo.weights.cache import Cache
from zoo.weights.bundle_manifest import MANIFEST, MANIFEST_VERSION, BundledRun


@dataclass
class Exported:
    path: Path
    manifest_sha256: str
    models: list[dict]
    runs: list[dict] = field(default_factory=list)



@dataclass
class _Held:
    """A model a source holds: its manifest record, and how to write its verified bytes to a path."""

    record: dict
    write: Callable[[Path, bool, Task], None]


def _held_in_cache(cache: Cache) -> dict[str, _Held]:
    """What a zoo cache (``ZOO_HOME``, or a ``zoo serve --cache`` root) has pulled, by card name."""

    def writer(sha256: str):
        def write(dst: Path, link: bool, task: Task) -> None:
            src = cache.open_verified(sha256)  # never export bytes that changed since verification
            if link:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            else:
                shutil.copyfile(src, dst)
            task.advance(dst.stat().st_size)
        return write

    return {e.name: _Held({"name": e.name, "sha256": e.sha256, "size": e.size, "source": e.source,
                           "revision": e.revision, "hub_repo": e.hub_repo, "filename": e.filename}, writer(e.sha256))
            for e in cache.entries()}


def _held_in_store(location: str) -> dict[str, _Held]:
    """The cards whose weights a hub store holds (``zoo serve --storage s3://...`` or a directory):
    the same content-addressed ``blobs/<sha256>`` as the cache, found by the card's pinned sha256
    or by the file its ``hub_repo`` has on main. Read with one LIST of the blobs and one of the repos."""
    storage = open_storage(location)
    blobs = {k.split("/", 1)[1] for k in storage.list("blobs/")}
    repos = RepoStore(storage)
    repo_ids = set(repos.repo_ids())
    held = {}
    for card in get_registry().cards:
        sha, revision, filename = card.sha256 or None, None, hub_filename(card)
        if card.hub_repo in repo_ids:
            commit = repos.commit(card.hub_repo, "main")
            found = (commit.files.get(filename) or {}) if commit else {}
            if found.get("sha256") and (sha is None or found["sha256"] == sha):  # never another file than the pinned one
                sha, revision = found["sha256"], commit.id
        if sha in blobs:
            record = {"name": card.name, "sha256": sha, "size": None, "source": location, "revision": revision,
                      "hub_repo": card.hub_repo, "filename": filename}
            held[card.name] = _Held(record, _store_writer(storage, location, record))
    return held


def _store_writer(storage, location: str, record: dict):
    def write(dst: Path, link: bool, task: Task) -> None:
        """Stream ``blobs/<sha256>`` from the store into the staged bundle, hashing as it lands
        (a mismatch aborts the export, and the staging directory goes with it)."""
        digest = hashlib.sha256()
        with open(dst, "wb") as fh:
            for chunk in storage.stream(f"blobs/{record['sha256']}"):
                fh.write(chunk)
                digest.update(chunk)
                task.advance(len(chunk))
        if digest.hexdigest() != record["sha256"]:
            raise BundleError(f"{location}/blobs/{record['sha256']} ({record['name']}) is corrupt in the store: "
                              f"it hashes to {digest.hexdigest()}; nothing was exported")
    return write


def _select(held: dict[str, _Held], where: str, names: list[str] | None, pattern: str | None,
            all_cached: bool, runs: list[BundledRun] = ()) -> list[_Held]:
    """The models to export: named, matching ``pattern`` (exactly the cards ``zoo list PATTERN``
    lists: names, aliases and architectures), or all; then the base of every run."""
    if all_cached:
        if not held:
            raise UsageError(f"{where} holds no model")
        chosen = list(held.values())
    elif pattern:
        listed = [c.name for c in list_models(pattern)]
        chosen = [held[n] for n in listed if n in held]
        if not chosen:
            raise UsageError(f"no model in {where} matches {pattern!r} ('zoo list {pattern}' lists "
                             f"{len(listed)} cards, none of them there); it holds: {', '.join(sorted(held)) or 'none'}")
    elif not names and not runs:
        raise UsageError("name the models or runs to export, or use --all-cached or --pattern")
    else:
        chosen = [_held_model(held, where, name) for name in names or ()]
    for run in runs:
        base = _held_model(held, where, run.base)
        if base.record["sha256"] != run.base_sha256:
            raise CacheError(f"the run {run.path} was trained on {run.base} sha256 {run.base_sha256}, but {where} "
                             f"holds {base.record['sha256']}; pull the recorded weights first")
        chosen.append(base)
    return list({h.record["name"]: h for h in chosen}.values())


def _held_model(held: dict[str, _Held], where: str, name: str) -> _Held:
    card = get_registry().resolve(name)
    if card.name not in held:
        if where == "the cache":
            raise CacheError(f"{card.name} is not cached; run 'zoo pull {card.name}' first")
        raise UsageError(f"{card.name} is not in {where} (neither its pinned sha256 nor a file of "
                         f"{card.hub_repo or 'a hub repo'} is among its blobs)")
    return held[card.name]


def _run_records(runs: list[BundledRun]) -> list[dict]:
    """The manifest entries of ``runs``, each file hashed (names unique: they are directories)."""
    seen: dict[str, Path] = {}
    for run in runs:
        if run.name in seen:
            raise UsageError(f"two runs are named {run.name} ({seen[run.name]} and {run.path}); a bundle "
                             "keeps runs by directory name: rename one")
        seen[run.name] = run.path
    return [{"name": r.name, "base": r.base, "base_sha256": r.base_sha256,
             "files": {f: {"sha256": sha, "size": (r.path / f).stat().st_size}
                       for f, sha in zip(r.files, sha256_files([str(r.path / f) for f in r.files]))}}
            for r in sorted(runs, key=lambda r: r.name)]


def export_bundle(out: str | os.PathLike, names: list[str] | None = None, *, pattern: str | None = None,
                  all_cached: bool = False, tar: bool = False, link: bool = False, cache: Cache | None = None,
                  source: str | None = None, runs: list[BundledRun] = (), progress: Progress | None = None) -> Exported:
    """Write a bundle of models to ``out`` (a directory, or a ``.tar`` file with ``tar``), and of
    ``runs`` with their base models (zoo.transfer.mirror makes them of run directories).

    The models come from the local cache, or from ``source``: ``s3://BUCKET/PREFIX`` (a
    ``zoo serve --storage`` store: streamed and verified, never through a local cache) or a
    directory (another ``ZOO_HOME`` or a ``zoo serve --cache`` root, e.g. on a shared file system).
    ``link`` hard-links blobs from a cache where the file system allows (then the bundle shares
    the cache's files: a change to one is a change to the other); otherwise blobs are copied.
    The bundle is built beside ``out`` and renamed into place: a failure leaves nothing behind.
    ``progress`` (zoo.util.progress) sees one task, in bytes, for the blobs written.
    """
    if source is None:
        held, where = _held_in_cache(cache or Cache()), "the cache"
    elif source.startswith("s3://"):
        held, where = _held_in_store(source), source
    else:
        if not Path(source).is_dir():
            raise UsageError(f"--from {source}: no such directory (expected a ZOO_HOME, a zoo serve root, or s3://BUCKET/PREFIX)")
        held, where = {**_held_in_store(source), **_held_in_cache(Cache(source))}, source
    chosen = _select(held, where, names, pattern, all_cached, list(runs))
    run_records = _run_records(list(runs))
    out = Path(out)
    if not tar and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty directory; choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_beside(out, "partial")
    try:
        (staging / "blobs").mkdir(parents=True)
        (staging / "cards").mkdir()
        for run, record in zip(sorted(runs, key=lambda r: r.name), run_records):
            (staging / "runs" / run.name).mkdir(parents=True)
            for name, want in record["files"].items():
                _copy_verified(run.path / name, staging / "runs" / run.name / name, want["sha256"])
        registry = get_registry()
        sizes = [h.record.get("size") for h in chosen]
        total = sum(sizes) if all(isinstance(n, int) for n in sizes) else None  # a store's sizes are not listed
        with Task(progress, "mirror", f"export {len(chosen)} models to {out.name}", total, "bytes") as task:
            for h in chosen:
                dst = staging / "blobs" / h.record["sha256"]
                if not dst.exists():
                    h.write(dst, link, task)
                h.record["size"] = dst.stat().st_size
                card = registry.find(h.record["name"])
                if card is not None:
                    (staging / "cards" / f"{card.name}.toml").write_text(dump_card(card), encoding="utf-8")
        models = sorted((h.record for h in chosen), key=lambda m: m["name"])
        manifest = {"version": MANIFEST_VERSION, "zoo_version": __version__, "created": time.time(), "models": models,
                    **({"runs": run_records} if run_records else {})}
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        (staging / MANIFEST).write_bytes(data)
        (staging / f"{MANIFEST}.sha256").write_text(f"{digest}  {MANIFEST}\n")
        if tar:
            tmp = temp_beside(out)
            try:
                with tarfile.open(tmp, "w") as tf:
                    for path in sorted(staging.rglob("*")):
                        tf.add(path, arcname=str(path.relative_to(staging)), recursive=False)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            if out.exists():
                out.rmdir()  # empty (checked above)
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(out, digest, models, run_records)


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    """Copy a run's file into the staged bundle, hashing the copy: a file that changed since the
    manifest hashed it aborts the export (the staging directory goes with it)."""
    shutil.copyfile(src, dst)
    got = sha256_files([str(dst)])[0]
    if got != sha256:
        raise BundleError(f"{src} changed while it was exported (sha256 {got}, was {sha256}); nothing was exported")
