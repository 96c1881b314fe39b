"""The read side of the Hugging Face Hub protocol, as huggingface_hub, HfFileSystem and timm use it,
for model repos (``/api/models/...``, ``/{repo}/resolve/...``) and dataset repos (``/api/datasets/...``,
``/datasets/{repo}/resolve/...``); the route wrapper (zoo/hub/app.py) says which (:func:`kind_of`).

- ``HEAD|GET .../resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` (the LFS
  sha256, which becomes the client's blob name), ``Content-Length`` and HTTP Range (206).
- ``GET /api/models`` (``?search=``), ``/api/models/{repo}[/revision/{rev}]``, ``.../tree/{rev}[/{path}]``,
  ``POST .../paths-info/{rev}``, ``.../refs`` (``?include_prs=1``), ``.../commits/{rev}``,
  ``.../auth-check[/write]``: the JSON huggingface_hub parses (discussions: zoo/hub/threads.py).

A revision is a branch, a tag, ``refs/pr/N`` or a commit id; clients send it percent-quoted
(``refs%2Fpr%2F1``), which the server's path decoding would split, so the app keeps such slashes
as :data:`SLASH` and :func:`revision_of` restores them. Errors carry ``X-Error-Code``
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``), which huggingface_hub
turns into its typed exceptions. ``X-Xet-Hash`` is sent only for a file whose reconstruction the
Xet store holds (zoo/hub/xet): a client with hf_xet then downloads it as xorbs. Paths are looked up in the repo's file map, never joined onto the file system,
and a path that tries to escape (``..``, absolute) is a 400.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from zoo.errors import HubError, ObjectNotFound, StorageError
from zoo.hub.cards import card_data, info_fields
from zoo.hub.catalog import repos_at_main, safetensors_info
from zoo.hub.served import Repo, RepoFile, ServedRepos
from zoo.store.discussions import iso
from zoo.util.paths import is_safe_relpath

#: what an encoded slash ('%2F') in a path segment becomes before routing (zoo/hub/app.py)
SLASH = "\x00"


#: the longest X-Error-Message sent (a name in a message can be as long as a client made it)
ERROR_HEADER_MAX = 1000


class BlobResponse(FileResponse):
    chunk_size = 1 << 20  # 64 KiB (starlette's default) costs a third of loopback throughput


def kind_of(request: Request) -> str:
    """The repo type the route serves: "model" or "dataset"."""
    return request.scope.get("zoo.kind", "model")


def repo_id_of(request: Request) -> str:
    return f"{request.path_params['org']}/{request.path_params['name']}"


def revision_of(request: Request, name: str = "revision", default: str = "main") -> str:
    return request.path_params.get(name, default).replace(SLASH, "/")


def path_of(request: Request) -> str:
    """The file or folder path of the route (HfFileSystem quotes a tree path whole: 'a%2Fb')."""
    return request.path_params.get("path", "").replace(SLASH, "/")


def identity_of(request: Request):
    return getattr(request.state, "identity", None)


def user_of(request: Request) -> str:
    identity = identity_of(request)
    return identity.user if identity else "anonymous"


def hub_error(status: int, code: str | None, message: str, commit: str | None = None) -> JSONResponse:
    # headers carry ASCII only (a CR/LF or non-ASCII byte would break or drop the response); the
    # JSON body keeps the message as it is
    if len(message) > ERROR_HEADER_MAX:  # a client refuses an over-long header line: the body keeps it whole
        message_header = message[:ERROR_HEADER_MAX] + "..."
    else:
        message_header = message
    headers = {"X-Error-Message": message_header.encode("ascii", "backslashreplace").decode().replace("\r", " ").replace("\n", " ")}
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
    repo_id, kind = repo_id_of(request), kind_of(request)
    revision = revision_of(request)
    repo = served.at(repo_id, revision, kind, getattr(request.state, "record", False))
    if repo is None and not served.exists(repo_id, kind):
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
    if repo is None:
        return hub_error(404, "RevisionNotFound", f"Revision {revision} not found in {repo_id}")
    return repo


def xet_headers(served: ServedRepos, request: Request, kind: str, repo_id: str, commit: str, sha256: str) -> dict:
    """``X-Xet-Hash`` and its token route, for a file whose reconstruction the Xet store holds and
    verified (huggingface_hub shares local copies across repos by this hash: a wrong one would hand
    a user someone else's bytes); nothing for any other file, which downloads over plain HTTP."""
    xet = served.xet.xet_hash_of(sha256)
    if xet is None:
        return {}
    route = f"{str(request.base_url).rstrip('/')}/api/{kind}s/{repo_id}/xet-read-token/{commit}"
    return {"X-Xet-Hash": xet, "X-Xet-Refresh-Route": route, "Link": f'<{route}>; rel="xet-auth"'}


def resolve(served: ServedRepos, request: Request) -> Response:
    path = path_of(request)
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
    # nosniff: a repo's file is never a script or a page for a browser (the pages' CSP allows scripts
    # from this origin: with it, an uploaded .js cannot be one)
    headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{entry.etag}"', "X-Content-Type-Options": "nosniff"}
    if entry.lfs:
        headers.update({"X-Linked-Size": str(entry.size), "X-Linked-Etag": f'"{entry.sha256}"'})
        headers.update(xet_headers(served, request, repo.kind, repo.repo_id, repo.commit, entry.sha256))
    served.count(f"{request.method} {'datasets/' if repo.kind == 'dataset' else ''}{repo.repo_id}/{entry.path}")
    if remote:
        if entry.lfs and blobs.redirect:  # the store serves the bytes: a cross-origin redirect, as the Hub's CDN does
            return Response(status_code=302, headers={**headers, "Location": blobs.url(entry.sha256)})
        if entry.lfs:  # --proxy-downloads: the bytes pass through this server
            return _proxied(served, request, entry, headers)
        if request.method == "HEAD":  # the commit recorded its size: no need to fetch the bytes
            return Response(b"", headers={**headers, "Content-Length": str(entry.size)},
                            media_type="application/octet-stream")
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



def _files_json(repo: Repo) -> list[dict]:
    siblings = []
    for f in sorted(repo.files.values(), key=lambda f: f.path):
        s = {"rfilename": f.path, "size": f.size, "blobId": f.oid}
        if f.lfs:
            s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        siblings.append(s)
    return siblings


def _info(served: ServedRepos, repo: Repo, listing: bool = False) -> dict:
    info = {"_id": repo.commit[:24], "id": repo.repo_id, "sha": repo.commit, "private": repo.private,
            "gated": repo.gated, "disabled": False, "downloads": 0, "likes": 0, "siblings": _files_json(repo),
            "lastModified": iso(repo.last_modified), "createdAt": iso(repo.last_modified)}
    if repo.kind == "model":
        info["modelId"] = repo.repo_id
        st = None if listing else safetensors_info(served, repo)  # list_models leaves it out, as the Hub does
        if st:
            info["safetensors"] = st
    if repo.uploaded:
        info.update(info_fields(card_data(served, repo), repo.kind))
    else:  # a cached card's weights: a timm image classifier
        info.update({"library_name": "timm", "pipeline_tag": "image-classification",
                     "tags": ["timm", "image-classification"]})
    return info


def model_info(served: ServedRepos, request: Request) -> Response:
    repo = repo_at_revision(served, request)
    return repo if isinstance(repo, Response) else JSONResponse(_info(served, repo))


def list_repos(served: ServedRepos, request: Request) -> Response:
    """``list_models`` / ``list_datasets``: ``search``, ``author``, ``filter`` (tags), ``limit``."""
    q = request.query_params
    search, author = q.get("search", "").casefold(), q.get("author", "")
    wanted = set(q.getlist("filter"))
    try:
        limit = int(q.get("limit", "1000") or 1000)
    except ValueError:
        return hub_error(400, None, "limit must be a number")
    identity = identity_of(request)
    kind = kind_of(request)
    ids = [r for r in served.repo_ids(kind)
           if not (search and search not in r.casefold() or author and not r.startswith(author + "/"))]
    out = []
    for start in range(0, len(ids), LIST_BATCH):  # a batch read at once (in parallel on S3), until the limit
        for repo in repos_at_main(served, [(kind, r) for r in ids[start:start + LIST_BATCH]]):
            if repo is None or repo.private and not (identity and identity.can_read(repo.repo_id)):
                continue
            info = {k: v for k, v in _info(served, repo, listing=True).items() if k != "siblings"}
            if wanted <= set(info.get("tags", ())):
                out.append(info)
            if len(out) >= limit:
                return JSONResponse(out)
    return JSONResponse(out)


#: repos ``list_models`` reads at once
LIST_BATCH = 64


def _tree_entry(f: RepoFile) -> dict:
    e = {"type": "file", "path": f.path, "size": f.size, "oid": f.oid}
    if f.lfs:
        e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
    return e


def tree(served: ServedRepos, request: Request) -> Response:
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    prefix = path_of(request).strip("/")
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
        entries.append(_tree_entry(f))
        if recursive and "/" in rest:
            parts = f.path.split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) for i in range(len(prefix.split("/")) if prefix else 0, len(parts)))
    if prefix and not entries and not folders:
        return hub_error(404, "EntryNotFound", f"{prefix} not found in {repo.repo_id}", commit=repo.commit)
    entries += [{"type": "directory", "path": d, "oid": repo.commit} for d in sorted(folders)]
    return JSONResponse(entries)


