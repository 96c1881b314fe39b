"""What one ``zoo serve`` serves, as Hugging Face repos, and where their bytes are.

Three kinds of repo, looked up in this order: repos uploaded through the write API (commits in
``zoo.store.repos``), on S3 the files any server pulled through from its ``--upstream`` (recorded in
the store under ``mirrored/<org>/<name>.json``: one fetch per file for all servers), and each cached
card's ``hub_repo`` holding its weights file. A cached card's repo has a commit id derived from its
content (:func:`zoo.store.repos.derived_commit_id`), so the same bytes have the same revision on
every server and in the HF cache layout zoo writes.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from zoo.cards.card import REPO_ID_RE
from zoo.hub.blobs import Blobs
from zoo.hub.xet.cas import XetStore
from zoo.store.objects import LocalStorage, json_update
from zoo.store.discussions import Discussions
from zoo.store.repos import KINDS, RepoStore, derived_commit_id, git_blob_oid
from zoo.weights.cache import Cache

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


@dataclass
class RepoFile:
    path: str
    sha256: str
    size: int
    blob: Path
    lfs: bool = True
    git_oid: str | None = None  # regular (non-LFS) files: the git blob id of their content
    in_store: bool = False  # its bytes are in the hub's shared store (S3), not this server's cache

    @property
    def pointer(self) -> bytes:
        return LFS_POINTER.format(sha=self.sha256, size=self.size).encode()

    @property
    def oid(self) -> str:
        """The git blob id the Hub reports: of the LFS pointer for LFS files, else of the content."""
        if not self.lfs and self.git_oid:
            return self.git_oid
        return git_blob_oid(self.pointer)

    @property
    def etag(self) -> str:
        """What the client names its blob by: the sha256 for LFS files, the git oid otherwise."""
        return self.sha256 if self.lfs else self.oid


@dataclass
class Repo:
    repo_id: str
    files: dict[str, RepoFile] = field(default_factory=dict)
    last_modified: float = 0.0
    commit_id: str | None = None  # uploaded repos: the stored commit; cached cards: derived
    private: bool = False
    uploaded: bool = False
    kind: str = "model"
    gated: str | bool = False  # False, "auto" or "manual": downloads need a token that may read the repo
    card_names: tuple[str, ...] = ()  # a cached card's repo: the cached names whose weights it serves

    @property
    def commit(self) -> str:
        if self.commit_id:
            return self.commit_id
        return derived_commit_id(self.repo_id, {p: f.sha256 for p, f in self.files.items()})


class ServedRepos:
    """The repos a server serves over one cache (and, with ``storage``, one shared store), where
    their bytes are (:attr:`blobs`), and request counters for ``/api/zoo/stats`` (operators, and
    tests that must see that N concurrent pulls made one download).

    Cached cards' repos are re-read when the cache's entries change (their directory's mtime moves).
    """

    def __init__(self, cache: Cache, storage=None, redirect: bool = True):
        self.cache = cache
        self.storage = storage or LocalStorage(cache.root)  # uploaded repos (and, on S3, their blobs)
        self.stores = {kind: RepoStore(self.storage, kind) for kind in KINDS}
        self.discussions = {kind: Discussions(store) for kind, store in self.stores.items()}
        self.store = self.stores["model"]
        # redirect=False (zoo serve --proxy-downloads): stream from the store, for clients that cannot reach it
        self.blobs = Blobs(cache, self.storage, redirect)
        self.xet = XetStore(self.storage, self.blobs, cache)  # Xet uploads and downloads (zoo/hub/xet)
        self.counts: Counter = Counter()
        self.bytes_out = 0  # file bytes this process sent itself (not what it redirected)
        self.bytes_in = 0  # LFS bytes uploaded through this process (not what went to the store directly)
        self.xet_bytes_in = 0  # of which xorb bytes (what Xet's dedupe did not spare)
        self._stamp: object = None
        self.lineage: tuple[float, dict] | None = None  # zoo.hub.catalog.heads_of: heads per base, kept briefly
        self.lineage_refreshing = False
        self._derived: dict[str, Repo] = {}

    def count(self, key: str) -> None:
        self.counts[key] += 1

    def derived(self) -> dict[str, Repo]:
        try:
            stamp = os.stat(self.cache.models).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._derived = self._build()
            self._stamp = stamp
        return self._derived

    def _build(self) -> dict[str, Repo]:
        repos: dict[str, Repo] = {}
        for entry in sorted(self.cache.entries(), key=lambda e: e.pulled_at):  # the latest pull wins a path
            if not entry.hub_repo or not REPO_ID_RE.match(entry.hub_repo) or not self.cache.has_blob(entry.sha256):
                continue
            repo = repos.setdefault(entry.hub_repo, Repo(entry.hub_repo))
            repo.files[entry.filename] = RepoFile(entry.filename, entry.sha256, entry.size, self.cache.blob_path(entry.sha256))
            repo.card_names += (entry.name,)
            repo.last_modified = max(repo.last_modified, entry.pulled_at)
        return repos

    @property
    def shared(self) -> bool:
        """Whether the store is shared by several servers (S3), not this server's own cache."""
        return self.storage.shared

    def pulled_through(self, repo_id: str) -> Repo | None:
        """A repo pulled through from the upstream into the shared store (None off S3)."""
        if not self.shared or not REPO_ID_RE.match(repo_id):
            return None
        obj = self.storage.get(f"mirrored/{repo_id}.json")
        files = json.loads(obj.data).get("files", {}) if obj else {}
        if not files:
            return None
        repo = Repo(repo_id)
        for path, rec in files.items():
            repo.files[path] = RepoFile(path, rec["sha256"], rec["size"], self.cache.blob_path(rec["sha256"]), in_store=True)
            repo.last_modified = max(repo.last_modified, rec.get("fetched", 0.0))
        return repo

    def remember_pulled_through(self, repo_id: str, path: str, sha256: str, size: int, revision: str | None) -> None:
        """Record a pulled-through file (its blob already stored) for every server on the store."""
        def add(doc: dict | None) -> dict:
            doc = doc or {"files": {}}
            doc["files"][path] = {"sha256": sha256, "size": size, "revision": revision, "fetched": time.time()}
            return doc

        json_update(self.storage, f"mirrored/{repo_id}.json", add)

    def repo_ids(self, kind: str = "model") -> list[str]:
        if kind != "model":
            return self.stores[kind].repo_ids()
        mirrored = {k[len("mirrored/"):-len(".json")] for k in self.storage.list("mirrored/")} if self.shared else set()
        return sorted(set(self.derived()) | set(self.store.repo_ids()) | mirrored)

    def exists(self, repo_id: str, kind: str = "model") -> bool:
        if not REPO_ID_RE.match(repo_id):
            return False
        if kind != "model":
            return self.stores[kind].exists(repo_id)
        return self.store.exists(repo_id) or repo_id in self.derived() or self.pulled_through(repo_id) is not None

    def info(self, repo_id: str, kind: str = "model") -> dict:
        """An uploaded repo's record (private, gated); {} for any other repo."""
        return self.record(repo_id, kind) or {}

    def record(self, repo_id: str, kind: str = "model") -> dict | None:
        """An uploaded repo's record; None if no repo of that id was uploaded."""
        return self.stores[kind].record(repo_id) if REPO_ID_RE.match(repo_id) else None

    def at(self, repo_id: str, revision: str = "main", kind: str = "model", record: dict | None | bool = False
           ) -> Repo | None:
        """The repo's files at ``revision`` (a branch, tag, pull-request ref or commit id); None if
        either is unknown. ``record``: the repo's record if the caller read it already (None: absent)."""
        if not REPO_ID_RE.match(repo_id):
            return None
        store = self.stores[kind]
        info = store.record(repo_id) if record is False else record
        if info is not None:
            commit = store.commit(repo_id, revision)
            if commit is None:
                return None
            files = {p: RepoFile(p, r["sha256"], r["size"], self.cache.blob_path(r["sha256"]), r.get("lfs", True),
                                 r.get("oid"), self.shared) for p, r in commit.files.items()}
            return Repo(repo_id, files, commit.date, commit.id, bool(info.get("private")), True, kind,
                        info.get("gated") or False)
        if kind != "model":
            return None
        # on S3 the store's record alone is the repo, so every server reports the same commit; a
        # file this server pulled through before is shared on its first miss (zoo/hub/upstream.py)
        repo = self.pulled_through(repo_id) or self.derived().get(repo_id)
        if repo is None or revision not in ("main", "refs/heads/main", repo.commit):
            return None
        return repo

    def get(self, repo_id: str, kind: str = "model") -> Repo | None:
        return self.at(repo_id, "main", kind)
