"""The read side of the Hugging Face Hub protocol, as huggingface_hub and timm use it.

- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` (the LFS
  sha256, which becomes the client's blob name), ``Content-Length`` and HTTP Range (206).
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: ``ModelInfo`` JSON.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the tree listing.

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which
huggingface_hub turns into its typed exceptions. No ``X-Xet-*`` header is ever sent (the client
would switch to the Xet protocol). Paths are looked up in the repo's file map, never joined onto
the file system, so no request can reach outside the cache.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .repos import REPO_ID_RE, Repo, RepoIndex


class BlobResponse(FileResponse):
    chunk_size = 1 << 20  # 64 KiB (starlette's default) costs a third of loopback throughput


def hub_error(status: int, code: str | None, message: str, commit: str | None = None) -> JSONResponse:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _repo_or_error(index: RepoIndex, repo_id: str) -> Repo | JSONResponse:
    repo = index.get(repo_id) if REPO_ID_RE.match(repo_id) else None
    if repo is None:
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
    return repo


def _check_revision(repo: Repo, revision: str) -> JSONResponse | None:
    if unquote(revision) not in ("main", repo.commit):
        return hub_error(404, "RevisionNotFound", f"Revision {unquote(revision)} not found in {repo.repo_id}")
    return None


def _repo_at_revision(index: RepoIndex, request: Request) -> Repo | JSONResponse:
    """The repo named by the path, at the path's revision if it names one; else the hub's error."""
    p = request.path_params
    repo = _repo_or_error(index, f"{p['org']}/{p['name']}")
    if isinstance(repo, Repo) and "revision" in p:
        return _check_revision(repo, p["revision"]) or repo
    return repo


def resolve(index: RepoIndex, request: Request) -> Response:
    p = request.path_params
    repo = _repo_at_revision(index, request)
    if isinstance(repo, Response):
        return repo
    entry = repo.files.get(p["path"])
    if entry is None or not entry.blob.is_file():  # a blob removed since the index was read
        return hub_error(404, "EntryNotFound", f"{p['path']} not found in {repo.repo_id}", commit=repo.commit)
    headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size),
               "X-Linked-Etag": f'"{entry.sha256}"'}
    index.count(f"{request.method} {repo.repo_id}/{entry.path}")
    return BlobResponse(entry.blob, headers=headers, media_type="application/octet-stream",
                        stat_result=entry.blob.stat())


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def model_info(index: RepoIndex, request: Request) -> Response:
    repo = _repo_at_revision(index, request)
    if isinstance(repo, Response):
        return repo
    siblings = [{"rfilename": f.path, "size": f.size, "blobId": f.oid,
                 "lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}}
                for f in sorted(repo.files.values(), key=lambda f: f.path)]
    return JSONResponse({
        "_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
        "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
        "library_name": "timm", "tags": ["timm", "image-classification"], "siblings": siblings,
        "lastModified": _iso(repo.last_modified), "createdAt": _iso(repo.last_modified),
    })


def tree(index: RepoIndex, request: Request) -> Response:
    p = request.path_params
    repo = _repo_at_revision(index, request)
    if isinstance(repo, Response):
        return repo
    prefix = unquote(p.get("path", "")).strip("/")
    recursive = request.query_params.get("recursive", "false").lower() == "true"
    entries, folders = [], set()
    for f in sorted(repo.files.values(), key=lambda f: f.path):
        if prefix and not f.path.startswith(prefix + "/"):
            continue
        rest = f.path[len(prefix) + 1:] if prefix else f.path
        if "/" in rest and not recursive:
            folders.add((prefix + "/" if prefix else "") + rest.split("/", 1)[0])
            continue
        entries.append({"type": "file", "path": f.path, "size": f.size, "oid": f.oid,
                        "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}})
    if prefix and not entries and not folders:
        return hub_error(404, "EntryNotFound", f"{prefix} not found in {repo.repo_id}", commit=repo.commit)
    entries += [{"type": "directory", "path": d, "oid": repo.commit} for d in sorted(folders)]
    return JSONResponse(entries)
