"""The write side of the Hub protocol: create repo, validate-yaml, preupload, LFS basic transfer,
commit (to any branch, to an open pull request's ``refs/pr/N``, or as a new pull request with
``create_pr=1``), for model and dataset repos alike.

Files up to ``REGULAR_MAX`` are answered ``regular`` (their content then arrives base64 inside the
ndjson commit, read line by line, never the whole body at once) and larger ones ``lfs``: a client
with ``hf_xet`` sends those through Xet (zoo/hub/xet), others by the LFS basic transfer below.
Every byte that arrives is hashed on the way into the cache: an LFS body whose sha256 is not its
declared oid is refused, and a commit may only name LFS objects this repo received (by either way). On S3 an LFS body goes to the
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
from zoo.errors import CorruptBlobError, Forbidden, MalformedRequest, ObjectNotFound, RequestTooLarge, RevisionNotFound
from zoo.hub import cards
from zoo.hub.read import bad_path, hub_error, identity_of, kind_of, repo_id_of, revision_of, user_of
from zoo.store.repos import Ref, all_referenced_blobs, git_blob_oid
from zoo.weights.cache import SHA256_RE

REGULAR_MAX = 10 * 1024 * 1024
JSON_MAX = 10 * 1024 * 1024


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _parse(data: bytes):
    """JSON from a client, or :class:`MalformedRequest` (not JSON, not UTF-8, nested too deep, or
    text JSON escapes made into what no UTF-8 can hold: a lone surrogate, stored, would break every
    later answer that carries it)."""
    try:
        value = json.loads(data)
        _check_text(value)
        return value
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"malformed request body: {type(exc).__name__}") from None


def _check_text(value) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_text(v)
    elif isinstance(value, list):
        for v in value:
            _check_text(v)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or :class:`RequestTooLarge` as soon as it (or its declared length) is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {declared} bytes: over this route's {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"request body over this route's {limit} bytes")
    return bytes(body)


async def _json(request: Request, limit: int = JSON_MAX, strict: bool = False):
    """The body as JSON (None when it is not JSON: each handler says what it expected; with
    ``strict``, None only for an empty body, and :class:`MalformedRequest` for one that is not JSON)."""
    body = await read_body(request, limit)
    if strict and not body.strip():
        return None
    try:
        return _parse(body)
    except MalformedRequest:
        if strict:
            raise
        return None


def _table(value, what: str) -> dict:
    """``value`` if it is a JSON object, else :class:`MalformedRequest` naming ``what``."""
    if not isinstance(value, dict):
        raise MalformedRequest(f"malformed request body: {what} must be an object, got {type(value).__name__}")
    return value


#: repo type -> the URL prefix of its pages (RepoUrl parses the type from it)
URL_PREFIX = {"model": "", "dataset": "datasets/"}
SPACES_REFUSED = "this hub hosts model and dataset repos; Spaces are not served here"


def repo_url(request: Request, kind: str, repo_id: str) -> str:
    return f"{_base(request)}/{URL_PREFIX[kind]}{repo_id}"


def body_repo(hub, request: Request, data: dict, name_key: str = "name") -> tuple[str, str]:
    """The (repo id, type) a JSON body names (``name`` + ``organization``, or ``org/name``), which
    the caller's token must be allowed to write; the namespace defaults to the token's user."""
    kind = data.get("type") or "model"
    if not isinstance(kind, str):
        raise MalformedRequest("type must be model or dataset")
    if kind == "space":
        raise MalformedRequest(SPACES_REFUSED)
    if kind not in URL_PREFIX:
        raise MalformedRequest(f"unknown repo type {kind!r}: model or dataset")
    name = data.get(name_key)
    if not isinstance(name, str):
        raise MalformedRequest(f"expected JSON with a repo {name_key}")
    org = data.get("organization") or identity_of(request).user
    if "/" in name:
        org, name = name.split("/", 1)
    repo_id = f"{org}/{name}"
    if not REPO_ID_RE.match(repo_id):
        raise MalformedRequest(f"invalid repo id {repo_id!r}")
    if not identity_of(request).can_write(repo_id):
        raise Forbidden(f"this token may not write {repo_id} (its repos= patterns, or role=read)")
    return repo_id, kind


async def create_repo(hub, request: Request) -> Response:
    data = await _json(request)
    if not isinstance(data, dict):
        return hub_error(400, None, "expected JSON with a repo name")
    repo_id, kind = body_repo(hub, request, data)
    private = bool(data.get("private")) or data.get("visibility") == "private"  # huggingface_hub sends visibility
    created = await run_in_threadpool(hub.served.stores[kind].create, repo_id, private, user_of(request))
    url = repo_url(request, kind, repo_id)
    if not created:
        return JSONResponse({"error": f"You already created this {kind} repo", "url": url}, status_code=409)
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


async def validate_yaml(hub, request: Request) -> Response:
    """``RepoCard.validate``: 400 with what is wrong, or 200 (no token needed: the client sends none)."""
    data = await _json(request)
    if not isinstance(data, dict) or not isinstance(data.get("content"), str):
        return hub_error(400, None, "expected JSON {content: the README text, repoType}")
    if len(data["content"]) > cards.README_MAX:
        return hub_error(413, None, f"a card over {cards.README_MAX // 1024} KiB")
    try:
        block = cards.front_matter(data["content"])
        found = cards.problems(block) if block is not None else []
    except ValueError as exc:
        found = [str(exc)]
    if found:  # the client lists each of "errors" in its ValueError
        refused = hub_error(400, None, "; ".join(found))
        return JSONResponse({"error": "; ".join(found), "errors": [{"message": m} for m in found], "warnings": []},
                            status_code=400, headers={k: v for k, v in refused.headers.items() if k.startswith("x-")})
    return JSONResponse({"errors": [], "warnings": []})


def _repo_id(request: Request) -> str:
    return repo_id_of(request)


def _writable_repo(hub, request: Request) -> str:
    """The path's repo, if it takes writes (RepoNotFound if absent, 409 while it is being moved)."""
    repo_id = _repo_id(request)
    hub.served.stores[kind_of(request)].writable(repo_id)
    return repo_id


