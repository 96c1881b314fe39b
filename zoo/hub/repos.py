"""The cache seen as Hugging Face repos: each cached card's ``hub_repo`` holds its weights file.

A repo's commit id is derived from its content (sha1 over the sorted ``path sha256`` lines), so
the same bytes always have the same revision on every mirror, and a client that pinned a commit
gets exactly what it pinned.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import Cache

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


@dataclass
class RepoFile:
    path: str
    sha256: str
    size: int
    blob: Path

    @property
    def pointer(self) -> bytes:
        return LFS_POINTER.format(sha=self.sha256, size=self.size).encode()

    @property
    def oid(self) -> str:
        """The git blob id of the file's LFS pointer: what the Hub reports as a tree entry's ``oid``."""
        pointer = self.pointer
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


@dataclass
class Repo:
    repo_id: str
    files: dict[str, RepoFile] = field(default_factory=dict)
    last_modified: float = 0.0

    @property
    def commit(self) -> str:
        lines = "".join(f"{p} {f.sha256}\n" for p, f in sorted(self.files.items()))
        return hashlib.sha1(f"zoo repo {self.repo_id}\n{lines}".encode()).hexdigest()


class RepoIndex:
    """Repos of a cache, re-read when the cache index changes (its directory's mtime moves)."""

    def __init__(self, cache: Cache):
        self.cache = cache
        self._stamp: object = None
        self._repos: dict[str, Repo] = {}

    def repos(self) -> dict[str, Repo]:
        try:
            stamp = os.stat(self.cache.models).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._repos = self._build()
            self._stamp = stamp
        return self._repos

    def _build(self) -> dict[str, Repo]:
        repos: dict[str, Repo] = {}
        for entry in sorted(self.cache.entries(), key=lambda e: e.pulled_at):  # the latest pull wins a path
            if not entry.hub_repo or not REPO_ID_RE.match(entry.hub_repo) or not self.cache.has_blob(entry.sha256):
                continue
            repo = repos.setdefault(entry.hub_repo, Repo(entry.hub_repo))
            repo.files[entry.filename] = RepoFile(entry.filename, entry.sha256, entry.size, self.cache.blob_path(entry.sha256))
            repo.last_modified = max(repo.last_modified, entry.pulled_at)
        return repos

    def get(self, repo_id: str) -> Repo | None:
        return self.repos().get(repo_id)
