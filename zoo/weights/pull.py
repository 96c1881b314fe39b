"""Pull a card's weights: mirrors and sources in order, the sha256 decides.

``pull(name)`` ends with a verified file in the cache or fails naming what failed for every source:
never a partial model. Order: each ``$ZOO_MIRRORS`` endpoint (asked for the card's ``hub_repo``),
then the card's own sources. The expected sha256 is the card's pin, else a pin recorded on an
earlier download (``pins/<name>.json`` in ``ZOO_HOME``), else the hub's LFS sha256 (its ETag), which is
then recorded; every source of a card must yield the same bytes after its declared conversion.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from zoo import config
from zoo.cards.card import Card, hub_filename
from zoo.cards.registry import get_registry
from zoo.cards.uri import parse_uri
from zoo.errors import (BundleError, CacheError, ConversionError, CorruptBlobError, OfflineError, PullError,
                        SourceError, UsageError)
from zoo.util import distributed
from zoo.util.hashing import sha256_file
from zoo.util.progress import Progress, Task
from zoo.weights.bundles import fetch_from_bundle
from zoo.weights.cache import SHA256_RE, Cache
from zoo.weights.convert import convert_checkpoint
from zoo.weights.sources import download, hf_remote, is_remote, local_path, remote_for

log = logging.getLogger(__name__)

#: begin(total bytes or None) -> the Task of one attempt (each source tried is a task of its own)
Begin = Callable[[Optional[int]], Task]


@dataclass
class Expected:
    sha256: str | None
    size: int | None
    why: str  # "card", "pin", "lock" or "" (none yet)


def expected_for(card: Card, cache: Cache) -> Expected:
    if card.sha256:
        return Expected(card.sha256, card.size_bytes, "card")
    pin = cache.pin_for(card.name)
    if pin:
        return Expected(pin["sha256"], pin.get("size"), "pin")
    return Expected(None, None, "")


def _fetch_remote(cache: Cache, remote, key: str, want: Expected, begin: Begin) -> tuple[str, int]:
    sha = want.sha256 or remote.sha256
    if want.sha256 and remote.sha256 and remote.sha256 != want.sha256:
        raise CorruptBlobError(f"sha256 mismatch: expected {want.sha256}, the hub reports {remote.sha256}")
    size = remote.size or want.size
    cache.ensure_space(size, f"downloading {key}")
    # a partial file is resumed only when the final sha256 is known up front (it is then named by
    # it): the hash at the end checks the stitched bytes; an unknown file always starts from byte 0
    resumable = sha is not None
    with begin(size) as task, cache.writer(f"sha-{sha}" if resumable else key, resume=resumable) as writer:
        task.advance(writer.offset)
        try:
            download(remote, writer, task)
        except SourceError:
            writer.discard(keep_partial=True)  # resumable by the next pull
            raise
        if resumable and size and writer.offset < size:
            # a body that ended early without saying so (no Content-Length): what arrived is kept,
            # named by the sha256 it must have, and the next pull asks for the rest with a Range
            writer.discard(keep_partial=True)
            raise SourceError(f"the body ended early, at byte {writer.offset} of {size}; the {writer.offset} bytes "
                              "are kept and the next pull resumes from there")
        got = writer.commit(sha, expected_size=size, keep_short=resumable)
    return got, cache.blob_path(got).stat().st_size


def _fetch_source(cache: Cache, card: Card, src, want: Expected, begin: Begin) -> tuple[str, int, str | None]:
    """One card source -> (sha256, size, revision) of a verified blob."""
    uri = parse_uri(src.uri)
    revision = None
    if src.converter:
        raw_tmp = None
        if is_remote(uri):
            remote = remote_for(uri)
            raw_sha, _ = _fetch_remote(cache, remote, f"raw-{card.name}", Expected(src.sha256, None, "card"), begin)
            raw = str(cache.blob_path(raw_sha))
            raw_tmp = raw_sha
        else:
            raw = local_path(uri)
            if src.sha256:
                with begin(os.path.getsize(raw)) as task:
                    got = sha256_file(raw, task)
                if got != src.sha256:
                    raise CorruptBlobError(f"raw file {raw}: expected sha256 {src.sha256}, got {got}")
        cache.blobs.mkdir(parents=True, exist_ok=True)
        cache.ensure_space(os.path.getsize(raw), f"converting {card.name}")  # about the raw file's size
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
        sha, size = _fetch_remote(cache, remote, card.name, want, begin)
        return sha, size, remote.revision
    path = local_path(uri)
    with begin(os.path.getsize(path)) as task:
        sha = cache.add_file(path, want.sha256, task)
    return sha, cache.blob_path(sha).stat().st_size, None


def _from_hf_cache(cache: Cache, card: Card, want: Expected, root: str, begin: Begin) -> tuple[str, int, str | None]:
    """The card's file from a Hugging Face cache that stock clients filled (``hf_hub_download``,
    ``timm.create_model(pretrained=True)``), taken into zoo's cache verified: against the card's
    pin, else against the name the cache gives an LFS blob, which is its sha256."""
    from huggingface_hub import try_to_load_from_cache  # lazy: huggingface_hub only on this path

    found = try_to_load_from_cache(card.hub_repo, hub_filename(card), cache_dir=root)
    if not isinstance(found, str):
        raise SourceError(f"{card.hub_repo}/{hub_filename(card)} is not in the Hugging Face cache {root}")
    blob = os.path.basename(os.path.realpath(found))
    expected = want.sha256 or (blob if SHA256_RE.match(blob) else None)
    if expected is None:
        raise SourceError(f"{found} is not an LFS file (its cache name is not a sha256), so it cannot be verified")
    with begin(os.path.getsize(found)) as task:
        sha = cache.add_file(found, expected, task)
    revision = os.path.basename(os.path.dirname(found)) if "/snapshots/" in found else None
    return sha, cache.blob_path(sha).stat().st_size, revision


def is_hf_cache(path: str) -> bool:
    """A directory laid out as huggingface_hub's cache (``models--org--name/`` folders), not a zoo bundle."""
    try:
        return os.path.isdir(path) and any(e.startswith(("models--", "datasets--")) for e in os.listdir(path))
    except OSError:
        return False