async def paths_wanted(request: Request) -> list[str]:
    body = await request.body()
    if len(body) > 1 << 20:
        raise HubError("paths-info body over 1 MB")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        paths = data.get("paths") if isinstance(data, dict) else None
        paths = [paths] if isinstance(paths, str) else paths
    else:  # huggingface_hub posts a form: paths=a&paths=b&expand=False
        paths = parse_qs(body.decode("utf-8", "replace")).get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise HubError("expected paths: a list of file or folder paths")
    return paths


def paths_info(served: ServedRepos, request: Request, paths: list[str]) -> Response:
    """``get_paths_info``: each asked path that is a file or a folder at the revision (others are
    left out, as on the Hub)."""
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    out = []
    for path in dict.fromkeys(p.strip("/") for p in paths):
        if not path or bad_path(path):
            continue
        if path in repo.files:
            out.append(_tree_entry(repo.files[path]))
        elif any(p.startswith(path + "/") for p in repo.files):
            out.append({"type": "directory", "path": path, "oid": repo.commit})
    return JSONResponse(out)


def refs(served: ServedRepos, request: Request) -> Response:
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    if repo.uploaded:
        found = served.stores[repo.kind].refs(repo.repo_id)
    else:
        found = {"heads": [("main", repo.commit)], "tags": [], "pr": []}
    out = {"branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(found["heads"])],
           "converts": [], "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(found["tags"])]}
    if request.query_params.get("include_prs") in ("1", "true", "True"):
        out["pullRequests"] = [{"name": n, "ref": f"refs/pr/{n}", "targetCommit": c} for n, c in found["pr"]]
    return JSONResponse(out)


#: commits per page of ``list_repo_commits`` (the client follows the ``Link: rel="next"`` header)
COMMITS_PAGE = 100


def commits(served: ServedRepos, request: Request) -> Response:
    """The history behind a revision, newest first, a page at a time: each page reads only its own
    commits (one object each), and its ``Link`` header names the commit the next page starts at."""
    repo = repo_at_revision(served, request)
    if isinstance(repo, Response):
        return repo
    if not repo.uploaded:
        return JSONResponse([{"id": repo.commit, "title": "pulled by zoo", "message": "", "authors": [],
                              "date": iso(repo.last_modified)}])
    q = request.query_params
    limit, cursor = q.get("limit", str(COMMITS_PAGE)), q.get("cursor")
    if not limit.isascii() or not limit.isdigit() or not 0 < int(limit) <= 1000:
        return hub_error(400, None, "limit must be a number from 1 to 1000")
    if cursor is not None and not re.fullmatch(r"[0-9a-f]{40}", cursor):
        return hub_error(400, None, "cursor must be a commit id")
    page, after = served.stores[repo.kind].history_page(repo.repo_id, cursor or repo.commit, int(limit))
    items = [{"id": c.id, "title": c.title, "message": c.message,
              "authors": [{"user": c.author}] if c.author else [], "date": iso(c.date)} for c in page]
    headers = {}
    if after:
        # the path as the client sent it (request.url holds the server's stand-in for an encoded slash)
        path = request.scope.get("raw_path", b"").decode("ascii", "replace").split("?", 1)[0] or request.url.path
        headers["Link"] = f'<{str(request.base_url).rstrip("/")}{path}?cursor={after}&limit={limit}>; rel="next"'
    return JSONResponse(items, headers=headers)


def auth_check(served: ServedRepos, request: Request) -> Response:
    """``auth_check``: 200 when the caller may read (``/write``: write) the repo. The wrapper already
    answered a private repo the caller may not read with RepoNotFound."""
    repo_id, kind = repo_id_of(request), kind_of(request)
    if not served.exists(repo_id, kind):
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
    identity = identity_of(request)
    if served.info(repo_id, kind).get("gated") and not (identity and identity.can_read(repo_id)):
        return hub_error(401, "GatedRepo", f"Access to {repo_id} is restricted: send a token that may read it")
    if request.url.path.endswith("/write") and not (identity and identity.can_write(repo_id)):
        return hub_error(403, None, f"this token may not write {repo_id}")
    return JSONResponse({"ok": True})
