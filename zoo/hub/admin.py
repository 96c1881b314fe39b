"""Refs and repo administration over the write API: branches, tags, super-squash, delete, move,
duplicate and settings, as ``HfApi`` calls them.

- ``POST|DELETE /api/{type}s/{repo}/branch/{branch}`` (``{"startingPoint": rev}``),
  ``POST /api/{type}s/{repo}/tag/{rev}`` (``{"tag", "message"}``), ``DELETE .../tag/{tag}``,
  ``POST .../super-squash/{branch}`` (``{"message"}``);
- ``DELETE /api/repos/delete`` and ``POST /api/repos/move`` (the repo named in the body),
  ``POST /api/{type}s/{repo}/duplicate`` (``{"repository", "visibility"}``),
  ``PUT /api/{type}s/{repo}/settings`` (``{"private"|"visibility", "gated"}``).

A name taken answers 409 (the client's ``exist_ok`` reads it), a revision that does not exist
RevisionNotFound, a repo RepoNotFound; every change goes through zoo/store/repos.py's
compare-and-swap, so servers sharing a store agree.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from zoo.errors import Forbidden, GatedRepo, MalformedRequest, RefExists, RepoNotFound
from zoo.hub.read import identity_of, kind_of, repo_id_of, revision_of, user_of
from zoo.hub.write import _json, body_repo, repo_url
from zoo.store.repos import Ref, branch, check_ref_name


async def _body(request: Request) -> dict:
    data = await _json(request, strict=True)  # a body that is not JSON is a 400, not an empty one
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MalformedRequest("expected a JSON object")
    return data


def _store(hub, request: Request):
    """The path's repo store and id, if the repo takes writes (RepoNotFound; 409 while moved)."""
    repo_id, kind = repo_id_of(request), kind_of(request)
    store = hub.served.stores[kind]
    store.writable(repo_id)
    return store, repo_id


async def create_branch(hub, request: Request) -> Response:
    data = await _body(request)
    store, repo_id = await run_in_threadpool(_store, hub, request)
    name = check_ref_name(revision_of(request, "branch"))
    start = data.get("startingPoint") or "main"
    if not isinstance(start, str):
        raise MalformedRequest("startingPoint must be a revision")

    def create():
        _, commit = store.parse_revision(repo_id, start)
        store.create_ref(repo_id, branch(name), commit)

    await run_in_threadpool(create)
    return JSONResponse({"name": name, "ref": f"refs/heads/{name}"})


async def delete_branch(hub, request: Request) -> Response:
    store, repo_id = await run_in_threadpool(_store, hub, request)
    await run_in_threadpool(store.delete_ref, repo_id, branch(revision_of(request, "branch")))
    return JSONResponse({})


async def create_tag(hub, request: Request) -> Response:
    data = await _body(request)
    store, repo_id = await run_in_threadpool(_store, hub, request)
    name = check_ref_name(data.get("tag"), "tag")
    revision = revision_of(request)

    def create():
        _, commit = store.parse_revision(repo_id, revision)
        store.create_ref(repo_id, Ref("tags", name), commit)

    await run_in_threadpool(create)
    return JSONResponse({"name": name, "ref": f"refs/tags/{name}"})


async def delete_tag(hub, request: Request) -> Response:
    store, repo_id = await run_in_threadpool(_store, hub, request)
    await run_in_threadpool(store.delete_ref, repo_id, Ref("tags", revision_of(request)))
    return JSONResponse({})


async def super_squash(hub, request: Request) -> Response:
    data = await _body(request)
    store, repo_id = await run_in_threadpool(_store, hub, request)
    name = revision_of(request, "branch")
    message = data.get("message") or f"Super-squash branch '{name}'"
    if not isinstance(message, str):
        raise MalformedRequest("message must be text")
    commit = await run_in_threadpool(store.squash, repo_id, branch(name), message, user_of(request))
    return JSONResponse({"commitId": commit.id})


async def delete_repo(hub, request: Request) -> Response:
    data = await _body(request)
    repo_id, kind = body_repo(hub, request, data)
    await run_in_threadpool(hub.served.stores[kind].delete, repo_id)
    return JSONResponse({})


async def move_repo(hub, request: Request) -> Response:
    data = await _body(request)
    if not all(isinstance(data.get(k), str) for k in ("fromRepo", "toRepo")):
        raise MalformedRequest("expected JSON {fromRepo, toRepo, type}")
    src, kind = body_repo(hub, request, {"name": data["fromRepo"], "type": data.get("type")})
    dst, _ = body_repo(hub, request, {"name": data["toRepo"], "type": data.get("type")})
    if not hub.served.stores[kind].exists(src):
        raise RepoNotFound(f"Repository {src} not found")
    await run_in_threadpool(hub.served.stores[kind].move, src, dst)
    return JSONResponse({"url": repo_url(request, kind, dst)})


async def duplicate_repo(hub, request: Request) -> Response:
    """A new repo whose main is one commit holding the source's main files (its history, branches
    and discussions stay behind, as on the Hub); the blobs are shared, no byte is copied. It is as
    private and as gated as the source unless the request says otherwise (the client's default).
    The caller needs read access to the source and write access to the new repo."""
    data = await _body(request)
    store, src = await run_in_threadpool(_store, hub, request)
    kind = kind_of(request)
    dst, _ = body_repo(hub, request, {"name": data.get("repository"), "type": kind})
    source = await run_in_threadpool(store.info, src)
    identity = identity_of(request)
    if source.get("gated") and not identity.can_read(src):  # a copy must not be a way around the gate
        raise GatedRepo(f"Access to {src} is restricted: a token that may read it can duplicate it")
    private = data["visibility"] == "private" if data.get("visibility") in ("private", "public") \
        else bool(data.get("private", source.get("private")))

    def duplicate():
        files = store.commit(src, "main").files
        if not store.create(dst, private, user_of(request)):
            raise RefExists(f"Repository {dst} exists already")
        if source.get("gated"):
            store.update_settings(dst, gated=source["gated"])
        for rec in files.values():  # the new repo may name the source's LFS objects from now on
            if rec.get("lfs", True):
                store.mark_blob(dst, rec["sha256"])
        store.apply(dst, f"Duplicate from {src}", "", None, files, [], author=user_of(request))

    await run_in_threadpool(duplicate)
    return JSONResponse({"url": repo_url(request, kind, dst), "filesCopyPending": False})


async def update_settings(hub, request: Request) -> Response:
    data = await _body(request)
    store, repo_id = await run_in_threadpool(_store, hub, request)
    if not identity_of(request).can_write(repo_id):
        raise Forbidden(f"this token may not change the settings of {repo_id}")
    settings = {}
    if "visibility" in data:
        if data["visibility"] not in ("private", "public"):
            raise MalformedRequest("visibility must be private or public")
        settings["private"] = data["visibility"] == "private"
    if "private" in data:
        settings["private"] = bool(data["private"])
    if "gated" in data:
        if data["gated"] not in ("auto", "manual", False):
            raise MalformedRequest("gated must be 'auto', 'manual' or false")
        settings["gated"] = data["gated"]
    if not settings:
        raise MalformedRequest("nothing to change: send private/visibility or gated")
    await run_in_threadpool(lambda: store.update_settings(repo_id, **settings))
    return JSONResponse({})