def _attempts(card: Card, cache: Cache, want: Expected):
    """(label, fetch(begin)) pairs in order: the local Hugging Face cache (no network, also
    offline), then mirrors, then the card's sources."""
    if card.hub_repo:
        root = config.hf_hub_cache()
        yield f"the Hugging Face cache {root}", (lambda begin: _from_hf_cache(cache, card, want, root, begin))
    for mirror in config.mirrors():
        def from_mirror(begin: Begin, mirror=mirror):
            if "://" not in mirror or mirror.startswith("file://"):  # a bundle directory as a mirror
                path = mirror[len("file://"):] if mirror.startswith("file://") else mirror
                if is_hf_cache(path):  # or a Hugging Face cache directory brought from elsewhere
                    if not card.hub_repo:
                        raise SourceError("the card names no hub repo to look for in a Hugging Face cache")
                    return _from_hf_cache(cache, card, want, path, begin)
                try:
                    got = fetch_from_bundle(path, card.name, want.sha256, cache)
                except BundleError as exc:
                    raise SourceError(str(exc)) from None
                if got is None:
                    raise SourceError(f"the bundle holds no {card.name}")
                return got[0], got[1], None
            remote = hf_remote(card.hub_repo, hub_filename(card), endpoint=mirror)
            sha, size = _fetch_remote(cache, remote, card.name, want, begin)
            return sha, size, remote.revision
        yield f"mirror {mirror}", from_mirror
    for src in card.sources:
        yield src.uri, (lambda begin, src=src: _fetch_source(cache, card, src, want, begin))


def pull(name: str | Card, *, cache: Cache | None = None, progress: Progress | None = None,
         expected: Expected | None = None, force: bool = False) -> Path:
    """Make sure the card's weights are in the cache, verified; return the blob's path.

    ``expected`` overrides the card's sha256 (``zoo pull --lock``). ``force`` fetches again even
    when a verified copy is cached (``zoo verify --repair``). ``progress`` (zoo.util.progress)
    sees one task, in bytes, per source tried; none when the verified blob is already cached.
    """
    card = name if isinstance(name, Card) else get_registry().resolve(name)
    cache = cache or Cache()
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
        failures, offline_failures = [], 0
        for label, fetch in _attempts(card, cache, want):
            log.info("%s: trying %s", card.name, label)
            try:
                sha, size, revision = fetch(lambda total, label=label: Task(progress, "pull", f"{card.name} from {label}",
                                                                            total, "bytes"))
            except (SourceError, CacheError, ConversionError, UsageError) as exc:
                log.info("%s: %s failed: %s", card.name, label, exc)
                failures.append(f"  {label}: {exc}")
                offline_failures += isinstance(exc, OfflineError)
                continue
            log.info("%s: %s gave sha256 %s (%d bytes)", card.name, label, sha, size)
            cache.record(card.name, sha, size, label, revision=revision, hub_repo=card.hub_repo,
                         filename=hub_filename(card))
            if not want.sha256:
                cache.pin(card.name, sha, size, label)  # trust on first use, verified from now on
            return cache.blob_path(sha)
    hint = ""
    if config.offline() and offline_failures:  # only when being offline is what stopped a source
        hint = (f"\nZOO_OFFLINE/HF_HUB_OFFLINE is set: run 'zoo pull {card.name}' on a connected machine, "
                "then 'zoo mirror export' there and 'zoo mirror import' here")
    raise PullError(f"could not get the weights of {card.name}:\n" + "\n".join(failures) + hint)