def target_ref(hub, request: Request, repo_id: str) -> Ref:
    """The ref a commit goes to: a branch, or ``refs/pr/N``; a tag or a bare commit id is a 400
    (as on the Hub), a branch that does not exist a RevisionNotFound."""
    store = hub.served.stores[kind_of(request)]
    ref, _ = store.parse_revision(repo_id, revision_of(request))
    if ref is None or ref.kind == "tags":
        raise MalformedRequest(f"cannot commit to {revision_of(request)}: commit to a branch or a pull request "
                               "(refs/pr/N)")
    return ref


async def preupload(hub, request: Request) -> Response:
    await run_in_threadpool(_writable_repo, hub, request)
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


def _lfs_scope(kind: str, repo_id: str) -> str:
    """What an upload link signs: the repo, with its type (a dataset and a model may share an id)."""
    return f"datasets/{repo_id}" if kind == "dataset" else repo_id


def _lfs_kind(request: Request) -> str:
    return "dataset" if request.query_params.get("kind") == "dataset" else "model"


async def lfs_batch(hub, request: Request) -> Response:
    """The LFS batch API: an upload link per object this repo has not received. An object the store
    holds for another repo is uploaded again (the bytes prove the client has them) rather than
    answered "already stored": a sha256 read from a gated repo's file list must not become its file."""
    repo_id, kind = _repo_id(request), kind_of(request)
    store = hub.served.stores[kind]
    await run_in_threadpool(store.writable, repo_id)
    data = await _json(request)
    if not isinstance(data, dict) or data.get("operation") != "upload" or not isinstance(data.get("objects"), list):
        return hub_error(400, None, "expected an LFS upload batch")
    base, out = _base(request), []
    scope, typed = _lfs_scope(kind, repo_id), "&kind=dataset" if kind == "dataset" else ""
    for obj in data["objects"]:
        obj = _table(obj, "each of objects")
        oid, size = obj.get("oid", ""), obj.get("size")
        if not SHA256_RE.match(str(oid)) or type(size) is not int or size < 0:
            out.append({"oid": oid, "size": size, "error": {"code": 422, "message": "bad oid or size"}})
        elif size > hub.max_upload:
            out.append({"oid": oid, "size": size, "error": {"code": 413, "message": f"over the {hub.max_upload} byte limit"}})
        elif hub.served.blobs.has(oid, size) and await run_in_threadpool(store.knows_blob, repo_id, oid):
            out.append({"oid": oid, "size": size})  # this repo has it: no actions
        elif hub.served.blobs.direct_upload(size):  # S3: the bytes go to the store, verify reads them back
            staged, url = await run_in_threadpool(hub.served.blobs.stage, oid, size)
            sig = hub.auth.sign(scope, staged, size)
            out.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": url},
                "verify": {"href": f"{base}/api/zoo/lfs-verify/{repo_id}?staged={staged}&sig={sig}{typed}"}}})
        else:
            sig = hub.auth.sign(scope, oid, size)
            out.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{base}/api/zoo/lfs/{repo_id}/{oid}/{size}?sig={sig}{typed}"},
                "verify": {"href": f"{base}/api/zoo/lfs-verify/{repo_id}" + ("?kind=dataset" if typed else "")}}})
    return JSONResponse({"transfer": "basic", "objects": out}, media_type="application/vnd.git-lfs+json")


async def lfs_upload(hub, request: Request) -> Response:
    """PUT of one LFS object to the href the batch handed out (authorized by its signature alone:
    the client sends no token here, so no other check may run first)."""
    p = request.path_params
    repo_id, oid, kind = _repo_id(request), p["oid"], _lfs_kind(request)
    try:
        size = int(p["size"])
    except ValueError:
        return hub_error(400, None, "bad size")
    if not SHA256_RE.match(oid) or not REPO_ID_RE.match(repo_id) or not hub.auth.check_signature(
            _lfs_scope(kind, repo_id), oid, size, request.query_params.get("sig", "")):
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
        await run_in_threadpool(hub.served.stores[kind].mark_blob, repo_id, oid)
    except CorruptBlobError as exc:
        return hub_error(400, None, f"refused: {exc}")
    finally:
        if writer.path.exists():
            writer.discard()
    return Response(status_code=200)


