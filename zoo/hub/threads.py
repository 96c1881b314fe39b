"""Discussions and pull requests over the write API, as ``HfApi`` calls them:
``POST /api/{type}s/{repo}/discussions`` (``{"title", "description", "pullRequest"}``) and
``POST .../discussions/{n}/comment|title|status|merge``. The threads and the merge itself live in
zoo/store/discussions.py; this module reads the bodies and answers the events the client parses.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from zoo.errors import MalformedRequest
from zoo.hub.admin import _body
from zoo.hub.read import kind_of, repo_id_of, user_of
from zoo.hub.write import repo_url


def _threads(hub, request: Request):
    repo_id, kind = repo_id_of(request), kind_of(request)
    hub.served.stores[kind].writable(repo_id)
    return hub.served.discussions[kind], repo_id


def _num(request: Request) -> int:
    text = request.path_params["num"]
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 10 ** 9:
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
