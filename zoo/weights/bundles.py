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

import hashlib
import json
import os
import re
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from zoo import __version__
from zoo.cards.card import REPO_ID_RE, dump_card, hub_filename, read_card, write_card
from zoo.cards.registry import get_registry, trial_registry
from zoo.cards.registry import list_models
from zoo.errors import BundleError, CacheError, CardError, UsageError
from zoo.store.objects import open_storage
from zoo.store.repos import RepoStore
from zoo.util.hashing import sha256_files
from zoo.util.paths import unsafe_relpath
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside
from zoo.weights.cache import SHA256_RE, Cache
from zoo.weights.hf_cache import link_hf_cache

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class Exported:
    path: Path
    manifest_sha256: str
    models: list[dict]
    runs: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class BundledRun:
    """A directory a bundle carries verbatim (a fine-tuning run, to the stages above) and the model
    it needs: ``base`` (a card name) with the weights ``base_sha256``."""

    name: str  # its directory name in the bundle, runs/<name>
    path: Path
    files: tuple[str, ...]
    base: str
    base_sha256: str


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


#: a manifest lists models, a few hundred bytes each; a far larger one is not a manifest
MAX_MANIFEST_BYTES = 64 << 20
_REVISION = re.compile(r"[0-9a-f]{40}\Z")


def read_manifest(bundle: str | os.PathLike) -> dict:
    """The manifest of a bundle directory or ``.tar`` (read without extracting blobs), every field
    that becomes a path checked: a name is a card name, sha256 and revision are hex of their
    length, ``filename`` is a safe relative path (zoo.util.paths) and ``hub_repo`` is ORG/NAME."""
    bundle = Path(bundle)
    try:
        if bundle.is_file():
            with tarfile.open(bundle) as tf:
                info = tf.getmember(MANIFEST)
                if not info.isfile() or info.size > MAX_MANIFEST_BYTES:
                    raise BundleError(f"{bundle}: {MANIFEST} is not a file under {MAX_MANIFEST_BYTES >> 20} MiB")
                data = tf.extractfile(info).read()
        else:
            path = bundle / MANIFEST
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{bundle}: {MANIFEST} is over {MAX_MANIFEST_BYTES >> 20} MiB: not a zoo manifest")
            data = path.read_bytes()
        manifest = json.loads(data)
    except RecursionError:
        raise BundleError(f"{bundle}: {MANIFEST} is nested too deeply to be a zoo manifest") from None
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        raise BundleError(f"{bundle} is not a zoo bundle (no readable {MANIFEST}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION or not isinstance(manifest.get("models"), list):
        raise BundleError(f"{bundle}: {MANIFEST} is not a version-{MANIFEST_VERSION} zoo manifest")
    for m in manifest["models"]:
        why = _bad_record(m)
        if why:
            raise BundleError(f"{bundle}: a model entry of {MANIFEST} is refused ({why}): {str(m)[:300]}")
    if not isinstance(manifest.get("runs", []), list):
        raise BundleError(f"{bundle}: runs in {MANIFEST} is not a list")
    for r in manifest.get("runs", []):
        why = _bad_run_record(r, {m["name"]: m["sha256"] for m in manifest["models"]})
        if why:
            raise BundleError(f"{bundle}: a run entry of {MANIFEST} is refused ({why}): {str(r)[:300]}")
    return manifest


def _plain_name(name) -> str | None:
    """Why ``name`` may not be one directory or file name under a directory, or None."""
    why = unsafe_relpath(name)
    if why:
        return why
    return "it has a '/'" if "/" in name else "it starts with '.'" if name.startswith(".") else None


def _bad_run_record(r, models: dict[str, str]) -> str | None:
    """Why a run entry may not be used, or None: its name and file names become paths, each file
    has a sha256 and size, and its base is a model of the same bundle with the recorded sha256."""
    if not isinstance(r, dict):
        return "not a table"
    if _plain_name(r.get("name")):
        return f"name {r.get('name')!r} is not a directory name: {_plain_name(r.get('name'))}"
    files = r.get("files")
    if not isinstance(files, dict) or not files:
        return "files is not a table of file names"
    for name, f in files.items():
        if _plain_name(name):
            return f"file {name!r} is not a file name: {_plain_name(name)}"
        if not isinstance(f, dict) or not isinstance(f.get("sha256"), str) or not SHA256_RE.match(f["sha256"]):
            return f"file {name!r} has no sha256 of 64 lowercase hex digits"
        if not isinstance(f.get("size"), int) or isinstance(f["size"], bool) or f["size"] < 0:
            return f"file {name!r} has no byte count"
    if models.get(r.get("base")) != r.get("base_sha256"):
        return f"its base {r.get('base')!r} (sha256 {r.get('base_sha256')!r}) is not a model of the bundle"
    return None


def _bad_record(m) -> str | None:
    """Why a manifest entry may not be used, or None: every field that becomes a path or a name is checked."""
    if not isinstance(m, dict):
        return "not a table"
    if not isinstance(m.get("name"), str) or unsafe_relpath(m["name"]) or "/" in m["name"]:
        return f"name {m.get('name')!r} is not a card name"
    if not isinstance(m.get("sha256"), str) or not SHA256_RE.match(m["sha256"]):
        return f"sha256 {m.get('sha256')!r} is not 64 lowercase hex digits"
    if not isinstance(m.get("size"), int) or isinstance(m["size"], bool) or m["size"] < 0:
        return f"size {m.get('size')!r} is not a byte count"
    if m.get("revision") not in (None, "") and not (isinstance(m["revision"], str) and _REVISION.match(m["revision"])):
        return f"revision {m['revision']!r} is not a 40-hex commit id"
    if m.get("filename") not in (None, "") and unsafe_relpath(m["filename"]):
        return f"filename {m['filename']!r} is not a safe relative path: {unsafe_relpath(m['filename'])}"
    if m.get("hub_repo") not in (None, "") and not (isinstance(m["hub_repo"], str) and REPO_ID_RE.match(m["hub_repo"])):
        return f"hub_repo {m['hub_repo']!r} is not ORG/NAME"
    return None


def _check_members(bundle: Path, tf: tarfile.TarFile) -> int:
    """Every member of a tar bundle is a plain file or directory at a safe relative path under
    ``blobs/``, ``cards/``, ``runs/`` or the manifest (no links, devices, absolute names or ``..``); returns
    their total size. Else a BundleError naming the member."""
    total = 0
    for member in tf.getmembers():
        kind = ("a link" if member.issym() or member.islnk() else "a device or fifo" if not (member.isfile() or member.isdir())
                else None)
        why = unsafe_relpath(member.name) or kind
        top = member.name.split("/", 1)[0]
        if not why and top not in ("blobs", "cards", "runs", MANIFEST, f"{MANIFEST}.sha256"):
            why = "outside blobs/, cards/, runs/ and the manifest"
        if why:
            raise BundleError(f"{bundle}: member {member.name!r} is refused ({why}); nothing was imported")
        total += member.size
    return total


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
                    cache.ensure_space(_check_members(bundle, tf) + need, f"importing {bundle.name}")
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
