"""The HTTP side of Xet on ``zoo serve``: the token routes of a repo, the CAS API under
:data:`CAS_PREFIX`, and the headers that offer a download through Xet.

Tokens. ``xet-write-token`` is issued only to a caller who may write the repo, ``xet-read-token`` to
one who may read it; both are short-lived (:data:`TOKEN_LIFETIME`), signed with the hub's secret
(shared by every server on one S3 store) and scoped to one repo and revision. They carry a hash of
the hub token that asked for them, never the token itself, so the CAS knows which repos the caller
may read (the dedupe query answers only from those) and a revoked hub token revokes its Xet tokens.
hf_xet reads the answer's JSON (``accessToken``, ``exp``, ``casUrl``), huggingface_hub's download
path its ``X-Xet-*`` headers: both are sent.

CAS routes hf_xet 1.8 calls and this server does not implement (xorb grants, v2 reconstructions and
shards, telemetry) answer 404, before any token check: the client then falls back to the v1 route,
where a 400 or 401 would abort the upload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from zoo.errors import XetTokenError
from zoo.hub.read import byte_range, hub_error, kind_of, repo_id_of, revision_of
from zoo.hub.write import read_body
from zoo.hub.xet import formats as fm
from zoo.hub.xet.cas import MAX_SHARD_BYTES

CAS_PREFIX = "/api/zoo/cas"
#: seconds a Xet token lives; hf_xet asks the token route for a new one when it runs out
TOKEN_LIFETIME = 3600
#: seconds a xorb fetch URL in a reconstruction stays valid
FETCH_LIFETIME = 3600


@dataclass(frozen=True)
class Grant:
    """What a valid Xet token allows: one repo (``model:org/name``) at one revision, to read or write."""

    scope: str
    revision: str
    write: bool
    caller: str  # sha256 of the hub token that asked ("" for anonymous)

    @property
    def kind(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def repo_id(self) -> str:
        return self.scope.partition(":")[2]


def scope_of(kind: str, repo_id: str) -> str:
    return f"{kind}:{repo_id}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class XetTokens:
    def __init__(self, auth):
        self.auth = auth
        self.identities = {hashlib.sha256(t.encode()).hexdigest(): i for t, i in auth.tokens.items()}

    def _mac(self, payload: str) -> str:
        return self.auth.mac(f"xet-token:{payload}")

    def issue(self, grant: Grant) -> tuple[str, int]:
        exp = int(time.time()) + TOKEN_LIFETIME
        payload = _b64(json.dumps({"s": grant.scope, "r": grant.revision, "w": grant.write, "c": grant.caller,
                                   "exp": exp}, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}", exp

    def check(self, request: Request, write: bool) -> Grant:
        """The grant of the request's Xet token; XetTokenError if it is missing, forged, expired,
        of a hub token no longer known, or for reading where the call writes."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        payload, _, mac = token.strip().partition(".")
        if scheme.lower() != "bearer" or not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise XetTokenError("this call needs a Xet token from the repo's xet-read-token or xet-write-token route")
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if doc["exp"] < time.time():
            raise XetTokenError("the Xet token expired: ask the token route for a new one")
        if doc["c"] and doc["c"] not in self.identities:
            raise XetTokenError("the hub token this Xet token was issued for is no longer valid")
        if write and not doc["w"]:
            raise XetTokenError("a read token cannot upload: ask xet-write-token")
        return Grant(doc["s"], doc["r"], doc["w"], doc["c"])

    def identity(self, grant: Grant):
        return self.identities.get(grant.caller) if grant.caller else None


def cas_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + CAS_PREFIX


