"""The write side of the Hub protocol: create repo, validate-yaml, preupload, LFS basic transfer, commit.

The Xet trap (docs/internals.md, "The hub protocol as zoo serves it"): a client with ``hf_xet`` installed
sends every file the server marks ``lfs`` to Xet storage, which zoo does not speak. So files up to
``REGULAR_MAX`` are answered ``regular`` (their content then arrives base64 inside the ndjson
commit, read line by line, never the whole body at once) and larger ones ``lfs``; stock clients
uploading those need ``HF_HUB_DISABLE_XET=1``, and a Xet token request says so. Every byte that
arrives is hashed on the way into the cache: an LFS body whose sha256 is not its declared oid is
refused, and a commit may only name LFS objects the cache holds. On S3 an LFS body goes to the
store by a presigned PUT instead, and the verify call reads it back and hashes it (zoo/hub/blobs.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from zoo.cards.card import REPO_ID_RE
from zoo.errors import CorruptBlobError, MalformedRequest, ObjectNotFound, RequestTooLarge
from zoo.hub.read import bad_path, hub_error
from zoo.store.repos import git_blob_oid
from zoo.weights.cache import SHA256_RE

REGULAR_MAX = 10 * 1024 * 1024
JSON_MAX = 10 * 1024 * 1024
XET_MESSAGE = ("this hub does not speak Xet: set HF_HUB_DISABLE_XET=1 to upload files over "
               f"{REGULAR_MAX // (1024 * 1024)} MB with the LFS basic transfer")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _parse(data: bytes):
    """JSON from a client, or :class:`MalformedRequest` (not JSON, not UTF-8, or nested too deep)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"malformed request body: {type(exc).__name__}") from None


