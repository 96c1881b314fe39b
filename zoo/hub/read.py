"""The read side of the Hugging Face Hub protocol, as huggingface_hub and timm use it.

- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` (the LFS
  sha256, which becomes the client's blob name), ``Content-Length`` and HTTP Range (206).
- ``GET /api/models`` (``?search=``), ``/api/models/{repo}[/revision/{rev}]``, ``.../tree/{rev}[/{path}]``,
  ``.../refs``, ``.../commits/{rev}``: the JSON huggingface_hub parses.

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which
huggingface_hub turns into its typed exceptions. No ``X-Xet-*`` header is ever sent (the client
would switch to the Xet protocol). Paths are looked up in the repo's file map, never joined onto
the file system, and a path that tries to escape (``..``, absolute) is a 400.
"""

from __future__ import annotations

import re
import time
from itertools import chain
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from zoo.errors import ObjectNotFound, StorageError
from zoo.hub.served import Repo, ServedRepos
from zoo.util.paths import is_safe_relpath


class BlobResponse(FileResponse):
    chunk_size = 1 << 20  # 64 KiB (starlette's default) costs a third of loopback throughput


def hub_error(status: int, code: str | None, message: str, commit: str | None = None) -> JSONResponse:
    # headers carry ASCII only (a CR/LF or non-ASCII byte would break or drop the response); the
    # JSON body keeps the message as it is
    headers = {"X-Error-Message": message.encode("ascii", "backslashreplace").decode().replace("\r", " ").replace("\n", " ")}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def bad_path(path: str) -> bool:
    """A file path that could point outside its repo: absolute, or with '..', '.', empty or NUL parts."""
    return not is_safe_relpath(path)


def repo_at_revision(served: ServedRepos, request: Request) -> Repo | JSONResponse:
    """The repo named by the path, at the path's revision (default main); else the hub's error."""
    p = request.path_params
    repo_id = f"{p['org']}/{p['name']}"
    if not served.exists(repo_id):
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
    revision = unquote(p.get("revision", "main"))
    repo = served.at(repo_id, revision)
    if repo is None:
        return hub_error(404, "RevisionNotFound", f"Revision {revision} not found in {repo_id}")
    return repo