def token_response(hub, request: Request, write: bool) -> Response:
    """The answer of ``xet-write-token`` / ``xet-read-token`` (the app's wrappers checked the
    caller's right to write or read the repo before this runs)."""
    kind, repo_id = kind_of(request), repo_id_of(request)
    revision = revision_of(request)
    if revision == "None":  # huggingface_hub's create_pr upload names no revision: the default branch
        revision = "main"
    store = hub.served.stores[kind]
    if write:
        ref, _ = store.parse_revision(repo_id, revision)
        if ref is None or ref.kind == "tags":
            return hub_error(400, None, f"cannot upload to {revision}: upload to a branch or a pull request (refs/pr/N)")
    elif hub.served.at(repo_id, revision, kind) is None:
        return hub_error(404, "RevisionNotFound", f"revision {revision} not found in {repo_id}")
    identity = getattr(request.state, "identity", None)
    if not write and (hub.served.record(repo_id, kind) or {}).get("gated") and not (identity and identity.can_read(repo_id)):
        return hub_error(401, "GatedRepo", f"Access to {repo_id} is restricted: send a token that may read it (HF_TOKEN)")
    caller = hashlib.sha256(identity.token.encode()).hexdigest() if identity else ""
    token, exp = hub.xet_tokens.issue(Grant(scope_of(kind, repo_id), revision, write, caller))
    url = cas_url(request)
    return JSONResponse({"accessToken": token, "exp": exp, "casUrl": url},
                        headers={"X-Xet-Cas-Url": url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)})


def _may_read(hub, grant: Grant):
    """Whether the caller of ``grant`` may read the repo of a scope (cached for the request)."""
    identity, seen = hub.xet_tokens.identity(grant), {}

    def may_read(scope: str) -> bool:
        if scope not in seen:
            kind, _, repo_id = scope.partition(":")
            record = hub.served.record(repo_id, kind) if kind in hub.served.stores else None
            if record is None:
                seen[scope] = False
            else:
                closed = record.get("private") or record.get("gated")
                seen[scope] = not closed or bool(identity and identity.can_read(repo_id))
        return seen[scope]
    return may_read


async def chunk_query(hub, request: Request) -> Response:
    grant = hub.xet_tokens.check(request, write=False)
    shard = await run_in_threadpool(hub.served.xet.dedupe_shard, request.path_params["hash"], _may_read(hub, grant))
    if shard is None:
        return hub_error(404, None, "no xorb you may read holds this chunk")
    return Response(shard, media_type="application/octet-stream")


async def upload_xorb(hub, request: Request) -> Response:
    grant = hub.xet_tokens.check(request, write=True)
    data = await read_body(request, min(fm.MAX_XORB_BYTES + (1 << 20), hub.max_upload))
    new = await run_in_threadpool(hub.served.xet.put_xorb, request.path_params["hash"], data, grant.scope)
    hub.served.bytes_in += len(data)
    hub.served.xet_bytes_in += len(data)
    return JSONResponse({"was_inserted": new})


async def upload_shard(hub, request: Request) -> Response:
    grant = hub.xet_tokens.check(request, write=True)
    data = await read_body(request, MAX_SHARD_BYTES)
    store = hub.served.stores[grant.kind]
    await run_in_threadpool(store.writable, grant.repo_id)
    await run_in_threadpool(hub.served.xet.accept_shard, data, grant.scope, _may_read(hub, grant),
                            lambda sha256: store.mark_blob(grant.repo_id, sha256), hub.max_upload)
    return JSONResponse({"result": 1})


async def reconstruction(hub, request: Request) -> Response:
    grant = hub.xet_tokens.check(request, write=False)
    file_hash = request.path_params["hash"]
    served = hub.served

    def answer():
        record = served.xet.file_record(file_hash)
        repo = served.at(grant.repo_id, grant.revision, grant.kind) if record else None
        if repo is None or not any(f.sha256 == record["sha256"] for f in repo.files.values()) \
                or not _still_readable(hub, grant):
            return hub_error(404, None, f"no file {file_hash} in {grant.repo_id} at {grant.revision}")
        wanted = byte_range(request.headers.get("range"), record["size"])
        if wanted == "unsatisfiable":
            return hub_error(416, None, "range not satisfiable")
        base, may_read = str(request.base_url).rstrip("/"), _may_read(hub, grant)
        out = served.xet.reconstruction(record, wanted, lambda index, a, b: fetch_url(hub, base, index, a, b, may_read))
        if out is None:
            return hub_error(416, None, "range not satisfiable")
        return JSONResponse(out)
    return await run_in_threadpool(answer)