async def _json(request: Request, limit: int = JSON_MAX):
    """The body as JSON (None when it is not JSON: each handler says what it expected)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge("request body too large")
    try:
        return _parse(body)
    except MalformedRequest:
        return None


def _table(value, what: str) -> dict:
    """``value`` if it is a JSON object, else :class:`MalformedRequest` naming ``what``."""
    if not isinstance(value, dict):
        raise MalformedRequest(f"malformed request body: {what} must be an object, got {type(value).__name__}")
    return value


async def create_repo(hub, request: Request) -> Response:
    data = await _json(request)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return hub_error(400, None, "expected JSON with a repo name")
    if data.get("type") not in (None, "model"):
        return hub_error(400, None, "this hub holds model repos only")
    name, org = data["name"], data.get("organization") or hub.user
    if "/" in name:
        org, name = name.split("/", 1)
    repo_id = f"{org}/{name}"
    if not REPO_ID_RE.match(repo_id):
        return hub_error(400, None, f"invalid repo id {repo_id!r}")
    private = bool(data.get("private")) or data.get("visibility") == "private"  # huggingface_hub sends visibility
    created = await run_in_threadpool(hub.served.store.create, repo_id, private)
    url = f"{_base(request)}/{repo_id}"
    if not created:
        return JSONResponse({"error": "You already created this model repo", "url": url}, status_code=409)
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


async def validate_yaml(hub, request: Request) -> Response:
    await _json(request)
    return JSONResponse({})


def _repo_id(request: Request) -> str:
    return f"{request.path_params['org']}/{request.path_params['name']}"


def _writable_repo(hub, request: Request) -> str | Response:
    repo_id = _repo_id(request)
    if not hub.served.store.exists(repo_id):
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found (create it first)")
    rev = request.path_params.get("revision", "main")
    if rev != "main":
        return hub_error(400, None, "this hub commits to main only")
    return repo_id


async def preupload(hub, request: Request) -> Response:
    repo_id = _writable_repo(hub, request)
    if isinstance(repo_id, Response):
        return repo_id
    data = await _json(request)
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return hub_error(400, None, "expected {files: [...]}")
    out = []
    for f in data["files"]:
        f = _table(f, "each of files")
        path, size = f.get("path", ""), f.get("size", 0)
        if not isinstance(path, str) or bad_path(path):
            return hub_error(400, None, f"invalid file path {path!r}")
        mode = "regular" if isinstance(size, int) and size <= REGULAR_MAX else "lfs"
        out.append({"path": path, "uploadMode": mode, "shouldIgnore": False})
    return JSONResponse({"files": out})


async def lfs_batch(hub, request: Request) -> Response:
    repo_id = _repo_id(request)
    if not hub.served.store.exists(repo_id):
        return hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
    data = await _json(request)
    if not isinstance(data, dict) or data.get("operation") != "upload" or not isinstance(data.get("objects"), list):
        return hub_error(400, None, "expected an LFS upload batch")
    base, out = _base(request), []
    for obj in data["objects"]:
        obj = _table(obj, "each of objects")
        oid, size = obj.get("oid", ""), obj.get("size")
        if not SHA256_RE.match(str(oid)) or not isinstance(size, int) or size < 0:
            out.append({"oid": oid, "size": size, "error": {"code": 422, "message": "bad oid or size"}})
        elif size > hub.max_upload:
            out.append({"oid": oid, "size": size, "error": {"code": 413, "message": f"over the {hub.max_upload} byte limit"}})
        elif hub.served.blobs.has(oid, size):
            out.append({"oid": oid, "size": size})  # already stored: no actions
        elif hub.served.blobs.direct_upload(size):  # S3: the bytes go to the store, verify reads them back
            staged, url = await run_in_threadpool(hub.served.blobs.stage, oid, size)
            sig = hub.auth.sign(repo_id, staged, size)
            out.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": url},
                "verify": {"href": f"{base}/api/zoo/lfs-verify/{repo_id}?staged={staged}&sig={sig}"}}})
        else:
            sig = hub.auth.sign(repo_id, oid, size)
            out.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{base}/api/zoo/lfs/{repo_id}/{oid}/{size}?sig={sig}"},
                "verify": {"href": f"{base}/api/zoo/lfs-verify/{repo_id}"}}})
    return JSONResponse({"transfer": "basic", "objects": out}, media_type="application/vnd.git-lfs+json")


async def lfs_upload(hub, request: Request) -> Response:
    """PUT of one LFS object to the href the batch handed out (authorized by its signature)."""
    p = request.path_params
    repo_id, oid = _repo_id(request), p["oid"]
    try:
        size = int(p["size"])
    except ValueError:
        return hub_error(400, None, "bad size")
    if not SHA256_RE.match(oid) or not hub.auth.check_signature(repo_id, oid, size, request.query_params.get("sig", "")):
        return hub_error(401, None, "invalid or missing upload signature")
    declared = request.headers.get("content-length") or "0"
    if not declared.isascii() or not declared.isdigit():
        return hub_error(400, None, "bad Content-Length")
    if size > hub.max_upload or int(declared) > hub.max_upload:
        return hub_error(413, None, f"upload over the {hub.max_upload} byte limit")
    writer = hub.served.cache.writer(f"upload-{oid}")  # a temp file of its own: concurrent PUTs never share one
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > size or received > hub.max_upload:
                writer.discard()
                return hub_error(413, None, f"body longer than the declared {size} bytes")
            writer.write(chunk)
            hub.served.bytes_in += len(chunk)
        await run_in_threadpool(writer.commit, oid, size)
        await run_in_threadpool(hub.served.blobs.stored, oid)
    except CorruptBlobError as exc:
        return hub_error(400, None, f"refused: {exc}")
    finally:
        if writer.path.exists():
            writer.discard()
    return Response(status_code=200)


async def lfs_verify(hub, request: Request) -> Response:
    """The client's call after its upload: for a direct (presigned) upload, the server reads back
    what landed in the store and hashes it before any commit may refer to it."""
    data = await _json(request)
    data = _table(data if data is not None else {}, "the verify body")
    oid, size = data.get("oid", ""), data.get("size")
    if not SHA256_RE.match(str(oid)):
        return hub_error(400, None, "expected {oid, size}")
    staged = request.query_params.get("staged")
    if staged is not None:
        if not isinstance(size, int) or not hub.auth.check_signature(_repo_id(request), staged, size,
                                                                     request.query_params.get("sig", "")):
            return hub_error(401, None, "invalid or missing verify signature")
        try:
            await run_in_threadpool(hub.served.blobs.adopt, staged, oid, size)
        except ObjectNotFound:
            return hub_error(404, None, f"object {oid} was not uploaded")
        except CorruptBlobError as exc:
            return hub_error(400, None, f"refused: {exc}")
    if not hub.served.blobs.has(oid):
        return hub_error(404, None, f"object {oid} was not uploaded")
    return JSONResponse({"ok": True})


LINE_MAX = REGULAR_MAX * 4 // 3 + (64 << 10)  # the longest line: one inline file in base64, plus its JSON


async def _ndjson_lines(request: Request, limit: int):
    """The commit body's JSON lines, read as they arrive; only the current line is held in memory."""
    buf, total = bytearray(), 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestTooLarge("request body too large")
        start = len(buf)
        buf += chunk
        while (end := buf.find(b"\n", start)) >= 0:
            line, buf, start = bytes(buf[:end]), buf[end + 1:], 0
            if line.strip():
                yield _table(await run_in_threadpool(_parse, line), "each commit line")
        if len(buf) > LINE_MAX:
            raise RequestTooLarge("request body too large")
    if bytes(buf).strip():
        yield _table(_parse(bytes(buf)), "each commit line")