def resolve(served: ServedRepos, request: Request) -> Response:
    path = request.path_params["path"]
    if bad_path(path):
        return hub_error(400, None, f"invalid file path {path!r}")
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    entry = repo.files.get(path)
    blobs = served.blobs
    remote = entry is not None and entry.in_store
    if entry is None or (not remote and not entry.blob.is_file()):  # a blob removed since the index was read
        return hub_error(404, "EntryNotFound", f"{path} not found in {repo.repo_id}", commit=repo.commit)
    headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{entry.etag}"'}
    if entry.lfs:
        headers.update({"X-Linked-Size": str(entry.size), "X-Linked-Etag": f'"{entry.sha256}"'})
    served.count(f"{request.method} {repo.repo_id}/{entry.path}")
    if remote:
        if entry.lfs and blobs.redirect:  # the store serves the bytes: a cross-origin redirect, as the Hub's CDN does
            return Response(status_code=302, headers={**headers, "Location": blobs.url(entry.sha256)})
        if entry.lfs:  # --proxy-downloads: the bytes pass through this server
            return _proxied(served, request, entry, headers)
        data = blobs.read(entry.sha256)
        if data is None:
            return hub_error(404, "EntryNotFound", f"{path} not found in {repo.repo_id}", commit=repo.commit)
        if request.method == "GET":
            served.bytes_out += len(data)
        return Response(b"" if request.method == "HEAD" else data, headers={**headers, "Content-Length": str(len(data))},
                        media_type="application/octet-stream")
    if request.method == "GET":
        served.bytes_out += entry.size
    return BlobResponse(entry.blob, headers=headers, media_type="application/octet-stream",
                        stat_result=entry.blob.stat())


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """One HTTP range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) as inclusive ``(start, end)``;
    None for no header or one to ignore (several ranges: the whole file is a valid answer);
    "unsatisfiable" for a range that starts past the end."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d{0,19})-(\d{0,19})\s*", header or "", re.ASCII | re.IGNORECASE)
    if m is None or not (m[1] or m[2]):  # absent, several ranges, another unit, or malformed: ignored
        return None
    if not m[1]:  # the last n bytes
        n = int(m[2])
        return (max(size - n, 0), size - 1) if n and size else "unsatisfiable"
    start = int(m[1])
    if m[2] and int(m[2]) < start:  # an invalid range is ignored (RFC 9110 14.1.1), not refused
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(int(m[2]), size - 1) if m[2] else size - 1


def _proxied(served, request: Request, entry, headers: dict) -> Response:
    """Stream an LFS file from the store through this server, honouring one Range (a resumed download)."""
    headers["Accept-Ranges"] = "bytes"
    wanted = byte_range(request.headers.get("range"), entry.size)
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{entry.size}"})
    start, end = wanted or (0, entry.size - 1)
    status = 206 if wanted else 200
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    body = served.blobs.stream(entry.sha256, start, end) if entry.size else iter(())
    try:  # the first read opens the object: a missing or unreachable blob is an error status, not a cut body
        first = next(body, b"")
    except ObjectNotFound:
        return hub_error(404, "EntryNotFound", f"{entry.path} is not in the store", commit=headers["X-Repo-Commit"])
    except StorageError as exc:
        return hub_error(503, None, f"the store did not answer: {exc}")
    served.bytes_out += end - start + 1
    return StreamingResponse(chain([first], body), status_code=status, headers=headers,
                             media_type="application/octet-stream")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _info(repo: Repo, card=None) -> dict:
    siblings = []
    for f in sorted(repo.files.values(), key=lambda f: f.path):
        s = {"rfilename": f.path, "size": f.size, "blobId": f.oid}
        if f.lfs:
            s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        siblings.append(s)
    info = {"_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "library_name": "timm", "tags": ["timm", "image-classification"], "siblings": siblings,
            "lastModified": _iso(repo.last_modified), "createdAt": _iso(repo.last_modified)}
    return info


def model_info(served: ServedRepos, request: Request) -> Response:
    repo = repo_at_revision(served, request)
    return repo if isinstance(repo, Response) else JSONResponse(_info(repo))


def list_models(served: ServedRepos, request: Request) -> Response:
    search = request.query_params.get("search", "").casefold()
    author = request.query_params.get("author", "")
    try:
        limit = int(request.query_params.get("limit", "1000") or 1000)
    except ValueError:
        return hub_error(400, None, "limit must be a number")
    out = []
    show_private = getattr(request.state, "authorized", False)
    for repo_id in served.repo_ids():
        if search and search not in repo_id.casefold() or author and not repo_id.startswith(author + "/"):
            continue
        repo = served.get(repo_id)
        if repo is not None and (show_private or not repo.private):
            out.append({k: v for k, v in _info(repo).items() if k != "siblings"})
    return JSONResponse(out[:limit])


def tree(served: ServedRepos, request: Request) -> Response:
    p = request.path_params
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    prefix = unquote(p.get("path", "")).strip("/")
    if prefix and bad_path(prefix):
        return hub_error(400, None, f"invalid path {prefix!r}")
    recursive = request.query_params.get("recursive", "false").lower() == "true"
    entries, folders = [], set()
    for f in sorted(repo.files.values(), key=lambda f: f.path):
        if prefix and not f.path.startswith(prefix + "/"):
            continue
        rest = f.path[len(prefix) + 1:] if prefix else f.path
        if "/" in rest and not recursive:
            folders.add((prefix + "/" if prefix else "") + rest.split("/", 1)[0])
            continue
        e = {"type": "file", "path": f.path, "size": f.size, "oid": f.oid}
        if f.lfs:
            e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        entries.append(e)
        if recursive and "/" in rest:
            parts = f.path.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(prefix.split("/")) if prefix else 0, len(parts)))
    if prefix and not entries and not folders:
        return hub_error(404, "EntryNotFound", f"{prefix} not found in {repo.repo_id}", commit=repo.commit)
    entries += [{"type": "directory", "path": d, "oid": repo.commit} for d in sorted(folders)]
    return JSONResponse(entries)


def refs(served: ServedRepos, request: Request) -> Response:
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    return JSONResponse({"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}],
                         "converts": [], "tags": []})


def commits(served: ServedRepos, request: Request) -> Response:
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    if repo.uploaded:
        history = served.store.history(repo.repo_id, repo.commit)
        items = [{"id": c.id, "title": c.title, "message": c.message, "authors": [], "date": _iso(c.date)} for c in history]
    else:
        items = [{"id": repo.commit, "title": "pulled by zoo", "message": "", "authors": [], "date": _iso(repo.last_modified)}]
    return JSONResponse(items)
