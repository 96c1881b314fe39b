"""Uploaded repos: immutable commits over the cache's blobs, and a ``main`` ref that moves.

Layout under ``ZOO_HOME/repos/<org>/<name>/``::

    repo.json               created, private
    refs/main               the current commit id (40 hex)
    commits/<id>.json       parent, title, message, date, files {path: {sha256, size, oid, lfs}}

Everything is a file written atomically (temp + rename) under a per-repo lock, so any number of
server workers on one cache agree without shared memory; old commits stay, so a pinned revision
keeps resolving after ``main`` moves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import Cache, _read_json, _write_json

COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")


def git_blob_oid(data: bytes) -> str:
    """The git blob id of a regular file: what the Hub reports as its ``oid``/ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: float
    files: dict[str, dict] = field(default_factory=dict)


class RepoStore:
    """Repos created and committed to through the hub's write API."""

    def __init__(self, cache: Cache):
        self.cache = cache
        self.root = cache.root / "repos"

    def _dir(self, repo_id: str) -> Path:
        from .repos import REPO_ID_RE

        if not REPO_ID_RE.match(repo_id):  # never a path outside repos/ (e.g. a decoded '%2e%2e')
            raise ValueError(f"invalid repo id {repo_id!r}")
        org, name = repo_id.split("/", 1)
        return self.root / org / name

    def exists(self, repo_id: str) -> bool:
        return (self._dir(repo_id) / "repo.json").is_file()

    def repo_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(f"{o.name}/{n.name}" for o in self.root.iterdir() if o.is_dir()
                      for n in o.iterdir() if (n / "repo.json").is_file())

    def info(self, repo_id: str) -> dict:
        return _read_json(self._dir(repo_id) / "repo.json") or {}

    def create(self, repo_id: str, private: bool = False) -> bool:
        """Create an empty repo (with an empty first commit on main); False if it already exists."""
        with self.cache.lock(f"repo-{repo_id.replace('/', '--')}"):
            if self.exists(repo_id):
                return False
            d = self._dir(repo_id)
            _write_json(d / "repo.json", {"created": time.time(), "private": private})
            self._write_commit(repo_id, None, "initial commit", "", {})
            return True

    def head(self, repo_id: str) -> str | None:
        try:
            text = (self._dir(repo_id) / "refs" / "main").read_text().strip()
        except OSError:
            return None
        return text if COMMIT_RE.match(text) else None

    def commit(self, repo_id: str, revision: str) -> Commit | None:
        """The commit ``revision`` names: ``main`` or a commit id."""
        cid = self.head(repo_id) if revision == "main" else revision
        if not cid or not COMMIT_RE.match(cid):
            return None
        data = _read_json(self._dir(repo_id) / "commits" / f"{cid}.json")
        return Commit(**data) if data else None

    def history(self, repo_id: str, revision: str = "main") -> list[Commit]:
        out, commit = [], self.commit(repo_id, revision)
        while commit is not None:
            out.append(commit)
            commit = self.commit(repo_id, commit.parent) if commit.parent else None
        return out

    def _write_commit(self, repo_id: str, parent: str | None, title: str, message: str, files: dict) -> Commit:
        date = time.time()
        body = json.dumps({"parent": parent, "title": title, "message": message, "date": date, "files": files},
                          sort_keys=True).encode()
        cid = hashlib.sha1(b"zoo commit " + repo_id.encode() + b"\0" + body).hexdigest()
        commit = Commit(cid, parent, title, message, date, files)
        d = self._dir(repo_id)
        _write_json(d / "commits" / f"{cid}.json", commit.__dict__)
        tmp = d / "refs" / f".main.{os.getpid()}.tmp"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(cid)
        os.replace(tmp, d / "refs" / "main")
        return commit

    def apply(self, repo_id: str, title: str, message: str, parent: str | None, adds: dict[str, dict],
              deletes: list[str]) -> Commit:
        """A new commit on main: ``adds`` (path -> file record) over main's files, minus ``deletes``
        (files, or folders when the path ends with '/'). Raises ValueError if ``parent`` is given
        and is not main any more (the client then sees a conflict, as on the Hub)."""
        with self.cache.lock(f"repo-{repo_id.replace('/', '--')}"):
            head = self.head(repo_id)
            if parent and parent != head:
                raise ValueError(f"parent commit {parent} is not the head of main ({head})")
            base = self.commit(repo_id, head) if head else None
            files = dict(base.files) if base else {}
            for path in deletes:
                gone = [p for p in files if p == path or (path.endswith("/") and p.startswith(path))]
                if not gone:
                    raise KeyError(path)
                for p in gone:
                    del files[p]
            files.update(adds)
            paths = set(files)
            for p in paths:  # a file may not also be a folder: clients could not write both to disk
                parts = p.split("/")
                clash = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in paths), None)
                if clash:
                    raise ValueError(f"{clash} is a file, so {p} cannot be in a folder of that name")
            return self._write_commit(repo_id, head, title, message, files)

    def referenced_blobs(self) -> set[str]:
        """Every blob any commit of any repo refers to (``zoo cache prune`` keeps them)."""
        out = set()
        for repo_id in self.repo_ids():
            for f in (self._dir(repo_id) / "commits").glob("*.json"):
                data = _read_json(f) or {}
                out.update(rec["sha256"] for rec in data.get("files", {}).values())
        return out