def _store_inline(blobs, content: str, fresh: list[str]) -> dict:
    """Decode one inline (regular) file of a commit and store it as a local blob (off the event
    loop); a blob that was not stored before goes into ``fresh``, which a refused commit removes."""
    data = base64.b64decode(content, validate=True)
    sha = hashlib.sha256(data).hexdigest()
    if not blobs.cache.has_blob(sha):
        with blobs.cache.writer("commit") as writer:
            writer.write(data)
            writer.commit(sha)
        fresh.append(sha)
    return {"sha256": sha, "size": len(data), "oid": git_blob_oid(data), "lfs": False}


def _drop_fresh(hub, fresh: list[str]) -> None:
    """A refused commit leaves no blob behind: the inline files it stored that no commit names
    (another commit of the same bytes may have landed meanwhile: those stay)."""
    if not fresh:
        return
    named = hub.served.store.referenced_blobs()
    blobs = hub.served.blobs
    for sha in fresh:
        if sha not in named:
            hub.served.cache.remove_blob(sha)
            if blobs.remote:  # pushed before a refusal that came from the store (a 409, a 404)
                try:
                    blobs.storage.delete(blobs.key(sha))
                except ObjectNotFound:
                    pass


async def commit(hub, request: Request) -> Response:
    repo_id = _writable_repo(hub, request)
    if isinstance(repo_id, Response):
        return repo_id
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        return hub_error(400, None, "this hub does not do pull requests; commit to main")
    fresh: list[str] = []
    try:
        answer = await _commit(hub, request, repo_id, fresh)
    except BaseException:
        await run_in_threadpool(_drop_fresh, hub, fresh)
        raise
    if answer.status_code >= 400:
        await run_in_threadpool(_drop_fresh, hub, fresh)
    return answer


async def _commit(hub, request: Request, repo_id: str, fresh: list[str]) -> Response:
    blobs = hub.served.blobs
    header, adds, deletes = {}, {}, []
    try:
        async for item in _ndjson_lines(request, hub.max_upload):
            key, value = item.get("key"), _table(item.get("value") or {}, "a commit line's value")
            path = value.get("path", "")
            if key == "header":
                header = value
                continue
            if not isinstance(path, str) or bad_path(path.rstrip("/") if key == "deletedFolder" else path):
                return hub_error(400, None, f"invalid file path {path!r}")
            if key == "file":
                try:
                    adds[path] = await run_in_threadpool(_store_inline, blobs, value.get("content", ""), fresh)
                except (binascii.Error, ValueError, TypeError):  # what b64decode raises for a bad value
                    return hub_error(400, None, f"{path}: content is not base64")
            elif key == "lfsFile":
                oid, size = value.get("oid", ""), value.get("size")
                if not SHA256_RE.match(str(oid)) or not await run_in_threadpool(blobs.has, oid, size):
                    return hub_error(400, None, f"{path}: LFS object {oid} was not uploaded (or has another size)")
                adds[path] = {"sha256": oid, "size": size, "lfs": True}
            elif key in ("deletedFile", "deletedFolder"):
                deletes.append(path.rstrip("/") + "/" if key == "deletedFolder" else path)
            else:
                return hub_error(400, None, f"unsupported commit operation {key!r}")
    except RequestTooLarge:
        return hub_error(413, None, f"commit over the {hub.max_upload} byte limit")
    except MalformedRequest:
        return hub_error(400, None, "the commit body is not ndjson")
    title, description, parent = (header.get(k) for k in ("summary", "description", "parentCommit"))
    if not all(v is None or isinstance(v, str) for v in (title, description, parent)):
        return hub_error(400, None, "the commit header's summary, description and parentCommit must be strings")
    for info in adds.values():  # the commit is well-formed: now its inline files go to a shared store
        if not info["lfs"]:
            await run_in_threadpool(blobs.stored, info["sha256"])
    # a missing file to delete (404) or a parent that is not the head (409) is a HubError: the caller answers it
    new = await run_in_threadpool(hub.served.store.apply, repo_id, title or "upload", description or "", parent,
                                  adds, deletes)
    return JSONResponse({"commitUrl": f"{_base(request)}/{repo_id}/commit/{new.id}", "commitOid": new.id,
                         "pullRequestUrl": None, "success": True})


async def xet_token(hub, request: Request) -> Response:
    return hub_error(501, None, XET_MESSAGE)
