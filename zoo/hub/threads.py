"""Discussions and pull requests as ``HfApi`` calls them: ``GET /api/{type}s/{repo}/discussions``
(filtered, 50 a page) and ``.../discussions/{n}`` (events, target branch, conflicting files, the
diff), ``POST .../discussions`` (``{"title", "description", "pullRequest"}``) and
``POST .../discussions/{n}/comment|title|status|merge``. The threads and the merge itself live in
zoo/store/discussions.py; this module reads the bodies and answers the events the client parses.
"""

from __future__ import annotations

import difflib

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from zoo.errors import DiscussionNotFound, MalformedRequest
from zoo.hub.admin import _body
from zoo.hub.read import hub_error, identity_of, kind_of, repo_id_of, user_of
from zoo.hub.served import ServedRepos
from zoo.hub.write import repo_url
from zoo.store.repos import Ref

#: the Hub's page size for discussions
DISCUSSIONS_PAGE = 50
#: the largest text file a pull request's diff shows line by line
DIFF_MAX = 256 * 1024


def _threads(hub, request: Request):
    repo_id, kind = repo_id_of(request), kind_of(request)
    hub.served.stores[kind].writable(repo_id)
    return hub.served.discussions[kind], repo_id


def _num(request: Request) -> int:
    text = request.path_params["num"]
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) == 0:
        raise MalformedRequest(f"invalid discussion number {text!r}")
    return int(text)


async def create(hub, request: Request) -> Response:
    data = await _body(request)
    threads, repo_id = await run_in_threadpool(_threads, hub, request)
    title, description = data.get("title"), data.get("description") or ""
    if not isinstance(description, str):
        raise MalformedRequest("description must be text")
    if data.get("pullRequest"):
        doc = await run_in_threadpool(threads.open_pull_request, repo_id, title, description, user_of(request))
    else:
        doc = await run_in_threadpool(threads.create, repo_id, title, description, user_of(request), False)
    return JSONResponse({"num": doc["num"], "url": f"{repo_url(request, kind_of(request), repo_id)}/discussions/{doc['num']}"})


async def change(hub, request: Request) -> Response:
    """comment, title, status or merge, by the last segment of the path."""
    data = await _body(request)
    threads, repo_id = await run_in_threadpool(_threads, hub, request)
    num, what, user = _num(request), request.path_params["what"], user_of(request)
    if what == "comment":
        event = await run_in_threadpool(threads.comment, repo_id, num, user, data.get("comment"))
        return JSONResponse({"newMessage": event})
    if what == "title":
        event = await run_in_threadpool(threads.rename, repo_id, num, user, data.get("title"))
        return JSONResponse({"newTitle": event})
    if what == "status":
        event = await run_in_threadpool(threads.set_status, repo_id, num, user, data.get("status"), data.get("comment"))
        return JSONResponse({"newStatus": event})
    if what == "merge":
        commit = await run_in_threadpool(threads.merge, repo_id, num, user, data.get("comment"))
        return JSONResponse({"mergeCommitId": commit.id})
    raise MalformedRequest(f"unknown discussion change {what!r}: comment, title, status or merge")


async def edit_comment(hub, request: Request) -> Response:
    """``edit_discussion_comment`` (``.../comment/{id}/edit``, ``{"content"}``) and
    ``hide_discussion_comment`` (``.../comment/{id}/hide``)."""
    data = await _body(request)
    threads, repo_id = await run_in_threadpool(_threads, hub, request)
    num, comment_id, action = _num(request), request.path_params["comment"], request.path_params["action"]
    if action not in ("edit", "hide") or not comment_id.isalnum():
        raise MalformedRequest(f"unknown comment change {action!r}: edit or hide")
    event = await run_in_threadpool(threads.edit_comment, repo_id, num, comment_id, user_of(request),
                                    data.get("content"), action == "hide")
    return JSONResponse({"updatedComment": event})


# --- reads ----------------------------------------------------------------------------------


def _thread_summary(doc: dict, repo_id: str, kind: str) -> dict:
    keep = ("num", "title", "status", "author", "createdAt", "isPullRequest")
    return {**{k: doc[k] for k in keep}, "repo": {"name": repo_id, "type": kind},
            "numComments": sum(e["type"] == "comment" for e in doc["events"]), "pinned": False}


