"""Discussions and pull requests of an uploaded repo, as the Hub keeps them.

One JSON document per thread, ``<kind>/<org>/<name>/discussions/<n>.json``, numbered from 1 for
discussions and pull requests together; its events (comments, status and title changes, commits
pushed to the pull request) are kept in the shape the Hub's API answers, so reading one is a copy.
Every change is a compare-and-swap of that document (two servers commenting at once both land).

A pull request is a ref, ``refs/pr/<n>`` (zoo/store/repos.py), whose first commit's parent was the
head of its target branch when it was opened (``baseCommit``, the merge base): merging applies what
the pull request changed since then over the branch's head, refusing a path the branch changed too.
"""

from __future__ import annotations

import html
import json
import secrets
import time

from zoo.errors import (CommitConflict, DiscussionNotFound, MalformedRequest, NotOpen, PreconditionFailed,
                        RevisionNotFound)
from zoo.store.objects import get_many, json_update
from zoo.store.repos import Commit, Ref, RepoStore, branch, conflicting_paths

STATUSES = ("open", "closed", "merged", "draft")
COMMENT_MAX = 65536


def _optional_text(value, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise MalformedRequest(f"{what} must be text")
    if value is not None and len(value) > COMMENT_MAX:
        raise MalformedRequest(f"{what} over {COMMENT_MAX} characters")
    return value


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _event(kind: str, author: str, data: dict) -> dict:
    return {"id": secrets.token_hex(12), "type": kind, "createdAt": iso(time.time()), "author": {"name": author},
            "data": data}


def comment_event(author: str, text: str) -> dict:
    now = iso(time.time())
    latest = {"raw": text, "html": "<p>" + html.escape(text).replace("\n", "<br>") + "</p>", "updatedAt": now,
              "author": {"name": author}}
    return _event("comment", author, {"edited": False, "hidden": False, "latest": latest, "numEdits": 0,
                                      "editors": [author], "history": [latest]})


class Discussions:
    """The threads of the repos of one :class:`RepoStore`."""

    def __init__(self, repos: RepoStore):
        self.repos = repos
        self.storage = repos.storage

    def _key(self, repo_id: str, num: int) -> str:
        return self.repos._key(repo_id, "discussions", f"{int(num)}.json")

    def get(self, repo_id: str, num: int) -> dict:
        obj = self.storage.get(self._key(repo_id, num))
        if obj is None:
            raise DiscussionNotFound(f"discussion {num} not found in {repo_id}")
        return json.loads(obj.data)

    def all(self, repo_id: str) -> list[dict]:
        keys = self.storage.list(self.repos._key(repo_id, "discussions") + "/")
        out = [json.loads(obj.data) for obj in get_many(self.storage, keys).values() if obj is not None]
        return sorted(out, key=lambda d: d["num"])

    def create(self, repo_id: str, title: str, description: str, author: str, pull_request: bool,
               base: str = "main", base_commit: str | None = None) -> dict:
        """A new thread with the next free number (found by creating ``<n>.json`` only if absent:
        two servers opening threads at once get two numbers)."""
        if not isinstance(title, str) or not title.strip() or len(title) > 200:
            raise MalformedRequest("a discussion needs a title of 1 to 200 characters")
        taken = [int(k.rsplit("/", 1)[-1][:-5]) for k in self.storage.list(self.repos._key(repo_id, "discussions") + "/")
                 if k.rsplit("/", 1)[-1][:-5].isdigit()]
        num = max(taken, default=0) + 1
        doc = {"num": num, "title": title.strip(), "status": "draft" if pull_request else "open",
               "isPullRequest": bool(pull_request), "author": {"name": author}, "createdAt": iso(time.time()),
               "events": [comment_event(author, description or "")]}
        if pull_request:
            doc.update({"base": base, "baseCommit": base_commit, "mergeCommitId": None})
        for _ in range(100):
            doc["num"] = num
            try:
                self.storage.put(self._key(repo_id, num), json.dumps(doc).encode(), if_none_match=True)
                return doc
            except PreconditionFailed:
                num += 1
        raise CommitConflict("could not number a new discussion: too many opened at once; try again")

    def change(self, repo_id: str, num: int, change) -> dict:
        """Apply ``change(doc)`` (which edits it in place) by compare-and-swap; the new document."""
        self.get(repo_id, num)  # a 404 before any write

        def edit(doc):
            change(doc)
            return doc

        return json_update(self.storage, self._key(repo_id, num), edit)

    def add_event(self, repo_id: str, num: int, event: dict, **fields) -> dict:
        def change(doc):
            doc["events"].append(event)
            doc.update(fields)

        self.change(repo_id, num, change)
        return event

    def comment(self, repo_id: str, num: int, author: str, text: str) -> dict:
        if not isinstance(text, str) or not text.strip() or len(text) > COMMENT_MAX:
            raise MalformedRequest(f"a comment needs some text (at most {COMMENT_MAX} characters)")
        return self.add_event(repo_id, num, comment_event(author, text))

    def edit_comment(self, repo_id: str, num: int, comment_id: str, author: str, text: str | None,
                     hide: bool = False) -> dict:
        """Edit a comment's text (its history keeps every version) or hide it; the comment after."""
        if not hide and (not isinstance(text, str) or not text.strip() or len(text) > COMMENT_MAX):
            raise MalformedRequest(f"a comment needs some text (at most {COMMENT_MAX} characters)")
        found: list[dict] = []

        def change(doc):
            event = next((e for e in doc["events"] if e["id"] == comment_id and e["type"] == "comment"), None)
            if event is None:
                raise DiscussionNotFound(f"no comment {comment_id} in discussion {num} of {repo_id}")
            data = event["data"]
            if data.get("hidden"):
                raise NotOpen(f"comment {comment_id} is hidden: it can no longer be edited")
            if hide:  # its text goes: a hidden comment's content cannot be read back
                data["latest"] = {**data["latest"], "raw": "", "html": "<p><i>This comment has been hidden</i></p>"}
                data.update(hidden=True, history=[data["latest"]])
            else:
                latest = comment_event(author, text)["data"]["latest"]
                data["history"].insert(0, latest)
                data.update(latest=latest, edited=True, numEdits=data.get("numEdits", 0) + 1,
                            editors=list(dict.fromkeys([*data.get("editors", []), author])))
            found.append(event)

        self.change(repo_id, num, change)
        return found[-1]

    def rename(self, repo_id: str, num: int, author: str, title: str) -> dict:
        if not isinstance(title, str) or not title.strip() or len(title) > 200:
            raise MalformedRequest("a title of 1 to 200 characters")
        old = self.get(repo_id, num)["title"]
        return self.add_event(repo_id, num, _event("title-change", author, {"from": old, "to": title.strip()}),
                              title=title.strip())

    def set_status(self, repo_id: str, num: int, author: str, status: str, comment: str | None = None) -> dict:
        """Close or reopen; a merged pull request (or one being merged) keeps its status, checked
        inside the compare-and-swap, so a close racing a merge never overwrites "merged"."""
        if status not in ("open", "closed"):
            raise MalformedRequest(f"status must be 'open' or 'closed', not {status!r}")
        comment = _optional_text(comment, "comment")
        event = _event("status-change", author, {"status": status})

        def change(doc):
            if doc["status"] == "merged" or _merging(doc):
                raise NotOpen(f"pull request {num} is {'merged' if doc['status'] == 'merged' else 'being merged'}: "
                              "its status cannot change")
            if comment and comment.strip():
                doc["events"].append(comment_event(author, comment))
            doc["events"].append(event)
            doc["status"] = status

        self.change(repo_id, num, change)
        return event

    # --- pull requests ------------------------------------------------------------------------

    def open_pull_request(self, repo_id: str, title: str, description: str, author: str, base: str = "main",
                          base_commit: str | None = None) -> dict:
        """A pull request onto branch ``base``, its ref ``refs/pr/<n>`` starting at the branch's head
        (or ``base_commit``): commits pushed to the ref are what it proposes."""
        if base_commit is None:
            base_commit = self.repos.head(repo_id, branch(base))
        if base_commit is None:
            raise RevisionNotFound(f"branch {base} not found in {repo_id}")
        doc = self.create(repo_id, title, description, author, True, base, base_commit)
        self.repos.create_ref(repo_id, Ref("pr", str(doc["num"])), base_commit)
        return doc

    def pull_request(self, repo_id: str, num: int) -> dict:
        doc = self.get(repo_id, num)
        if not doc.get("isPullRequest"):
            raise MalformedRequest(f"discussion {num} of {repo_id} is not a pull request")
        return doc

    def commit_to(self, repo_id: str, num: int, title: str, message: str, parent: str | None,
                  adds: dict, deletes: list[str], author: str | None = None) -> Commit:
        """A commit on ``refs/pr/<num>`` (its head, or the merge base before the first one). A closed
        or merged pull request takes none; a commit that lands while the pull request is being merged
        either is in the merge or leaves it open (:meth:`merge`), so no pushed commit is silently dropped."""
        doc = self.pull_request(repo_id, num)
        if doc["status"] not in ("open", "draft"):
            raise NotOpen(f"pull request {num} is {doc['status']}: reopen it before pushing to it")
        ref = Ref("pr", str(num))
        base_commit = doc.get("baseCommit")

        def make(head):
            start = head or base_commit
            if parent and parent != start:
                raise CommitConflict(f"parent commit {parent} is not the head of {ref.full} ({start})")
            files = self.repos.files_after(repo_id, start, adds, deletes)
            return self.repos._put_commit(repo_id, start, title, message, files, author=author)

        made = self.repos.move_ref(repo_id, ref, make)

        def record(d):
            if d["status"] == "closed" or d["status"] == "merged" and made.id not in self._chain(repo_id, d):
                raise NotOpen(f"pull request {num} was {d['status']} while this commit was pushed: {made.id} is on "
                              f"{ref.full} but not merged; reopen it or open another pull request")
            d["events"].append(_event("commit", author or d["author"]["name"], {"subject": title, "oid": made.id}))
            if d["status"] == "draft":
                d["status"] = "open"

        self.change(repo_id, num, record)
        return made

    def _chain(self, repo_id: str, doc: dict) -> set[str]:
        """The pull request's commits up to the head it was merged at."""
        out, cid = set(), doc.get("mergedHead")
        while cid and cid != doc.get("baseCommit") and len(out) < 10_000:
            out.add(cid)
            commit = self.repos.get_commit(repo_id, cid)
            cid = commit.parent if commit else None
        return out

    def conflicts(self, repo_id: str, doc: dict) -> list[str]:
        head = self.repos.head(repo_id, Ref("pr", str(doc["num"])))
        base_head = self.repos.head(repo_id, branch(doc["base"]))
        get = self.repos.get_commit
        if head is None or base_head is None or doc["status"] == "merged":
            return []
        base = get(repo_id, doc.get("baseCommit"))
        return sorted(conflicting_paths(base.files if base else {}, get(repo_id, base_head).files,
                                        get(repo_id, head).files))

    def merge(self, repo_id: str, num: int, author: str, comment: str | None = None) -> Commit:
        """Merge pull request ``num`` into its branch and mark it merged.

        The pull request is first claimed (``merging``, by compare-and-swap: a second merge of it at
        the same time is a 409), its head read only then, so a commit pushed before the claim is in
        the merge. One pushed during the merge is found when the result is recorded: the pull
        request then stays open (409 saying so) and a second merge lands the rest. A path the
        branch changed too is a 409 naming it, with nothing moved."""
        comment = _optional_text(comment, "comment")
        self.pull_request(repo_id, num)
        claim = {"by": author, "at": time.time(), "id": secrets.token_hex(8)}

        def take(doc):
            if doc["status"] not in ("open", "draft"):
                raise NotOpen(f"pull request {num} is {doc['status']}")
            if _merging(doc):
                raise NotOpen(f"pull request {num} is being merged by {doc['merging']['by']}")
            doc["merging"] = claim

        def release(doc):
            if (doc.get("merging") or {}).get("id") == claim["id"]:
                doc.pop("merging")

        doc = self.change(repo_id, num, take)
        try:
            head = self.repos.head(repo_id, Ref("pr", str(num)))
            if head is None or head == doc.get("baseCommit"):
                raise NotOpen(f"pull request {num} has no commit to merge yet")
            # a merge of this head already on the branch: an earlier merge whose record failed (its
            # claim went stale): record that one, do not merge twice
            made = self._landed(repo_id, doc["base"], head) or self.repos.merge(
                repo_id, branch(doc["base"]), head, doc.get("baseCommit"), f"Merge pull request #{num}: {doc['title']}",
                author=author)
        except BaseException:
            self.change(repo_id, num, release)
            raise
        late: list[str] = []

        def record(d):
            release(d)
            now = self.repos.head(repo_id, Ref("pr", str(num)))
            if now != head:  # pushed while merging: not in this merge, so the pull request stays open,
                late.append(now)  # and the next merge starts from what this one landed
                d["baseCommit"] = head
                return
            if d["status"] == "merged":
                return
            if comment and comment.strip():
                d["events"].append(comment_event(author, comment))
            d["events"].append(_event("status-change", author, {"status": "merged"}))
            d.update(status="merged", mergeCommitId=made.id, mergedHead=head)

        self.change(repo_id, num, record)
        if late:
            raise NotOpen(f"merged {head[:12]} into {doc['base']} as {made.id[:12]}, but {late[0][:12]} was pushed "
                          f"to pull request {num} meanwhile: it stays open; merge it again to land the rest")
        return made

    def _landed(self, repo_id: str, base: str, head: str, depth: int = 100) -> Commit | None:
        """The merge commit of ``head`` among the branch's last ``depth`` commits, if there is one."""
        cid = self.repos.head(repo_id, branch(base))
        for _ in range(depth):
            commit = self.repos.get_commit(repo_id, cid)
            if commit is None:
                return None
            if commit.merged == head:
                return commit
            cid = commit.parent
        return None


#: a merge claim older than this is from a server that died mid-merge: it no longer blocks
MERGE_CLAIM_SECONDS = 120


def _merging(doc: dict) -> bool:
    claim = doc.get("merging")
    return bool(claim) and time.time() - claim.get("at", 0) < MERGE_CLAIM_SECONDS
