"""Uploaded repos: immutable commits over content-addressed blobs, and refs that move.

Layout (keys of a :mod:`zoo.store.objects` store: ``ZOO_HOME`` by default, or ``s3://BUCKET/PREFIX``),
with ``<kind>`` ``repos`` for model repos and ``datasets`` for dataset repos::

    <kind>/<org>/<name>/repo.json              created, private, gated
    <kind>/<org>/<name>/refs/heads/<branch>    a branch's commit id (40 hex); the name percent-quoted
    <kind>/<org>/<name>/refs/tags/<tag>        a tag's commit id
    <kind>/<org>/<name>/refs/pr/<n>            pull request n's head (zoo/store/discussions.py)
    <kind>/<org>/<name>/commits/<id>.json      parent, merged, title, message, date, author, files
    <kind>/<org>/<name>/discussions/<n>.json   discussions and pull requests

Commits are written once (their id hashes their content); a ref moves only by compare-and-swap
(``If-Match`` on S3, a per-key lock on a directory), so any number of servers on one store agree
without shared memory and no commit is lost to a race; old commits stay, so a pinned revision keeps
resolving after a branch moves. Stores written before branches existed keep main at ``refs/main``:
it is read (and moved to ``refs/heads/main`` on the next commit) transparently.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from zoo import home
from zoo.cards.card import REPO_ID_RE
from zoo.errors import (CommitConflict, EntryNotFound, InvalidRepoId, MalformedRequest, PreconditionFailed, RefExists,
                        RepoNotFound, RevisionNotFound)
from zoo.store.objects import get_many, json_update, update

COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")
SHORT_COMMIT_RE = re.compile(r"^[0-9a-f]{7,39}\Z")
PR_REF_RE = re.compile(r"^refs/pr/([1-9][0-9]{0,8})\Z")
#: repo type -> the top-level key folder of its repos (models keep the folder they always had)
KINDS = {"model": home.REPOS, "dataset": home.DATASETS}
#: markers under a repo's folder: a delete in progress (its content: when it began); every LFS
#: object the repo's commits name is recorded under lfs/ (repos made before that record: scanned once)
DELETING, LFS_INDEXED = "deleting", "lfs-indexed"
#: how long a delete's or a move's marker holds off creates and writes (longer: its server died)
DELETE_MARK_SECONDS = MOVE_MARK_SECONDS = 600
#: the longest revision looked up (a branch or tag name is at most 200 characters)
REVISION_MAX = 255
#: what a branch or tag name may not contain (git check-ref-format's rules, and no '%' so that the
#: quoted key name reads back as the same name)
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\%]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$|^refs/|^@$")


def git_blob_oid(data: bytes) -> str:
    """The git blob id of a regular file: what the Hub reports as its ``oid``/ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def derived_commit_id(repo_id: str, files: dict[str, str]) -> str:
    """The commit id of a repo nobody committed to (a cached card's ``hub_repo``), from its files
    (path -> sha256): the same bytes have the same revision on every mirror and in the HF cache
    layout zoo writes, so a client that pinned a commit gets exactly what it pinned."""
    lines = "".join(f"{p} {sha}\n" for p, sha in sorted(files.items()))
    return hashlib.sha1(f"zoo repo {repo_id}\n{lines}".encode()).hexdigest()


def check_ref_name(name: str, what: str = "branch") -> str:
    """``name`` if git and the Hub would take it as a branch or tag name, else a 400 saying why."""
    if not isinstance(name, str) or not name or len(name) > 200 or _BAD_REF.search(name) or not name.isprintable():
        raise MalformedRequest(f"invalid {what} name {name!r}: no spaces, '..', '~^:?*[\\%', 'refs/' prefix, "
                               "leading '-', '/' or '.', or trailing '/', '.' or '.lock'")
    return name


#: commits a store keeps in memory once read through a ref (a few KB each)
COMMITS_KEPT = 20_000


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: float
    files: dict[str, dict] = field(default_factory=dict)
    merged: str | None = None  # a merge commit's second parent (the pull request's head)
    author: str | None = None


@dataclass(frozen=True)
class Ref:
    """A ref of a repo: ``kind`` is ``heads``, ``tags`` or ``pr``."""

    kind: str
    name: str

    @property
    def full(self) -> str:
        return f"refs/{self.kind}/{self.name}"

    @property
    def key(self) -> str:
        return f"refs/{self.kind}/{quote(self.name, safe='')}"


def branch(name: str) -> Ref:
    return Ref("heads", name)


