"""zoo's local cache: content-addressed blobs, atomic verified writes, locks, stamps, entries by name,
and ``prune`` over every area of ``ZOO_HOME`` (zoo/home.py names them all).

The weights layout under the root (``$ZOO_HOME``, else ``~/.cache/zoo``)::

    blobs/<sha256>                     verified files, read-only; the sha256 of the bytes is the name
    blobs/.incomplete-<key>.<host>.<pid>.<random>   a download or conversion in progress (never under a final name)
    verified/<sha256>.json             stamp taken right after verification (size, mtime, ctime, inode)
    models/<card name>.json            one entry per name, human-readable: which blob a card uses, when
                                       it was pulled and last used (kept here, never by touching blobs)
    pins/<card name>.json              sha256 recorded on first download for cards that pin none
                                       (one file each: no read-modify-write, so no lock; an older
                                       cache's pins.json is still read)
    locks/<key>.lock                   one process fetches a given blob at a time

Integrity without a tax on every load: a blob is hashed in full when it arrives and by
``zoo verify``; opening it (:meth:`Cache.open_verified`) compares the stamp and re-hashes only when
the file moved or changed since (ctime cannot be set back from user space, so an edit is seen).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from zoo import config, home
from zoo.cards.registry import get_registry
from zoo.errors import CacheError, CorruptBlobError
from zoo.store.objects import LocalStorage
from zoo.store.repos import all_referenced_blobs
from zoo.util.hashing import sha256_file
from zoo.util.progress import Task
from zoo.util.tempfiles import abandoned, temp_beside, unique_suffix
from zoo.weights.blobwriter import BlobWriter

log = logging.getLogger(__name__)


SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
ENTRY_VERSION = 1
#: how long to wait for another process holding a fetch lock (``$ZOO_LOCK_TIMEOUT`` seconds)
DEFAULT_LOCK_TIMEOUT = 600.0
#: "last used" is refreshed at most this often, so loads rarely write (prune works in days)
LAST_USED_RESOLUTION = 3600.0
#: prune never deletes a blob younger than this: a concurrent pull may not have recorded its entry yet
PRUNE_GRACE = 3600.0


@dataclass
class Entry:
    """One cached name's entry: ``models/<name>.json``."""

    name: str
    sha256: str
    size: int
    source: str
    pulled_at: float
    last_used: float
    revision: str | None = None
    hub_repo: str | None = None
    filename: str = "model.safetensors"
    version: int = ENTRY_VERSION


def _stat_stamp(path: str | os.PathLike) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, "dev": st.st_dev}