def _uploaded(served: ServedRepos, request: Request) -> tuple[str, str] | Response:
    repo_id, kind = repo_id_of(request), kind_of(request)
    if not served.exists(repo_id, kind):
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
    if not served.stores[kind].exists(repo_id):
        return hub_error(400, None, f"{repo_id} is a mirrored repo: discussions live on uploaded repos only")
    return repo_id, kind


def discussions(served: ServedRepos, request: Request) -> Response:
    found = _uploaded(served, request)
    if isinstance(found, Response):
        return found
    repo_id, kind = found
    q = request.query_params
    kind_filter, status, author = q.get("type", "all"), q.get("status", "all"), q.get("author")
    text = q.get("p", "0") or "0"
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return hub_error(400, None, "p must be a page number (0 to 999999)")
    page = int(text)
    docs = [d for d in reversed(served.discussions[kind].all(repo_id))
            if (kind_filter == "all" or d["isPullRequest"] == (kind_filter == "pull_request"))
            and (status == "all" or d["status"] == status) and (not author or d["author"]["name"] == author)]
    start = page * DISCUSSIONS_PAGE
    return JSONResponse({"discussions": [_thread_summary(d, repo_id, kind) for d in docs[start:start + DISCUSSIONS_PAGE]],
                         "count": len(docs), "start": start,
                         "numClosedDiscussions": sum(d["status"] in ("closed", "merged") for d in docs)})


def discussion(served: ServedRepos, request: Request) -> Response:
    found = _uploaded(served, request)
    if isinstance(found, Response):
        return found
    repo_id, kind = found
    num = request.path_params["num"]
    threads = served.discussions[kind]
    try:
        doc = threads.get(repo_id, int(num))
    except (ValueError, DiscussionNotFound):
        return hub_error(404, None, f"discussion {num} not found in {repo_id}")
    out = {**_thread_summary(doc, repo_id, kind), "events": doc["events"]}
    if doc["isPullRequest"]:
        store = served.stores[kind]
        out["changes"] = {"base": f"refs/heads/{doc['base']}", "mergeCommitId": doc.get("mergeCommitId")}
        out["filesWithConflicts"] = threads.conflicts(repo_id, doc)
        head = store.get_commit(repo_id, store.head(repo_id, Ref("pr", str(doc["num"]))))
        base = store.get_commit(repo_id, doc.get("baseCommit"))
        identity = identity_of(request)
        gated = (getattr(request.state, "record", None) or {}).get("gated")
        if gated and not (identity and identity.can_read(repo_id)):  # the diff shows file contents
            out["diff"] = ""
        else:
            out["diff"] = _diff(served, base.files if base else {}, head.files if head else {}) if head else ""
    return JSONResponse(out)


def _text(served: ServedRepos, rec: dict | None) -> list[str] | None:
    """A regular file's lines for a diff; an LFS file is shown as its pointer, as git shows it."""
    if rec is None:
        return []
    if rec.get("lfs", True):
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{rec['sha256']}\nsize {rec['size']}\n".splitlines(True)
    if rec["size"] > DIFF_MAX:
        return None
    data = served.blobs.read(rec["sha256"])
    try:
        return data.decode("utf-8").splitlines(True) if data is not None else None
    except UnicodeDecodeError:
        return None


def _diff(served: ServedRepos, before: dict, after: dict) -> str:
    """What a pull request changes, as ``git diff`` prints it (binary files named, not shown)."""
    out = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if (a or {}).get("sha256") == (b or {}).get("sha256"):
            continue
        out.append(f"diff --git a/{path} b/{path}\n")
        old, new = _text(served, a), _text(served, b)
        if old is None or new is None:
            out.append(f"Binary files {'a/' + path if a else '/dev/null'} and {'b/' + path if b else '/dev/null'} differ\n")
            continue
        out += difflib.unified_diff(old, new, f"a/{path}" if a else "/dev/null", f"b/{path}" if b else "/dev/null")
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
    return "".join(out)