MAIN = branch("main")


class RepoStore:
    """Repos of one type (``kind``: model or dataset) created and committed to through the hub's
    write API, in a :mod:`zoo.store.objects` store."""

    def __init__(self, storage, kind: str = "model"):
        self.storage = storage
        self.kind = kind
        self.folder = KINDS[kind]
        self._commits: dict[tuple[str, str], Commit] = {}  # reachable commits read (see commit())

    def _key(self, repo_id: str, *parts: str) -> str:
        if not REPO_ID_RE.match(repo_id):  # never a key outside the kind's folder (e.g. a decoded '%2e%2e')
            raise InvalidRepoId(f"invalid repo id {repo_id!r}; expected org/name")
        return "/".join((self.folder, repo_id, *parts))

    def _json(self, key: str) -> dict | None:
        obj = self.storage.get(key)
        if obj is None:
            return None
        try:
            data = json.loads(obj.data)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    # --- repos ------------------------------------------------------------------------------

    def exists(self, repo_id: str) -> bool:
        return self.storage.get(self._key(repo_id, "repo.json")) is not None

    def repo_ids(self) -> list[str]:
        keys = self.storage.list(self.folder + "/", depth=2)  # <org>/<name>/repo.json: not every commit's key
        return sorted(k[len(self.folder) + 1:-len("/repo.json")] for k in keys
                      if k.endswith("/repo.json") and k.count("/") == 3)

    def record(self, repo_id: str) -> dict | None:
        """The repo's record (created, private, gated), None if the repo does not exist."""
        return self._json(self._key(repo_id, "repo.json"))

    def info(self, repo_id: str) -> dict:
        return self.record(repo_id) or {}

    def create(self, repo_id: str, private: bool = False, author: str | None = None) -> bool:
        """Create an empty repo (with an empty first commit on main); False if it already exists.
        The record is claimed first (create-if-absent: one creator wins); keys a deleted repo of the
        same id left behind (a write that landed during its delete) are cleared before main is set."""
        body = json.dumps({"created": time.time(), "private": private, "gated": False}).encode()
        try:
            self.storage.put(self._key(repo_id, "repo.json"), body, if_none_match=True)
        except PreconditionFailed:
            return False
        if self._marked(repo_id, DELETING, DELETE_MARK_SECONDS):  # its sweep would take our keys: not yet
            self.storage.delete(self._key(repo_id, "repo.json"))
            raise RefExists(f"Repository {repo_id} is being deleted: create it again in a moment")
        for key in self.storage.list(self._key(repo_id) + "/"):
            if key != self._key(repo_id, "repo.json"):
                self.storage.delete(key)
        commit = self._put_commit(repo_id, None, "initial commit", "", {}, author=author)
        self.storage.put(self._key(repo_id, MAIN.key), commit.id.encode())
        self.storage.put(self._key(repo_id, LFS_INDEXED), b"")  # every LFS object it names will be recorded
        return True

    def _marked(self, repo_id: str, key: str, lifetime: float) -> bool:
        """Whether the marker ``key`` (its content: when it was set) is there and younger than ``lifetime``."""
        obj = self.storage.get(self._key(repo_id, key))
        try:
            return obj is not None and time.time() - float(obj.data.decode() or 0) < lifetime
        except ValueError:
            return False

    def writable(self, repo_id: str) -> dict:
        """The record of a repo that takes writes: RepoNotFound if absent, a 409 while it is moved."""
        record = self.record(repo_id)
        if record is None:
            raise RepoNotFound(f"Repository {repo_id} not found (create it first)")
        if record.get("moving_to") and time.time() - record.get("moving_since", 0) < MOVE_MARK_SECONDS:
            raise RefExists(f"{repo_id} is being moved to {record['moving_to']}: write there once the move is done")
        return record

    def update_settings(self, repo_id: str, **settings) -> dict:
        """Change ``private`` / ``gated`` in the repo's record (compare-and-swap: concurrent changes both land)."""
        if not self.exists(repo_id):
            raise RepoNotFound(f"Repository {repo_id} not found")

        def change(doc):
            return {**(doc or {}), **settings}

        return json_update(self.storage, self._key(repo_id, "repo.json"), change)

    def delete(self, repo_id: str) -> None:
        """Delete the repo and everything under it: a deletion marker first (a create of the same id
        waits for it), then the record (the repo stops existing at once), then its keys, listed again
        until none is left (a write that was landing is swept too), then the marker.
        Blobs are shared by content: ``zoo cache prune`` removes those no commit names any more."""
        key = self._key(repo_id, "repo.json")
        if self.storage.get(key) is None:
            raise RepoNotFound(f"Repository {repo_id} not found")
        self.storage.put(self._key(repo_id, DELETING), str(time.time()).encode())
        self.storage.delete(key)
        for _ in range(5):
            keys = [k for k in self.storage.list(self._key(repo_id) + "/")
                    if not k.endswith(("/repo.json", "/" + DELETING))]
            if not keys:
                break
            for k in keys:
                self.storage.delete(k)
        self.storage.delete(self._key(repo_id, DELETING))

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (another org, another name), history, refs and discussions
        included. ``dst`` is claimed first (a 409 if it exists), so two moves or a create racing for
        one name never mix their keys; ``src`` is marked as moving, so new writes to it are refused
        (409) while its keys are copied; the copy is repeated until its refs stand still, and only
        then is ``src`` deleted. Readers of ``dst`` see no revision until the copy is done. A copy
        that fails takes back the mark and the half-made ``dst``; a mover that dies leaves a mark
        that lapses after :data:`MOVE_MARK_SECONDS`."""
        info = self._json(self._key(src, "repo.json"))
        if info is None:
            raise RepoNotFound(f"Repository {src} not found")
        if info.get("moving_to") and time.time() - info.get("moving_since", 0) < MOVE_MARK_SECONDS:
            raise RefExists(f"{src} is being moved to {info['moving_to']} already")
        info = {k: v for k, v in info.items() if k not in ("moving_to", "moving_since")}
        try:
            self.storage.put(self._key(dst, "repo.json"), json.dumps({**info, "moving_from": src}).encode(),
                             if_none_match=True)
        except PreconditionFailed:
            raise RefExists(f"Repository {dst} exists already") from None
        mark = {"moving_to": dst, "moving_since": time.time()}
        try:
            json_update(self.storage, self._key(src, "repo.json"), lambda doc: {**(doc or info), **mark})
            prefix = self._key(src) + "/"
            copied: dict[str, bytes] = {}
            for _ in range(10):  # a write that passed its check before the mark may still land: copy it too
                changed = False
                for k in self.storage.list(prefix):
                    rest = k[len(prefix):]
                    obj = self.storage.get(k) if rest not in ("repo.json", DELETING) else None
                    if obj is not None and copied.get(rest) != obj.data:
                        self.storage.put(self._key(dst, rest), obj.data)
                        copied[rest], changed = obj.data, True
                if not changed:
                    break
            self.storage.put(self._key(dst, "repo.json"), json.dumps({**info, "moved_from": src}).encode())
        except BaseException:
            json_update(self.storage, self._key(src, "repo.json"),
                        lambda doc: {k: v for k, v in (doc or info).items() if k not in mark})
            self.delete(dst)
            raise
        self.delete(src)

    # --- which LFS objects a repo may name ----------------------------------------------------

    def mark_blob(self, repo_id: str, sha256: str) -> None:
        """Record that ``sha256``'s bytes reached this repo (uploaded and verified, or copied from a
        repo the writer may read): a commit of it may then name the object without sending it."""
        self.storage.put(self._key(repo_id, "lfs", sha256), b"")

    def knows_blob(self, repo_id: str, sha256: str) -> bool:
        """Whether a commit of this repo may name LFS object ``sha256`` without uploading it: its
        bytes reached this repo, or a commit of it names the object already (a repo from before
        the record: found once, then recorded). Knowing a blob's sha256 is not enough: a gated or
        private repo lists its files' oids, and the store keeps each blob once for all repos."""
        if self.storage.size(self._key(repo_id, "lfs", sha256)) is not None:
            return True
        if self.storage.size(self._key(repo_id, LFS_INDEXED)) is not None:
            return False  # every object its commits name is recorded: no scan
        keys = self.storage.list(self._key(repo_id, "commits") + "/")
        named = set()  # a repo from before the record: index it once, then look up markers only
        for obj in get_many(self.storage, keys).values():
            try:
                files = json.loads(obj.data).get("files") or {} if obj else {}
            except (ValueError, AttributeError):
                continue
            named |= {r["sha256"] for r in files.values() if isinstance(r, dict) and r.get("lfs", True)
                      and isinstance(r.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", r["sha256"])}
        for sha in named:
            self.mark_blob(repo_id, sha)
        self.storage.put(self._key(repo_id, LFS_INDEXED), b"")
        return sha256 in named

    # --- refs -------------------------------------------------------------------------------

    def _read_ref(self, repo_id: str, ref: Ref) -> str | None:
        obj = self.storage.get(self._key(repo_id, ref.key))
        if obj is None and ref == MAIN:
            obj = self.storage.get(self._key(repo_id, "refs", "main"))  # a store from before branches
        text = obj.data.decode(errors="replace").strip() if obj else ""
        return text if COMMIT_RE.match(text) else None

    def head(self, repo_id: str, ref: Ref = MAIN) -> str | None:
        return self._read_ref(repo_id, ref)

    def parse_revision(self, repo_id: str, revision: str) -> tuple[Ref | None, str]:
        """What ``revision`` names, as (its ref, or None for a commit id, and its commit id): a
        branch or tag name, ``refs/heads/X``, ``refs/tags/X``, ``refs/pr/N``, a commit id or a
        unique prefix of one (7 hex digits or more). :class:`RevisionNotFound` if none of these."""
        if not isinstance(revision, str) or not revision or len(revision) > REVISION_MAX:
            raise RevisionNotFound(f"not a revision of {repo_id}: empty, or over {REVISION_MAX} characters")
        candidates: list[Ref] = []
        if m := PR_REF_RE.match(revision):
            candidates = [Ref("pr", m[1])]
        elif revision.startswith("refs/heads/"):
            candidates = [branch(revision[len("refs/heads/"):])]
        elif revision.startswith("refs/tags/"):
            candidates = [Ref("tags", revision[len("refs/tags/"):])]
        elif not revision.startswith("refs/"):
            if COMMIT_RE.match(revision) and self._json(self._key(repo_id, "commits", f"{revision}.json")):
                return None, revision
            candidates = [branch(revision), Ref("tags", revision)]
        for ref in candidates:  # a name no ref could have is not looked up (nor made into a key)
            if (ref.kind == "pr" or not _BAD_REF.search(ref.name)) and (cid := self._read_ref(repo_id, ref)):
                return ref, cid
        if SHORT_COMMIT_RE.match(revision):
            found = [k.rsplit("/", 1)[-1][:-5] for k in self.storage.list(self._key(repo_id, "commits", revision))]
            if len(found) == 1:
                return None, found[0]
        raise RevisionNotFound(f"Invalid rev id: {revision} is not a branch, tag or commit of {repo_id}")

    def refs(self, repo_id: str) -> dict[str, list[tuple[str, str]]]:
        """Every ref, as {"heads": [(name, commit)], "tags": [...], "pr": [...]} (one LIST, then the
        refs read at once)."""
        out: dict[str, list[tuple[str, str]]] = {"heads": [], "tags": [], "pr": []}
        prefix = self._key(repo_id, "refs") + "/"
        found = {}
        for k in self.storage.list(prefix):
            kind, _, name = k[len(prefix):].partition("/")
            if kind in out and name and "/" not in name:
                found[k] = Ref(kind, unquote(name))
        for key, obj in get_many(self.storage, list(found)).items():
            text = obj.data.decode(errors="replace").strip() if obj else ""
            if COMMIT_RE.match(text):
                out[found[key].kind].append((found[key].name, text))
        if not any(name == "main" for name, _ in out["heads"]) and (cid := self._read_ref(repo_id, MAIN)):
            out["heads"].append(("main", cid))  # legacy refs/main
        out["pr"].sort(key=lambda item: int(item[0]))
        return out

    def create_ref(self, repo_id: str, ref: Ref, commit_id: str) -> None:
        """A new branch or tag at ``commit_id``; :class:`RefExists` if the name is taken."""
        if ref.kind != "pr":
            check_ref_name(ref.name, "tag" if ref.kind == "tags" else "branch")
        if ref == MAIN and self._read_ref(repo_id, MAIN):
            raise RefExists("branch main exists already")
        try:
            self.storage.put(self._key(repo_id, ref.key), commit_id.encode(), if_none_match=True)
        except PreconditionFailed:
            what = {"heads": "branch", "tags": "tag", "pr": "pull request ref"}[ref.kind]
            raise RefExists(f"{what} {ref.name} exists already in {repo_id}") from None

    def delete_ref(self, repo_id: str, ref: Ref) -> None:
        if ref == MAIN:
            raise MalformedRequest("the main branch cannot be deleted")
        if ref.kind != "pr" and _BAD_REF.search(ref.name) or self._read_ref(repo_id, ref) is None:
            raise RevisionNotFound(f"{ref.full} not found in {repo_id}")
        self.storage.delete(self._key(repo_id, ref.key))

    # --- commits ----------------------------------------------------------------------------

    def get_commit(self, repo_id: str, cid: str | None) -> Commit | None:
        if not cid or not COMMIT_RE.match(cid):
            return None
        data = self._json(self._key(repo_id, "commits", f"{cid}.json"))
        try:
            return Commit(**data) if data else None
        except TypeError:
            return None

    def commit(self, repo_id: str, revision: str) -> Commit | None:
        """The commit ``revision`` names (see :meth:`parse_revision`); None if it names none.

        A commit named through a ref just read is reachable, and a commit never changes: those are
        kept in memory (:data:`COMMITS_KEPT`), so a page listing every repo reads each one's ref
        and record, not its commit again. A bare commit id is read from the store every time: the
        store alone says whether the repo (perhaps deleted and created again) still holds it."""
        try:
            ref, cid = self.parse_revision(repo_id, revision)
        except RevisionNotFound:
            return None
        if ref is None:
            return self.get_commit(repo_id, cid)
        key = (repo_id, cid)
        commit = self._commits.get(key)
        if commit is None:
            commit = self.get_commit(repo_id, cid)
            if commit is not None:
                if len(self._commits) >= COMMITS_KEPT:
                    for old in list(self._commits)[: COMMITS_KEPT // 2]:
                        self._commits.pop(old, None)
                self._commits[key] = commit
        return commit

    def history(self, repo_id: str, revision: str = "main") -> list[Commit]:
        """The commits behind ``revision``, newest first, following first parents (a merge commit
        stands for the pull request it merged, as ``git log --first-parent``)."""
        out, commit = [], self.commit(repo_id, revision)
        while commit is not None:
            out.append(commit)
            commit = self.get_commit(repo_id, commit.parent) if commit.parent else None
        return out

    def history_page(self, repo_id: str, start: str, limit: int) -> tuple[list[Commit], str | None]:
        """Up to ``limit`` commits from commit ``start`` back along first parents, and the id to
        continue from (None at the first commit): a page of :meth:`history`, read no further."""
        out, commit = [], self.get_commit(repo_id, start)
        while commit is not None and len(out) < limit:
            out.append(commit)
            commit = self.get_commit(repo_id, commit.parent) if commit.parent else None
        return out, commit.id if commit is not None else None

    def _put_commit(self, repo_id: str, parent: str | None, title: str, message: str, files: dict,
                    merged: str | None = None, author: str | None = None) -> Commit:
        date = time.time()
        record = {"parent": parent, "title": title, "message": message, "date": date, "files": files}
        if merged:
            record["merged"] = merged
        if author:
            record["author"] = author
        body = json.dumps(record, sort_keys=True).encode()
        cid = hashlib.sha1(b"zoo commit " + repo_id.encode() + b"\0" + body).hexdigest()
        commit = Commit(cid, parent, title, message, date, files, merged, author)
        self.storage.put(self._key(repo_id, "commits", f"{cid}.json"), json.dumps(commit.__dict__).encode())
        return commit

    def move_ref(self, repo_id: str, ref: Ref, make_commit, attempts: int = 50) -> Commit:
        """Move ``ref`` to the commit ``make_commit(head_id)`` writes on its current head (None if
        the ref does not exist yet: only a new pull request ref), by compare-and-swap: a lost race
        calls it again on the new head, so no writer's commit is lost; if the ref keeps moving,
        :class:`CommitConflict` (a 409, as the Hub answers)."""
        made: list[Commit] = []

        def next_head(raw: bytes | None) -> bytes:
            text = raw.decode(errors="replace").strip() if raw else ""
            if raw is None and ref == MAIN:
                text = self._read_ref(repo_id, MAIN) or ""  # legacy refs/main becomes refs/heads/main
            head = text if COMMIT_RE.match(text) else None
            if head is None and ref.kind != "pr":
                raise RevisionNotFound(f"{ref.full} not found in {repo_id}")
            made.append(make_commit(head))
            return made[-1].id.encode()

        try:
            update(self.storage, self._key(repo_id, ref.key), next_head, attempts=attempts)
        except PreconditionFailed:
            raise CommitConflict(f"{ref.full} of {repo_id} kept moving: gave up after {attempts} attempts; "
                                 "try again") from None
        return made[-1]

    def apply(self, repo_id: str, title: str, message: str, parent: str | None, adds: dict[str, dict],
              deletes: list[str], ref: Ref = MAIN, author: str | None = None) -> Commit:
        """A new commit on ``ref`` (a branch, or an open pull request's ref): ``adds`` (path -> file
        record) over its files, minus ``deletes`` (files, or folders when the path ends with '/').
        Raises :class:`CommitConflict` if ``parent`` is given and is not the ref's head any more
        (the client then sees a 409, as on the Hub), :class:`EntryNotFound` for a deletion of a
        path the ref does not hold, and :class:`RevisionNotFound` for a branch that does not exist."""
        if ref.kind == "tags":
            raise MalformedRequest(f"cannot commit to tag {ref.name}: commit to a branch, then move the tag")
        if parent and not COMMIT_RE.match(parent):
            try:
                parent = self.parse_revision(repo_id, parent)[1]
            except RevisionNotFound:
                raise CommitConflict(f"parent commit {parent} is not a commit of {repo_id}") from None

        def make(head: str | None) -> Commit:
            if parent and parent != head:
                raise CommitConflict(f"parent commit {parent} is not the head of {ref.full} ({head})")
            return self._put_commit(repo_id, head, title, message, self.files_after(repo_id, head, adds, deletes),
                                    author=author)

        return self.move_ref(repo_id, ref, make)

    def files_after(self, repo_id: str, head: str | None, adds: dict[str, dict], deletes: list[str]) -> dict:
        base = self.get_commit(repo_id, head) if head else None
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

    def squash(self, repo_id: str, ref: Ref, message: str, author: str | None = None) -> Commit:
        """Replace ``ref``'s history by one commit holding its files (``super_squash_history``). The
        old commits stay readable by id until ``zoo cache prune``; a commit that lands on the branch
        while squashing is squashed too, never dropped."""
        if ref.kind != "heads":
            raise MalformedRequest("only a branch can be squashed")

        def make(head: str | None) -> Commit:
            files = self.get_commit(repo_id, head).files if head else {}
            return self._put_commit(repo_id, None, message, "", files, author=author)

        return self.move_ref(repo_id, ref, make)

    def merge(self, repo_id: str, ref: Ref, source: str, merge_base: str | None, title: str,
              message: str = "", author: str | None = None) -> Commit:
        """Merge commit ``source`` into branch ``ref``: the changes ``source`` made since
        ``merge_base`` applied over the branch's current files, a second parent recording what was
        merged. A path both sides changed differently is a :class:`CommitConflict` naming it."""
        theirs = self.get_commit(repo_id, source)
        base = self.get_commit(repo_id, merge_base) if merge_base else None
        if theirs is None:
            raise RevisionNotFound(f"commit {source} not found in {repo_id}")
        base_files = base.files if base else {}

        def make(head: str | None) -> Commit:
            ours = self.get_commit(repo_id, head).files if head else {}
            conflicts = conflicting_paths(base_files, ours, theirs.files)
            if conflicts:
                raise CommitConflict(f"cannot merge: {', '.join(sorted(conflicts))} changed on {ref.name} too")
            files = dict(ours)
            for path in set(base_files) | set(theirs.files):
                if base_files.get(path) != theirs.files.get(path):
                    if path in theirs.files:
                        files[path] = theirs.files[path]
                    else:
                        files.pop(path, None)
            return self._put_commit(repo_id, head, title, message, files, merged=source, author=author)

        return self.move_ref(repo_id, ref, make)

    def referenced_blobs(self) -> set[str]:
        """Every blob any commit of any repo of this kind refers to (``zoo cache prune`` keeps them)."""
        out = set()
        for key in self.storage.list(self.folder + "/"):
            if "/commits/" in key and key.endswith(".json"):
                data = self._json(key) or {}
                out.update(rec["sha256"] for rec in (data.get("files") or {}).values())
        return out


def _sha(rec: dict | None) -> str | None:
    return rec.get("sha256") if rec else None


def conflicting_paths(base: dict, ours: dict, theirs: dict) -> list[str]:
    """Paths both sides changed since ``base``, to different contents."""
    out = []
    for path in set(base) | set(ours) | set(theirs):
        b, o, t = _sha(base.get(path)), _sha(ours.get(path)), _sha(theirs.get(path))
        if o != b and t != b and o != t:
            out.append(path)
    return out


def all_referenced_blobs(storage) -> set[str]:
    """The blobs the commits of every kind of repo in ``storage`` refer to."""
    out: set[str] = set()
    for kind in KINDS:
        out |= RepoStore(storage, kind).referenced_blobs()
    return out