async def lfs_verify(hub, request: Request) -> Response:
    """The client's call after its upload: for a direct (presigned) upload, the server reads back
    what landed in the store and hashes it before any commit may refer to it."""
    repo_id, kind = _repo_id(request), _lfs_kind(request)
    if not identity_of(request).can_write(repo_id):
        return hub_error(403, None, f"this token may not write {repo_id}")
    store = hub.served.stores[kind]
    data = await _json(request)
    data = _table(data if data is not None else {}, "the verify body")
    oid, size = data.get("oid", ""), data.get("size")
    if not SHA256_RE.match(str(oid)):
        return hub_error(400, None, "expected {oid, size}")
    staged = request.query_params.get("staged")
    if staged is not None:
        if type(size) is not int or not hub.auth.check_signature(_lfs_scope(kind, repo_id), staged, size,
                                                                 request.query_params.get("sig", "")):
            return hub_error(401, None, "invalid or missing verify signature")
        try:
            await run_in_threadpool(hub.served.blobs.adopt, staged, oid, size)
        except ObjectNotFound:
            return hub_error(404, None, f"object {oid} was not uploaded")
        except CorruptBlobError as exc:
            return hub_error(400, None, f"refused: {exc}")
        await run_in_threadpool(store.mark_blob, repo_id, oid)
    if not hub.served.blobs.has(oid) or not await run_in_threadpool(store.knows_blob, repo_id, oid):
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
    named = all_referenced_blobs(hub.served.storage)
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
    repo_id = await run_in_threadpool(_writable_repo, hub, request)
    ref = await run_in_threadpool(target_ref, hub, request, repo_id)  # a bad revision fails before any upload
    fresh: list[str] = []
    try:
        answer = await _commit(hub, request, repo_id, ref, fresh)
    except BaseException:
        await run_in_threadpool(_drop_fresh, hub, fresh)
        raise
    if answer.status_code >= 400:
        await run_in_threadpool(_drop_fresh, hub, fresh)
    return answer


async def _commit(hub, request: Request, repo_id: str, ref: Ref, fresh: list[str]) -> Response:
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
            elif key == "lfsFile":  # an upload, or a copy of a file the store holds (no size then)
                oid, size = value.get("oid", ""), value.get("size")
                if size is not None and type(size) is not int:
                    return hub_error(400, None, f"{path}: size must be an integer")
                if size is None and SHA256_RE.match(str(oid)):
                    size = await run_in_threadpool(blobs.size, oid)
                if not SHA256_RE.match(str(oid)) or size is None or not await run_in_threadpool(blobs.has, oid, size) \
                        or not await run_in_threadpool(hub.served.stores[kind_of(request)].knows_blob, repo_id, oid):
                    return hub_error(400, None, f"{path}: LFS object {oid} was not uploaded to {repo_id} "
                                                "(or has another size)")
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
    kind = kind_of(request)
    create_pr = request.query_params.get("create_pr") in ("1", "true", "True")
    made = await run_in_threadpool(_land, hub, kind, repo_id, ref, create_pr,
                                   title or "upload", description or "", parent, adds, deletes, user_of(request))
    new, pr = made
    url = repo_url(request, kind, repo_id)
    return JSONResponse({"commitUrl": f"{url}/commit/{new.id}", "commitOid": new.id,
                         "pullRequestUrl": f"{url}/discussions/{pr}" if pr else None, "success": True})


def _land(hub, kind: str, repo_id: str, ref: Ref, create_pr: bool, title: str, description: str,
          parent: str | None, adds: dict, deletes: list[str], author: str):
    """Write the commit where it goes: (the commit, the pull request number it opened, if any)."""
    store, threads = hub.served.stores[kind], hub.served.discussions[kind]
    if create_pr:
        if ref.kind != "heads":
            raise MalformedRequest("create_pr needs a branch to open the pull request on (main by default)")
        base_commit = store.parse_revision(repo_id, parent)[1] if parent else store.head(repo_id, ref)
        if base_commit is None:
            raise RevisionNotFound(f"{ref.full} not found in {repo_id}")
        store.files_after(repo_id, base_commit, adds, deletes)  # a bad deletion fails before a pull request opens
        doc = threads.open_pull_request(repo_id, title, description, author, ref.name, base_commit)
        return threads.commit_to(repo_id, doc["num"], title, description, None, adds, deletes, author), doc["num"]
    if ref.kind == "pr":
        return threads.commit_to(repo_id, int(ref.name), title, description, parent, adds, deletes, author), None
    return store.apply(repo_id, title, description, parent, adds, deletes, ref, author), None
