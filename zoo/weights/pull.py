"""Pull, verify, pin and lock a card's weights: mirrors and sources in order, the sha256 decides.

``pull(name)`` ends with a verified file in the cache or fails naming what failed for every source:
never a partial model. Order: each ``$ZOO_MIRRORS`` endpoint (asked for the card's ``hub_repo``),
then the card's own sources. The expected sha256 is the card's pin, else a pin recorded on an
earlier download (``pins/<name>.json`` in ``ZOO_HOME``), else the hub's LFS sha256 (its ETag), which is
then recorded; every source of a card must yield the same bytes after its declared conversion.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zoo import config
from zoo.weights.cache import Cache, CacheError, CorruptBlobError, Entry
from zoo.util.hashing import sha256_files
from zoo.cards.card import Card
from zoo.weights.convert import ConversionError, convert_checkpoint
from zoo.errors import UsageError, ZooError
from zoo.cards.registry import get_registry
from zoo.weights.sources import SourceError, download, hf_remote, is_remote, local_path, remote_for
from zoo.cards.uri import parse_uri

DEFAULT_FILENAME = "model.safetensors"
LOCK_VERSION = 1

#: progress(event, value): ("start", total bytes or None), ("advance", n bytes), ("source", label)
Progress = Callable[[str, object], None]


class PullError(ZooError):
    """No mirror or source delivered the right bytes; lists what each one said."""


@dataclass
class Expected:
    sha256: str | None
    size: int | None
    why: str  # "card", "pin", "lock" or "" (none yet)


def _noop(event: str, value: object) -> None:
    pass


def expected_for(card: Card, cache: Cache) -> Expected:
    if card.sha256:
        return Expected(card.sha256, card.size_bytes, "card")
    pin = cache.pin_for(card.name)
    if pin:
        return Expected(pin["sha256"], pin.get("size"), "pin")
    return Expected(None, None, "")


def hub_filename(card: Card) -> str:
    """The file name under ``hub_repo`` (the path of the card's hf:// source, else model.safetensors)."""
    for src in card.sources:
        uri = parse_uri(src.uri)
        if uri.scheme == "hf" and uri.path and not src.converter:
            return uri.path
    return DEFAULT_FILENAME


def _fetch_remote(cache: Cache, remote, key: str, want: Expected, progress: Progress) -> tuple[str, int]:
    sha = want.sha256 or remote.sha256
    if want.sha256 and remote.sha256 and remote.sha256 != want.sha256:
        raise CorruptBlobError(f"sha256 mismatch: expected {want.sha256}, the hub reports {remote.sha256}")
    size = remote.size or want.size
    cache.ensure_space(size, f"downloading {key}")
    progress("start", size)
    # a partial file is resumed only when the final sha256 is known up front (it is then named by
    # it): the hash at the end checks the stitched bytes; an unknown file always starts from byte 0
    resumable = sha is not None
    with cache.writer(f"sha-{sha}" if resumable else key, resume=resumable) as writer:
        if writer.offset:
            progress("advance", writer.offset)
        try:
            download(remote, writer, lambda n: progress("advance", n))
        except SourceError:
            writer.discard(keep_partial=True)  # resumable by the next pull
            raise
        got = writer.commit(sha, expected_size=size)
    return got, cache.blob_path(got).stat().st_size


def _fetch_source(cache: Cache, card: Card, src, want: Expected, progress: Progress) -> tuple[str, int, str | None]:
    """One card source -> (sha256, size, revision) of a verified blob."""
    uri = parse_uri(src.uri)
    revision = None
    if src.converter:
        raw_tmp = None
        if is_remote(uri):
            remote = remote_for(uri)
            raw_sha, _ = _fetch_remote(cache, remote, f"raw-{card.name}", Expected(src.sha256, None, "card"), progress)
            raw = str(cache.blob_path(raw_sha))
            raw_tmp = raw_sha
        else:
            raw = local_path(uri)
            progress("start", os.path.getsize(raw))
            if src.sha256:
                from zoo.util.hashing import sha256_file

                got = sha256_file(raw, lambda n: progress("advance", n))
                if got != src.sha256:
                    raise CorruptBlobError(f"raw file {raw}: expected sha256 {src.sha256}, got {got}")
        cache.blobs.mkdir(parents=True, exist_ok=True)
        tmp = cache.temp_blob(f"convert-{card.name}")
        try:
            sha = convert_checkpoint(raw, src.converter, card.architecture, str(tmp), source_uri=src.uri,
                                     source_sha256=src.sha256 or "")
            if want.sha256 and sha != want.sha256:
                raise CorruptBlobError(f"converted bytes differ: expected sha256 {want.sha256}, got {sha} "
                                       f"(converter {src.converter})")
            size = tmp.stat().st_size
            cache.commit_file(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)
            if raw_tmp:
                cache.remove_blob(raw_tmp)
        return sha, size, revision
    if is_remote(uri):
        remote = remote_for(uri)
        sha, size = _fetch_remote(cache, remote, card.name, want, progress)
        return sha, size, remote.revision
    path = local_path(uri)
    progress("start", os.path.getsize(path))
    sha = cache.add_file(path, want.sha256, lambda n: progress("advance", n))
    return sha, cache.blob_path(sha).stat().st_size, None


def _attempts(card: Card, cache: Cache, want: Expected, progress: Progress):
    """(label, fetch) pairs in order: mirrors first, then the card's sources."""
    for mirror in config.mirrors():
        def from_mirror(mirror=mirror):
            if "://" not in mirror or mirror.startswith("file://"):  # a bundle directory as a mirror
                from zoo.weights.bundles import BundleError, fetch_from_bundle

                path = mirror[len("file://"):] if mirror.startswith("file://") else mirror
                try:
                    got = fetch_from_bundle(path, card.name, want.sha256, cache)
                except BundleError as exc:
                    raise SourceError(str(exc)) from None
                if got is None:
                    raise SourceError(f"the bundle holds no {card.name}")
                return got[0], got[1], None
            remote = hf_remote(card.hub_repo, hub_filename(card), endpoint=mirror)
            sha, size = _fetch_remote(cache, remote, card.name, want, progress)
            return sha, size, remote.revision
        yield f"mirror {mirror}", from_mirror
    for src in card.sources:
        yield src.uri, (lambda src=src: _fetch_source(cache, card, src, want, progress))


def pull(name: str | Card, *, cache: Cache | None = None, progress: Progress | None = None,
         expected: Expected | None = None, force: bool = False) -> Path:
    """Make sure the card's weights are in the cache, verified; return the blob's path.

    ``expected`` overrides the card's sha256 (``zoo pull --lock``). ``force`` fetches again even
    when a verified copy is cached (``zoo verify --repair``).
    """
    card = name if isinstance(name, Card) else get_registry().resolve(name)
    cache = cache or Cache()
    progress = progress or _noop
    want = expected or expected_for(card, cache)
    if want.sha256 and not force and cache.has_blob(want.sha256):
        path = cache.open_verified(want.sha256)
        if cache.entry(card.name) is None:
            cache.record(card.name, want.sha256, path.stat().st_size, "cache", hub_repo=card.hub_repo,
                         filename=hub_filename(card))
        cache.touch(card.name)
        return path
    with cache.lock(f"pull-{card.name}"):
        if not force:  # another process may have finished (and pinned) it while we waited
            want = expected or expected_for(card, cache)
            done = cache.entry(card.name)
            sha = want.sha256 or (done.sha256 if done else None)
            if sha and cache.has_blob(sha) and (not want.sha256 or not done or done.sha256 == sha):
                if done is None or done.sha256 != sha:
                    cache.record(card.name, sha, cache.blob_path(sha).stat().st_size, "cache",
                                 hub_repo=card.hub_repo, filename=hub_filename(card))
                return cache.open_verified(sha)
        if force and want.sha256:
            cache.remove_blob(want.sha256)
        failures = []
        for label, fetch in _attempts(card, cache, want, progress):
            progress("source", label)
            try:
                sha, size, revision = fetch()
            except (SourceError, CacheError, ConversionError, UsageError) as exc:
                failures.append(f"  {label}: {exc}")
                continue
            cache.record(card.name, sha, size, label, revision=revision, hub_repo=card.hub_repo,
                         filename=hub_filename(card))
            if not want.sha256:
                cache.pin(card.name, sha, size, label)  # trust on first use, verified from now on
            return cache.blob_path(sha)
    hint = ""
    if config.offline():
        hint = (f"\nZOO_OFFLINE/HF_HUB_OFFLINE is set: run 'zoo pull {card.name}' on a connected machine, "
                "then 'zoo mirror export' there and 'zoo mirror import' here")
    raise PullError(f"could not get the weights of {card.name}:\n" + "\n".join(failures) + hint)


def pull_uri(text: str, *, cache: Cache | None = None, progress: Progress | None = None) -> Path:
    """Fetch any source URI (no card) into the cache; verified against the hub's sha256 when it
    reports one. For ad-hoc files: ``zoo pull hf://org/repo/file.safetensors``."""
    cache = cache or Cache()
    progress = progress or _noop
    uri = parse_uri(text)
    progress("source", text)
    key = "uri-" + hashlib.sha256(text.encode()).hexdigest()[:16]  # the same URI, the same index name
    if is_remote(uri):
        remote = remote_for(uri)
        sha, size = _fetch_remote(cache, remote, key, Expected(None, None, ""), progress)
    else:
        path = local_path(uri)
        progress("start", os.path.getsize(path))
        sha = cache.add_file(path, None, lambda n: progress("advance", n))
        size = os.path.getsize(path)
    cache.record(key, sha, size, text)  # indexed, so prune keeps it while it is used
    return cache.blob_path(sha)


def open_weights(name: str | Card, cache: Cache | None = None) -> Path:
    """The verified weights file of a card, without any network: what ``zoo.load`` opens."""
    card = name if isinstance(name, Card) else get_registry().resolve(name)
    cache = cache or Cache()
    want = expected_for(card, cache)
    entry = cache.entry(card.name)
    sha = want.sha256 or (entry.sha256 if entry else None)
    if not sha or not cache.has_blob(sha):
        raise CacheError(f"the weights of {card.name} are not in the cache ({cache.root}); run 'zoo pull {card.name}'")
    path = cache.open_verified(sha)
    cache.touch(card.name)
    return path


@dataclass
class VerifyResult:
    name: str
    sha256: str
    actual: str | None  # None: the file is missing

    @property
    def ok(self) -> bool:
        return self.actual == self.sha256


def verify(names: list[str] | None = None, *, cache: Cache | None = None, repair: bool = False,
           progress: Callable[[int], None] | None = None) -> list[VerifyResult]:
    """Re-hash cached weights (all, or those of ``names``) against their pinned or recorded sha256,
    in parallel across cores; with ``repair``, fetch each bad one again."""
    cache = cache or Cache()
    entries: list[Entry] = cache.entries()
    if names:
        wanted = {get_registry().resolve(n).name for n in names}
        missing = wanted - {e.name for e in entries}
        if missing:
            raise CacheError(f"not in the cache: {', '.join(sorted(missing))}; run 'zoo pull NAME' first")
        entries = [e for e in entries if e.name in wanted]
    by_sha: dict[str, list[Entry]] = {}
    for e in entries:
        card = get_registry().find(e.name)
        sha = (expected_for(card, cache).sha256 if card else None) or e.sha256
        by_sha.setdefault(sha, []).append(e)
    present = [s for s in by_sha if cache.has_blob(s)]
    actual = dict(zip(present, sha256_files([str(cache.blob_path(s)) for s in present], progress)))
    results = []
    for sha, group in by_sha.items():
        got = actual.get(sha)
        if got == sha:
            cache.stamp(sha)
        for e in group:
            results.append(VerifyResult(e.name, sha, got))
    if repair:
        for r in [r for r in results if not r.ok]:
            pull(r.name, cache=cache, force=True)
            r.actual = cache.verify_blob(r.sha256)
    return sorted(results, key=lambda r: r.name)


def pin(name: str, cache: Cache | None = None) -> tuple[str, str]:
    """Record a card's downloaded sha256 for good: into the card file when it is a writable file
    in a checkout, else into ``pins/<name>.json`` in ``ZOO_HOME``. Returns (sha256, where)."""
    import dataclasses

    from zoo.cards.card import write_card

    card = get_registry().resolve(name)
    cache = cache or Cache()
    entry = cache.entry(card.name)
    if entry is None:
        raise CacheError(f"{card.name} has not been downloaded; run 'zoo pull {card.name}' first")
    if card.sha256 and card.sha256 != entry.sha256:
        raise CorruptBlobError(f"{card.name} pins {card.sha256}, the cache holds {entry.sha256}; run 'zoo verify --repair'")
    installed = os.path.basename(os.path.dirname(card.path or "")) == "shipped_cards"  # inside a wheel
    if card.path and not installed and os.access(card.path, os.W_OK):
        with open(card.path, encoding="utf-8") as fh:
            header = "\n".join(line[2:].rstrip() for line in fh if line.startswith("# "))
        write_card(dataclasses.replace(card, sha256=entry.sha256, size_bytes=entry.size), card.path, header or None)
        return entry.sha256, card.path
    cache.pin(card.name, entry.sha256, entry.size, entry.source)
    return entry.sha256, str(cache.pin_path(card.name))


def lock_records(names: list[str], cache: Cache | None = None, progress: Progress | None = None) -> list[dict]:
    """What ``zoo lock`` writes: exact bytes (name, source, revision, sha256, size) per model."""
    cache = cache or Cache()
    out = []
    for name in names:
        card = get_registry().resolve(name)
        pull(card, cache=cache, progress=progress)
        entry = cache.entry(card.name)
        out.append({"name": card.name, "source": entry.source, "revision": entry.revision or "",
                    "sha256": entry.sha256, "size": entry.size})
    return out


def dump_lock(records: list[dict]) -> str:
    import tomlkit

    doc = tomlkit.document()
    doc.add(tomlkit.comment("zoo lock file: 'zoo pull --lock FILE' installs exactly these bytes or fails"))
    doc["version"] = LOCK_VERSION
    doc["model"] = records
    return tomlkit.dumps(doc)


def read_lock(path: str) -> list[dict]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read lock file {path}: {exc}") from None
    if data.get("version") != LOCK_VERSION or not isinstance(data.get("model"), list):
        raise UsageError(f"{path} is not a zoo lock file (version {LOCK_VERSION} with [[model]] entries)")
    return data["model"]


def pull_lock(path: str, cache: Cache | None = None, progress: Progress | None = None) -> list[Path]:
    """Install exactly the bytes a lock file names, or fail (like pip's hash-checking mode)."""
    out = []
    for rec in read_lock(path):
        try:
            want = Expected(rec["sha256"], rec.get("size"), "lock")
            out.append(pull(rec["name"], cache=cache, progress=progress, expected=want))
        except KeyError as exc:
            raise UsageError(f"{path}: an entry lacks {exc}") from None
    return out
