"""Uploaded repos: immutable commits over content-addressed blobs, and a ``main`` ref that moves.

Layout (keys of a :mod:`zoo.store.objects` store: ``ZOO_HOME`` by default, or ``s3://BUCKET/PREFIX``)::

    repos/<org>/<name>/repo.json           created, private
    repos/<org>/<name>/refs/main           the current commit id (40 hex)
    repos/<org>/<name>/commits/<id>.json   parent, title, message, date, files {path: {sha256, size, oid, lfs}}

Commits are written once (their id hashes their content); ``refs/main`` moves only by
compare-and-swap (``If-Match`` on S3, a per-key lock on a directory), so any number of servers on
one store agree without shared memory and no commit is lost to a race; old commits stay, so a
pinned revision keeps resolving after ``main`` moves.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from zoo.cards.card import REPO_ID_RE
from zoo.errors import CommitConflict, EntryNotFound, InvalidRepoId, PreconditionFailed
from zoo.store.objects import update

COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")


def git_blob_oid(data: bytes) -> str:
    """The git blob id of a regular file: what the Hub reports as its ``oid``/ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def derived_commit_id(repo_id: str, files: dict[str, str]) -> str:
    """The commit id of a repo nobody committed to (a cached card's ``hub_repo``), from its files
    (path -> sha256): the same bytes have the same revision on every mirror and in the HF cache
    layout zoo writes, so a client that pinned a commit gets exactly what it pinned."""
    lines = "".join(f"{p} {sha}\n" for p, sha in sorted(files.items()))
    return hashlib.sha1(f"zoo repo {repo_id}\n{lines}".encode()).hexdigest()


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: float
    files: dict[str, dict] = field(default_factory=dict)


class RepoStore:
    """Repos created and committed to through the hub's write API, in a :mod:`zoo.storage` store."""

    def __init__(self, storage):
        self.storage = storage

    def _key(self, repo_id: str, *parts: str) -> str:
        if not REPO_ID_RE.match(repo_id):  # never a key outside repos/ (e.g. a decoded '%2e%2e')
            raise InvalidRepoId(f"invalid repo id {repo_id!r}; expected org/name")
        return "/".join(("repos", repo_id, *parts))

    def _json(self, key: str) -> dict | None:
        obj = self.storage.get(key)
        if obj is None:
            return None
        try:
            data = json.loads(obj.data)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def exists(self, repo_id: str) -> bool:
        return self.storage.get(self._key(repo_id, "repo.json")) is not None

    def repo_ids(self) -> list[str]:
        keys = self.storage.list("repos/")
        return sorted(k[len("repos/"):-len("/repo.json")] for k in keys
                      if k.endswith("/repo.json") and k.count("/") == 3)

    def info(self, repo_id: str) -> dict:
        return self._json(self._key(repo_id, "repo.json")) or {}

    def create(self, repo_id: str, private: bool = False) -> bool:
        """Create an empty repo (with an empty first commit on main); False if it already exists."""
        body = json.dumps({"created": time.time(), "private": private}).encode()
        try:
            self.storage.put(self._key(repo_id, "repo.json"), body, if_none_match=True)
        except PreconditionFailed:
            return False
        commit = self._put_commit(repo_id, None, "initial commit", "", {})
        try:
            self.storage.put(self._key(repo_id, "refs", "main"), commit.id.encode(), if_none_match=True)
        except PreconditionFailed:
            pass  # a concurrent first commit landed: it is as good as ours
        return True

    def head(self, repo_id: str) -> str | None:
        obj = self.storage.get(self._key(repo_id, "refs", "main"))
        text = obj.data.decode(errors="replace").strip() if obj else ""
        return text if COMMIT_RE.match(text) else None

    def commit(self, repo_id: str, revision: str) -> Commit | None:
        """The commit ``revision`` names: ``main`` or a commit id."""
        cid = self.head(repo_id) if revision == "main" else revision
        if not cid or not COMMIT_RE.match(cid):
            return None
        data = self._json(self._key(repo_id, "commits", f"{cid}.json"))
        try:
            return Commit(**data) if data else None
        except TypeError:
            return None

    def history(self, repo_id: str, revision: str = "main") -> list[Commit]:
        out, commit = [], self.commit(repo_id, revision)
        while commit is not None:
            out.append(commit)
            commit = self.commit(repo_id, commit.parent) if commit.parent else None
        return out

    def _put_commit(self, repo_id: str, parent: str | None, title: str, message: str, files: dict) -> Commit:
        date = time.time()
        body = json.dumps({"parent": parent, "title": title, "message": message, "date": date, "files": files},
                          sort_keys=True).encode()
        cid = hashlib.sha1(b"zoo commit " + repo_id.encode() + b"\0" + body).hexdigest()
        commit = Commit(cid, parent, title, message, date, files)
        self.storage.put(self._key(repo_id, "commits", f"{cid}.json"), json.dumps(commit.__dict__).encode())
        return commit

    def apply(self, repo_id: str, title: str, message: str, parent: str | None, adds: dict[str, dict],
              deletes: list[str]) -> Commit:
        """A new commit on main: ``adds`` (path -> file record) over main's files, minus ``deletes``
        (files, or folders when the path ends with '/'). Raises :class:`CommitConflict` if
        ``parent`` is given and is not main any more (the client then sees a 409, as on the Hub), and
        :class:`EntryNotFound` for a deletion of a path main does not hold. A race with another
        writer is retried on the new head (zoo.store.objects.update); if main keeps moving, CommitConflict."""
        made: list[Commit] = []

        def next_head(raw: bytes | None) -> bytes:
            text = raw.decode(errors="replace").strip() if raw else ""
            head = text if COMMIT_RE.match(text) else None
            if parent and parent != head:
                raise CommitConflict(f"parent commit {parent} is not the head of main ({head})")
            made.append(self._put_commit(repo_id, head, title, message, self._files_after(repo_id, head, adds, deletes)))
            return made[-1].id.encode()

        try:
            update(self.storage, self._key(repo_id, "refs", "main"), next_head, attempts=50)
        except PreconditionFailed:
            raise CommitConflict(f"main of {repo_id} kept moving: gave up after 50 attempts; try again") from None
        return made[-1]

    def _files_after(self, repo_id: str, head: str | None, adds: dict[str, dict], deletes: list[str]) -> dict:
        base = self.commit(repo_id, head) if head else None
        files = dict(base.files) if base else {}
        for path in deletes:
            gone = [p for p in files if p == path or (path.endswith("/") and p.startswith(path))]
            if not gone:
                raise EntryNotFound(f"cannot delete {path}: no such file in {repo_id}")
            for p in gone:
                del files[p]
        files.update(adds)
        paths = set(files)
        for p in paths:  # a file may not also be a folder: clients could not write both to disk
            parts = p.split("/")
            clash = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in paths), None)
            if clash:
                raise CommitConflict(f"{clash} is a file, so {p} cannot be in a folder of that name")
        return files

    def referenced_blobs(self) -> set[str]:
        """Every blob any commit of any repo refers to (``zoo cache prune`` keeps them)."""
        out = set()
        for key in self.storage.list("repos/"):
            if "/commits/" in key and key.endswith(".json"):
                data = self._json(key) or {}
                out.update(rec["sha256"] for rec in (data.get("files") or {}).values())
        return out