def _write_json(path: Path, data: object) -> None:
    """Atomic JSON write: a process-unique temp file beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Cache:
    """The cache rooted at ``root`` (default: ``$ZOO_HOME`` read now)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root if root is not None else home.root()).expanduser()
        self.blobs = self.root / home.BLOBS
        self.stamps = self.root / home.VERIFIED
        self.views = self.root / home.VIEWS
        self.models = self.root / home.MODELS
        self.locks = self.root / home.LOCKS
        self.pins_dir = self.root / home.PINS
        self.legacy_pins_file = self.root / home.LEGACY_PINS

    # --- blobs -----------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256 or ""):
            raise CacheError(f"not a sha256: {sha256!r}")
        return self.blobs / sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def free_bytes(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def ensure_space(self, needed: int | None, what: str) -> None:
        """Fail before any byte moves when ``needed`` bytes cannot fit (10 MB of slack kept)."""
        if not needed:
            return
        free = self.free_bytes()
        if needed + 10_000_000 > free:
            raise CacheError(f"{what} needs {needed / 1e6:.0f} MB, {free / 1e6:.0f} MB free in ZOO_HOME "
                             f"({self.root}); free some space (zoo cache prune) or set ZOO_HOME elsewhere")

    def lock(self, key: str, timeout: float | None = None):
        """An inter-process lock (filelock, fcntl-based on Unix: the kernel releases it when its
        holder dies, so a killed process never leaves it held). Waits at most ``timeout`` seconds.
        It saves bandwidth only: see :class:`_Lock` and ``ZOO_NO_LOCKS``."""
        if not config.no_locks():
            self.locks.mkdir(parents=True, exist_ok=True)
        if timeout is None:
            timeout = config.lock_timeout(DEFAULT_LOCK_TIMEOUT)
        from filelock import FileLock  # lazy: zoo info and zoo list --json read the cache's files without it

        return _Lock(FileLock(str(self.locks / f"{key}.lock")), key, timeout)

    def temp_blob(self, key: str) -> Path:
        """A temp file in ``blobs/`` for ``key`` that no other writer shares (what
        :meth:`temp_files` finds and :meth:`prune` judges)."""
        return self.blobs / f".incomplete-{key}.{unique_suffix()}"

    def writer(self, key: str, resume: bool = False):
        """A temp file in ``blobs/`` that hashes what is written to it while it is written
        (:class:`zoo.weights.blobwriter.BlobWriter`)."""
        return BlobWriter(self, key, resume)

    def add_file(self, path: str | os.PathLike, expected_sha256: str | None = None, task: Task | None = None) -> str:
        """Copy a local file into the cache, hashing as it copies (``task`` counts the bytes); return its sha256.

        The blob is never more readable than its source: a 0640 file gives a 0440 blob (and the
        copy in progress is 0600), so caching a private file does not publish it to other users."""
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            readable = st.st_mode & 0o444
            self.ensure_space(st.st_size, f"copying {path}")
            with self.writer("file") as w:
                os.chmod(w.path, 0o600)
                while chunk := fh.read(8 << 20):
                    w.write(chunk)
                    if task is not None:
                        task.advance(len(chunk))
                return w.commit(expected_sha256, mode=readable)

    def commit_file(self, tmp: str | os.PathLike, sha256: str, mode: int = 0o444) -> Path:
        """Move a temp file in ``blobs/`` whose sha256 the caller computed while writing it into
        place, read-only (``mode``: 0444 unless its source was less readable)."""
        final = self.blob_path(sha256)
        os.chmod(tmp, mode)
        os.replace(tmp, final)
        self.stamp(sha256)
        return final

    def stamp(self, sha256: str) -> None:
        """Record that the blob was just verified, with the stat that identifies this very file."""
        _write_json(self.stamps / f"{sha256}.json", {**_stat_stamp(self.blob_path(sha256)), "verified_at": time.time()})

    def open_verified(self, sha256: str) -> Path:
        """The path of a blob whose bytes are known to hash to ``sha256``.

        Fast path: the stat matches the stamp recorded at verification. Otherwise the blob is
        re-hashed (and re-stamped when it is still right, e.g. after a restore from backup).
        """
        path = self.blob_path(sha256)
        try:
            current = _stat_stamp(path)
        except FileNotFoundError:
            raise CacheError(f"weights {sha256[:12]} are not in the cache ({self.root}); run 'zoo pull NAME'") from None
        recorded = _read_json(self.stamps / f"{sha256}.json") or {}
        if all(recorded.get(k) == v for k, v in current.items()):
            return path
        actual = sha256_file(path)
        if actual != sha256:
            raise CorruptBlobError(
                f"cached file {path} is corrupt: expected sha256 {sha256}, got {actual}; "
                "run 'zoo verify --repair' to fetch it again")
        self.stamp(sha256)
        return path

    def safetensors_view(self, sha256: str) -> Path:
        """``views/<sha256>.safetensors``, a symlink to the blob: loaders that pick the format by
        file extension (timm's ``load_state_dict``) read it as safetensors, never as a pickle.

        Checked on every call (a few ``lstat``): the view must resolve to exactly the blob, else it
        is made again, so a re-pointed view (or ``views/`` itself made a link) never makes a load
        read other bytes than the verified blob's."""
        view = self.views / f"{sha256}.safetensors"
        problem = self.view_problem(sha256)
        if problem or not view.is_symlink():
            if problem:
                log.warning("%s; making it again", problem)
            if self.views.is_symlink() or (self.views.exists() and not self.views.is_dir()):
                self.views.unlink()
            self.views.mkdir(parents=True, exist_ok=True)
            tmp = temp_beside(view)
            os.symlink(os.path.join("..", "blobs", sha256), tmp)
            os.replace(tmp, view)
        return view

    def view_problem(self, sha256: str) -> str | None:
        """Why ``views/<sha256>.safetensors`` is not a link to exactly its blob, or None (also when there is none)."""
        view = self.views / f"{sha256}.safetensors"
        if not os.path.lexists(view) and not self.views.is_symlink():
            return None
        target = os.path.realpath(view)
        if not os.path.lexists(view) or target != os.path.realpath(self.blob_path(sha256)):
            return f"the view {view} resolves to {target}, not to its blob"
        return None

    def verify_blob(self, sha256: str) -> str:
        """Re-hash a blob in full (``zoo verify``); return the actual sha256, re-stamping a good one."""
        actual = sha256_file(self.blob_path(sha256))
        if actual == sha256:
            self.stamp(sha256)
        return actual

    def remove_blob(self, sha256: str) -> None:
        for p in (self.blob_path(sha256), self.stamps / f"{sha256}.json", self.views / f"{sha256}.safetensors"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    # --- entries by name -------------------------------------------------------------------

    @staticmethod
    def _named(folder: Path, name: str, what: str) -> Path:
        """``folder/<name>.json`` for a card name, refusing one that could leave the folder."""
        if "/" in name or name.startswith("."):
            raise CacheError(f"bad card name for {what}: {name!r}")
        return folder / f"{name}.json"

    def _entry_path(self, name: str) -> Path:
        return self._named(self.models, name, "the cache's entries")

    def record(self, name: str, sha256: str, size: int, source: str, **extra) -> Entry:
        now = time.time()
        entry = Entry(name=name, sha256=sha256, size=size, source=source, pulled_at=now, last_used=now, **extra)
        _write_json(self._entry_path(name), asdict(entry))
        return entry

    def entry(self, name: str) -> Entry | None:
        data = _read_json(self._entry_path(name))
        if not data or data.get("version") != ENTRY_VERSION:
            return None
        try:
            return Entry(**data)
        except TypeError:
            return None

    def entries(self) -> list[Entry]:
        if not self.models.is_dir():
            return []
        out = [self.entry(p.stem) for p in sorted(self.models.glob("*.json"))]
        return [e for e in out if e is not None]

    def touch(self, name: str) -> None:
        """Refresh "last used" in the entry (at most hourly: a load should not write every time)."""
        entry = self.entry(name)
        if entry and time.time() - entry.last_used > LAST_USED_RESOLUTION:
            entry.last_used = time.time()
            _write_json(self._entry_path(name), asdict(entry))

    def forget(self, name: str) -> Entry | None:
        """Drop a name's entry (``zoo cache rm``); its blob goes when nothing else uses it."""
        entry = self.entry(name)
        if entry is None:
            return None
        self._entry_path(name).unlink()
        if all(e.sha256 != entry.sha256 for e in self.entries()):
            self.remove_blob(entry.sha256)
        return entry

    # --- pins ------------------------------------------------------------------------------

    def pins(self) -> dict[str, dict]:
        pins = _read_json(self.legacy_pins_file) or {}
        if self.pins_dir.is_dir():
            for path in sorted(self.pins_dir.glob("[!.]*.json")):
                data = _read_json(path)
                if data and isinstance(data.get("sha256"), str):
                    pins[path.name[:-len(".json")]] = data
        return pins

    def pin_for(self, name: str) -> dict | None:
        """The pin of one card (its own file, else an older cache's pins.json), None if unpinned."""
        data = _read_json(self.pin_path(name))
        if data and isinstance(data.get("sha256"), str):
            return data
        return (_read_json(self.legacy_pins_file) or {}).get(name)

    def pin_path(self, name: str) -> Path:
        return self._named(self.pins_dir, name, "a pin")

    def pin(self, name: str, sha256: str, size: int, source: str, how: str = "first use") -> None:
        """Record the sha256 of a card that pins none: ``how`` is "first use" (the first download's
        bytes, trusted from then on), "given" (a sha256 the user gave, checked) or "user" (a file the
        user vouched for). One file per name, written atomically: concurrent pins of other cards
        never lose each other."""
        _write_json(self.pin_path(name), {"sha256": sha256, "size": size, "source": source, "how": how,
                                          "pinned_at": time.time()})

    def trust(self, card) -> dict:
        """How far ``card``'s weights are trusted, for ``zoo info`` and ``zoo list --json``: ``state``
        is "pinned by the card", "pinned on first use", "pinned by the user's sha256", "trusted by
        the user" or "not pinned"; with the sha256, where the pin came from and when, and whether
        the bytes are in the cache."""
        pin = None if card.sha256 else self.pin_for(card.name)
        sha = card.sha256 or (pin or {}).get("sha256")
        if card.sha256:
            state = "pinned by the card"
        elif pin:
            state = {"user": "trusted by the user", "given": "pinned by the user's sha256"}.get(
                pin.get("how"), "pinned on first use")
        else:
            state = "not pinned"
        when = (pin or {}).get("pinned_at")
        return {"state": state, "sha256": sha or None, "source": (pin or {}).get("source"),
                "since": time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if when else None,
                "cached": bool(sha) and self.has_blob(sha)}

    # --- housekeeping ----------------------------------------------------------------------

    def temp_files(self) -> Iterator[Path]:
        yield from self.blobs.glob(".incomplete-*") if self.blobs.is_dir() else ()

    def kept_blobs(self) -> set[str]:
        """Blobs prune must keep whatever their age: what an entry or a pin refers to, what a card
        pins, and what a commit of a repo served from this directory names (zoo serve)."""
        kept = {e.sha256 for e in self.entries()} | {p["sha256"] for p in self.pins().values()}
        kept |= {c.sha256 for c in get_registry().cards if c.sha256}
        return kept | all_referenced_blobs(LocalStorage(self.root))

    def prune(self, older_than: float, keep: set[str] = frozenset(), now: float | None = None) -> dict:
        """Apply every rule of zoo/home.py: forget entries unused for ``older_than`` seconds, delete
        blobs nothing refers to any more (:meth:`kept_blobs`, plus ``keep``), feature files, ONNX graphs, fetched
        runs and measurements not used for ``older_than``, and temp files whose writer is gone.
        Returns what was removed, by area."""
        now = time.time() if now is None else now
        removed: dict[str, list[str]] = {"entries": [], "blobs": [], "temp": [], "features": [], "engines": [],
                                         "runs": [], "measurements": []}
        for entry in self.entries():
            if now - entry.last_used > older_than:
                self._entry_path(entry.name).unlink(missing_ok=True)
                removed["entries"].append(entry.name)
        referenced = self.kept_blobs() | set(keep)
        for blob in (self.blobs.iterdir() if self.blobs.is_dir() else ()):
            # a blob written in the last hour may belong to a pull that has not recorded its entry yet
            if SHA256_RE.match(blob.name) and blob.name not in referenced and now - blob.stat().st_mtime > PRUNE_GRACE:
                self.remove_blob(blob.name)
                removed["blobs"].append(blob.name)
        for tmp in list(self.temp_files()):
            if abandoned(tmp, now):  # names zoo did not write, and live writers' files, are left alone
                tmp.unlink(missing_ok=True)
                removed["temp"].append(tmp.name)
        for area in (home.FEATURES, home.ENGINES, home.MEASUREMENTS, home.RUNS):
            removed[area] = self._prune_unused(self.root / area, older_than, now)
        for staging in self.root.glob(f".{home.BUNDLE_STAGING}.*"):  # a bundle import that died
            if staging.is_dir() and abandoned(staging, now):
                shutil.rmtree(staging, ignore_errors=True)
                removed["temp"].append(staging.name)
        log.info("pruned %s", {k: len(v) for k, v in removed.items()})
        return removed

    @staticmethod
    def _prune_unused(folder: Path, older_than: float, now: float) -> list[str]:
        """Entries of ``folder`` (files, or a fetched run's directory) whose mtime is older than
        ``older_than`` (their writers refresh it on use), and temp files whose writer is gone."""
        out = []
        for item in sorted(folder.iterdir()) if folder.is_dir() else ():
            if item.name.startswith("."):
                gone = abandoned(item, now)
            else:
                try:
                    gone = now - item.stat().st_mtime > older_than
                except FileNotFoundError:
                    continue
            if gone:
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
                out.append(item.name)
        return out


class _Lock:
    """Context manager over a FileLock that turns a timeout into an error saying what to do.

    The lock only saves bandwidth (two processes fetching one file wait for each other instead of
    both downloading it); correctness never rests on it. So with ``ZOO_NO_LOCKS=1``, or where the
    file system refuses locks (ENOLCK on NFS without lockd), it is skipped."""

    def __init__(self, lock, key: str, timeout: float):
        self._lock, self._key, self._timeout = lock, key, timeout
        self._held = False

    def __enter__(self):
        if config.no_locks():
            return self
        from filelock import Timeout  # lazy, as in Cache.lock

        try:
            self._lock.acquire(timeout=self._timeout)
        except Timeout:
            raise CacheError(f"another zoo process has held the lock {self._lock.lock_file} for over "
                             f"{self._timeout:.0f} s; if none is running, delete that file "
                             "(or raise ZOO_LOCK_TIMEOUT; on a file system whose locks hang, set "
                             "ZOO_NO_LOCKS=1)") from None
        except OSError as exc:
            log.warning("cannot lock %s (%s); going on without it (a concurrent fetch of the same file may "
                        "download it twice). ZOO_NO_LOCKS=1 skips locking.", self._lock.lock_file, exc)
            return self
        self._held = True
        return self

    def __exit__(self, *exc):
        if self._held:
            self._held = False
            self._lock.release()