def _still_readable(hub, grant: Grant) -> bool:
    """Whether the token's caller may still read its repo (made private or gated since it was issued?).
    A repo nobody uploaded (a cached card's) is public."""
    record = hub.served.record(grant.repo_id, grant.kind)
    return record is None or _may_read(hub, grant)(grant.scope)


def fetch_url(hub, base: str, index, first: int, last: int, may_read) -> str:
    """Where a client fetches bytes ``first..last`` of a xorb: a URL good for that range only, on
    this server (any server behind the store honours it), signed with the hub's secret. A
    presigned GET of the S3 store instead, which reads the whole object, only when every repo that
    sent or uses the xorb is one the caller may read: a xorb may hold chunks of files in other repos."""
    xet, storage = hub.served.xet, hub.served.storage
    if hub.served.blobs.redirect and storage.shared:
        owners = xet.owners(index.hash)
        if all(may_read(scope) for scope in owners["sent"] + owners["used"]):
            return storage.url(index.key, FETCH_LIFETIME)
    what = f"{index.hash}:{first}-{last}"
    return (f"{base}{CAS_PREFIX}/fetch/{index.hash}?range={first}-{last}"
            f"&sig={hub.auth.sign('xet-xorb', what, 0, int(time.time()) + FETCH_LIFETIME)}")


async def fetch_xorb(hub, request: Request) -> Response:
    """Bytes of a xorb by the signed URL a reconstruction handed out (no token: the URL is the
    grant), within the range it was signed for."""
    xorb, signed = request.path_params["hash"], request.query_params.get("range", "")
    first, _, last = signed.partition("-")
    if not fm.is_hash_hex(xorb) or not (first.isdigit() and last.isdigit()) or len(signed) > 24 or \
            not hub.auth.check_signature("xet-xorb", f"{xorb}:{signed}", 0, request.query_params.get("sig", "")):
        return hub_error(403, None, "invalid or expired xorb fetch URL: ask for the reconstruction again")
    index = await run_in_threadpool(hub.served.xet.index, xorb)
    if index is None:
        return hub_error(404, None, f"xorb {xorb} is not stored")
    first, last = int(first), min(int(last), index.ends[-1] - 1)
    size = last - first + 1
    wanted = byte_range(request.headers.get("range"), index.ends[-1])
    start, end = wanted if isinstance(wanted, tuple) else (first, last)
    if start < first or end > last or size <= 0:
        return hub_error(416, None, f"this URL fetches bytes {first}-{last} of the xorb only")
    headers = {"Content-Length": str(end - start + 1), "Accept-Ranges": "bytes"}
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{index.ends[-1]}"
    hub.served.bytes_out += end - start + 1
    return StreamingResponse(hub.served.storage.stream(index.key, start=start, end=end),
                             status_code=206 if wanted else 200, headers=headers, media_type="application/octet-stream")


async def not_implemented(hub, request: Request) -> Response:
    return hub_error(404, None, f"this CAS does not implement {request.method} {request.url.path}")


def endpoints() -> list[tuple[str, str, object]]:
    """(method, path under CAS_PREFIX, handler): the CAS API as the app mounts it."""
    return [
        ("GET", "/v1/chunks/{prefix}/{hash}", chunk_query),
        ("POST", "/v1/xorbs/{prefix}/{hash}", upload_xorb),
        ("POST", "/v1/shards", upload_shard),
        ("GET", "/v1/reconstructions/{hash}", reconstruction),
        ("GET", "/fetch/{hash}", fetch_xorb),
    ]