def pull_uri(text: str, *, cache: Cache | None = None, progress: Progress | None = None) -> Path:
    """Fetch any source URI (no card) into the cache; verified against the hub's sha256 when it
    reports one. For ad-hoc files: ``zoo pull hf://org/repo/file.safetensors``."""
    cache = cache or Cache()
    uri = parse_uri(text)
    key = "uri-" + hashlib.sha256(text.encode()).hexdigest()[:16]  # the same URI, the same index name
    if is_remote(uri):
        remote = remote_for(uri)
        sha, size = _fetch_remote(cache, remote, key, Expected(None, None, ""),
                                  lambda total: Task(progress, "pull", text, total, "bytes"))
    else:
        path = local_path(uri)
        size = os.path.getsize(path)
        with Task(progress, "pull", text, size, "bytes") as task:
            sha = cache.add_file(path, None, task)
    cache.record(key, sha, size, text)  # indexed, so prune keeps it while it is used
    return cache.blob_path(sha)


def attach(name: str | Card, path: str | os.PathLike, *, sha256: str | None = None, trust: bool = False,
           cache: Cache | None = None, progress: Progress | None = None) -> Path:
    """``zoo pull NAME --file FILE``: a local file someone handed you becomes the card's weights.

    Verified against the card's pinned sha256 (or an earlier pin) where there is one; otherwise it
    needs ``sha256`` (checked, then pinned) or ``trust=True`` (pinned as trusted by the user, with
    the file's path and the time: ``zoo info`` shows it)."""
    card = name if isinstance(name, Card) else get_registry().resolve(name)
    cache = cache or Cache()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"--file {path}: no such file")
    want = expected_for(card, cache)
    if sha256 is not None and not SHA256_RE.match(sha256):
        raise UsageError(f"--sha256 {sha256!r} is not 64 lowercase hex digits")
    if want.sha256 and sha256 and sha256 != want.sha256:
        raise UsageError(f"{card.name} is pinned to sha256 {want.sha256} ({want.why}), not {sha256}")
    expected = want.sha256 or sha256
    if expected is None and not trust:
        raise UsageError(f"{card.name} pins no sha256, so {path} cannot be checked: pass --sha256 HEX "
                         "(it is checked, then pinned) or --trust (pinned as trusted by you)")
    with Task(progress, "pull", f"{card.name} from {path}", os.path.getsize(path), "bytes") as task:
        try:
            sha = cache.add_file(path, expected, task)
        except CorruptBlobError as exc:
            raise CorruptBlobError(f"{path} is not the file of {card.name}: {exc}") from None
    size = cache.blob_path(sha).stat().st_size
    cache.record(card.name, sha, size, f"file {os.path.abspath(path)}", hub_repo=card.hub_repo,
                 filename=hub_filename(card))
    if not want.sha256:
        cache.pin(card.name, sha, size, os.path.abspath(path), how="given" if sha256 else "user")
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


def ensure(card: Card, cache: Cache | None = None) -> Path:
    """The verified weights file of ``card``: opened from the cache without any network when it is
    there (a stamp comparison, no re-hash), else pulled. Under torchrun rank 0 pulls and verifies
    while the other ranks wait, then they open what it stored (one download per cluster)."""
    cache = cache or Cache()

    def weights() -> Path:
        try:
            return open_weights(card, cache)
        except CacheError:  # not cached yet: fetch it (which says what to do when offline)
            log.info("%s is not cached: pulling it", card.name)
            return pull(card, cache=cache)

    return distributed.main_first(weights)

