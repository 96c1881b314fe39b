"""The ASGI app (``zoo serve``): read and write routes over one cache, auth, an HTML index page,
an optional pull-through upstream, request counters at ``/api/zoo/stats``, and a log line per request.

Workers share nothing in memory: repos, refs and blobs are files written atomically under locks,
so ``--workers N`` (several processes on one cache) stays correct. Settings reach each worker
through ``$ZOO_SERVE_SETTINGS`` (:func:`app_from_env`).

Errors: a refusal the protocol defines (:class:`~zoo.errors.HubError`: 400, 404, 409, 413) carries
its status; a store or cache that fails is a 503, an upstream that fails a 502; anything else is a
bug, answered with 500 and logged with its traceback (:class:`RequestLog`), never blamed on the client.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from zoo import config
from zoo.cards.card import REPO_ID_RE
from zoo.errors import (CacheError, CorruptBlobError, HubError, SourceError, StorageError, UsageError,
                        ZooError)
from zoo.hub import admin, pages, read, threads, write
from zoo.hub.auth import Auth, bearer, read_tokens
from zoo.hub.served import ServedRepos
from zoo.hub.upstream import Upstream
from zoo.hub.xet import routes as xet
from zoo.store.objects import open_storage
from zoo.util import logs
from zoo.weights.cache import Cache

log = logging.getLogger(__name__)


@dataclass
class Hub:
    served: ServedRepos
    auth: Auth
    read_only: bool = False
    private: bool = False
    max_upload: int = 1 << 30
    upstream: Upstream | None = None
    user: str = "zoo"
    xet_tokens: xet.XetTokens | None = None


def error_response(exc: ZooError) -> Response:
    """The answer to an expected failure: its own status for a hub refusal, 400 for a bad value,
    502 when the upstream failed, 503 when the store or the cache did; the message says what."""
    if isinstance(exc, HubError):
        return read.hub_error(exc.status, exc.code, str(exc))
    if isinstance(exc, UsageError):
        return read.hub_error(400, None, str(exc))
    if isinstance(exc, (SourceError, CorruptBlobError)):
        log.warning("upstream failure: %s", exc)
        return read.hub_error(502, None, f"the upstream failed: {exc}")
    log.error("storage failure: %s", exc)  # a full disk, a store that refuses, a lock held too long
    return read.hub_error(503, None, str(exc))


def create_app(cache_root: str | os.PathLike | None = None, *, token_file: str | None = None,
               read_only: bool = False, private: bool = False, max_upload_mb: int = 1024,
               upstream: str | None = None, storage: str | None = None, proxy_downloads: bool = False) -> Starlette:
    """The hub over the cache at ``cache_root`` (default ``$ZOO_HOME``); with ``storage``
    (``s3://BUCKET/PREFIX``) uploaded repos and their blobs live in that object store, shared by
    every server pointed at it (the cache then only stages uploads)."""
    cache = Cache(cache_root)
    served = ServedRepos(cache, open_storage(storage) if storage else None, not proxy_downloads)
    # on a shared store the signing secret is shared too: an upload signed by one server may be
    # PUT or verified through another (behind a load balancer)
    auth = Auth(read_tokens(token_file), cache.root, served.storage if served.shared else None)
    hub = Hub(served, auth, read_only, private, max_upload_mb * 1024 * 1024,
              Upstream(upstream.rstrip("/")) if upstream else None)
    hub.xet_tokens = xet.XetTokens(auth)

    def guard(request: Request, kind: str, identity, needs: str | None) -> Response | None:
        """The refusal a repo in the path earns before its handler runs: a bad id (400); a private
        repo the caller may not read, or a write the caller may do to no repo of that id, is a
        RepoNotFound as if absent (the answer never tells a private repo from a missing one); a write
        to a repo the caller sees but may not write is a 403. ``needs``: "read", "write" or None."""
        p = request.path_params
        if "org" not in p:
            return None
        repo_id = f"{p['org']}/{p['name']}"
        if not REPO_ID_RE.match(repo_id):
            return read.hub_error(400, None, "invalid repo id")
        if needs is None:
            return None
        request.state.record = hub.served.record(repo_id, kind)  # read once per request: handlers reuse it
        info = request.state.record or {}
        readable = not info.get("private") or bool(identity and identity.can_read(repo_id))
        if not readable:
            return read.hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
        if needs == "write" and identity is not None and not identity.can_write(repo_id):
            if request.state.record is None and not hub.served.exists(repo_id, kind):
                return read.hub_error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return read.hub_error(403, None, f"this token may not write {repo_id} (its repos= patterns, or role=read)")
        return None

    def reader(handler, kind: str = "model"):
        async def endpoint(request: Request):
            request.scope["zoo.kind"] = kind
            identity = hub.auth.identity(request)  # an unknown token reads as anonymous (it may be huggingface.co's)
            request.state.identity, request.state.authorized = identity, identity is not None
            if hub.private and identity is None:
                return read.hub_error(401, None, "this hub is private: send a token (HF_TOKEN)")
            refused = await run_in_threadpool(guard, request, kind, identity, "read")  # store reads: off the loop
            if refused is not None:
                return refused
            p = request.path_params
            try:
                if handler is read.resolve and (request.state.record or {}).get("gated") \
                        and not (identity and identity.can_read(f"{p['org']}/{p['name']}")):
                    return read.hub_error(401, "GatedRepo", f"Access to {p['org']}/{p['name']} is restricted: "
                                          "send a token that may read it (HF_TOKEN)")
                if handler is read.paths_info:
                    paths = await read.paths_wanted(request)
                    return await run_in_threadpool(handler, hub.served, request, paths)
                response = await run_in_threadpool(handler, hub.served, request)
                # pull-through of main only: other revisions would land under main's names
                if response.status_code == 404 and hub.upstream and kind == "model" and "org" in p \
                        and read.revision_of(request) == "main" and handler in (read.resolve, read.model_info, read.tree):
                    repo_id = f"{p['org']}/{p['name']}"
                    if handler is read.resolve:
                        fetched = await run_in_threadpool(hub.upstream.fetch_file, hub.served, repo_id, "main", p["path"])
                    else:  # model info or tree of a repo we do not hold yet
                        fetched = await run_in_threadpool(hub.upstream.fetch_repo, hub.served, repo_id, "main")
                    if fetched:
                        response = await run_in_threadpool(handler, hub.served, request)
            except (HubError, UsageError, SourceError, CacheError, StorageError) as exc:
                return error_response(exc)
            return response
        return endpoint

    def writer(handler, kind: str = "model", signed: bool = False, needs: str | None = "write"):
        async def endpoint(request: Request):
            request.scope["zoo.kind"] = kind
            if hub.read_only:
                return read.hub_error(403, None, "this hub is read-only")
            identity = hub.auth.identity(request)
            request.state.identity, request.state.authorized = identity, identity is not None
            if not signed and identity is None:
                if bearer(request):  # the client shows this message as it is, not as "repo not found"
                    return read.hub_error(401, None, "Invalid credentials in Authorization header")
                return read.hub_error(401, None, "writes need a valid token (HF_TOKEN, or token=)")
            refused = await run_in_threadpool(guard, request, kind, identity, None if signed else needs)
            if refused is not None:
                return refused
            try:
                return await handler(hub, request)
            except ZooError as exc:  # a refusal with its status, or the store failing (503); bugs go to RequestLog
                return error_response(exc)
        return endpoint

    async def whoami(request: Request):
        identity = hub.auth.identity(request)
        if identity is None:
            return read.hub_error(401, None, "Invalid credentials in Authorization header" if bearer(request)
                                  else "invalid or missing token")
        role = "write" if identity.role == "write" else "read"
        return JSONResponse({"type": "user", "name": identity.user, "fullname": identity.user, "orgs": [],
                             "auth": {"type": "access_token", "accessToken": {"displayName": identity.user, "role": role}}})

    async def stats(request: Request):
        if hub.private and not hub.auth.valid(request):
            return read.hub_error(401, None, "this hub is private")
        identity = hub.auth.identity(request)

        def visible(kind: str) -> list[str]:  # a private repo's name is not for everyone
            return [r for r in hub.served.repo_ids(kind)
                    if not hub.served.info(r, kind).get("private") or identity and identity.can_read(r)]

        repos, datasets = await run_in_threadpool(visible, "model"), await run_in_threadpool(visible, "dataset")
        shown = set(repos) | {f"datasets/{d}" for d in datasets}

        def counted(key: str) -> bool:  # "GET org/name/path" or "GET datasets/org/name/path"
            parts = key.partition(" ")[2].split("/")
            return "/".join(parts[:3] if parts[0] == "datasets" else parts[:2]) in shown

        return JSONResponse({"requests": {k: n for k, n in hub.served.counts.items() if counted(k)},
                             "bytes_out": hub.served.bytes_out, "bytes_in": hub.served.bytes_in,
                             "xet_bytes_in": hub.served.xet_bytes_in,
                             "upstream": dict(hub.upstream.fetches) if hub.upstream else {},
                             "repos": repos, "datasets": datasets})

    def page(handler, kind: str = "model"):
        """A page for a person (zoo/hub/pages.py): what the caller's token (if any) may read, and
        refusals as pages, not as the API's JSON."""
        async def endpoint(request: Request):
            request.scope["zoo.kind"] = kind
            identity = hub.auth.identity(request)
            if hub.private and identity is None:
                return pages.error_page(request, 401, "This hub is private",
                                        "Its pages need a token, as its API does (Authorization: Bearer ...).")
            if kind == "model" and request.path_params.get("org") in ("api", "datasets", "spaces"):
                return await unknown(request)  # an API path no route took: the API's 404, not a page
            if "org" in request.path_params and not REPO_ID_RE.match(read.repo_id_of(request)):
                return pages.error_page(request, 404, "Not found", f"{request.url.path} is not a repo on this hub.")
            try:
                return await run_in_threadpool(handler, hub.served, request, identity)
            except ZooError as exc:  # the store failing: a 503 page that says so
                log.error("page %s: %s", request.url.path, exc)
                return pages.error_page(request, 503, "The store did not answer", str(exc))
        return endpoint

    async def xet_write_token(hub, request: Request):
        return await run_in_threadpool(xet.token_response, hub, request, True)

    def xet_read_token(served, request: Request):
        return xet.token_response(hub, request, False)

    def cas(handler, writes: bool):
        """A CAS route: its own Xet token check inside the handler; a refusal as the API's JSON."""
        async def endpoint(request: Request):
            if writes and hub.read_only:
                return read.hub_error(403, None, "this hub is read-only")
            try:
                return await handler(hub, request)
            except ZooError as exc:
                return error_response(exc)
        return endpoint

    async def validate_yaml(request: Request):
        try:
            return await write.validate_yaml(hub, request)
        except ZooError as exc:
            return error_response(exc)

    async def unknown(request: Request):
        """Every path no route takes: spaces get the typed refusal, the rest a 404 that names the
        endpoint (a client reading it never mistakes it for a network failure)."""
        path = request.url.path
        if path.startswith(("/api/spaces", "/spaces/")):
            return read.hub_error(404, "RepoNotFound", write.SPACES_REFUSED)
        return read.hub_error(404, None, f"zoo serve has no endpoint {request.method} {path}")

    routes = []
    for kind, api_base, url_base in (("dataset", "/api/datasets", "/datasets"), ("model", "/api/models", "")):
        repo, api = url_base + "/{org}/{name}", api_base + "/{org}/{name}"
        routes += [
            Route(repo + "/resolve/{revision}/{path:path}", reader(read.resolve, kind), methods=["GET", "HEAD"]),
            Route(api_base, reader(read.list_repos, kind)),
            Route(api, reader(read.model_info, kind)),
            Route(api + "/revision/{revision}", reader(read.model_info, kind)),
            Route(api + "/tree/{revision}", reader(read.tree, kind)),
            Route(api + "/tree/{revision}/{path:path}", reader(read.tree, kind)),
            Route(api + "/paths-info/{revision}", reader(read.paths_info, kind), methods=["POST"]),
            Route(api + "/refs", reader(read.refs, kind)),
            Route(api + "/commits/{revision}", reader(read.commits, kind)),
            Route(api + "/auth-check", reader(read.auth_check, kind)),
            Route(api + "/auth-check/write", reader(read.auth_check, kind)),
            Route(api + "/discussions", reader(threads.discussions, kind)),
            Route(api + "/discussions", writer(threads.create, kind), methods=["POST"]),
            Route(api + "/discussions/{num}", reader(threads.discussion, kind)),
            Route(api + "/discussions/{num}/{what}", writer(threads.change, kind), methods=["POST"]),
            Route(api + "/discussions/{num}/comment/{comment}/{action}", writer(threads.edit_comment, kind),
                  methods=["POST"]),
            Route(api + "/preupload/{revision}", writer(write.preupload, kind), methods=["POST"]),
            Route(api + "/commit/{revision}", writer(write.commit, kind), methods=["POST"]),
            Route(api + "/branch/{branch}", writer(admin.create_branch, kind), methods=["POST"]),
            Route(api + "/branch/{branch}", writer(admin.delete_branch, kind), methods=["DELETE"]),
            Route(api + "/tag/{revision}", writer(admin.create_tag, kind), methods=["POST"]),
            Route(api + "/tag/{revision}", writer(admin.delete_tag, kind), methods=["DELETE"]),
            Route(api + "/super-squash/{branch}", writer(admin.super_squash, kind), methods=["POST"]),
            Route(api + "/settings", writer(admin.update_settings, kind), methods=["PUT"]),
            Route(api + "/duplicate", writer(admin.duplicate_repo, kind, needs="read"), methods=["POST"]),
            Route(repo + ".git/info/lfs/objects/batch", writer(write.lfs_batch, kind), methods=["POST"]),
            Route(api + "/xet-write-token/{revision}", writer(xet_write_token, kind)),
            Route(api + "/xet-read-token/{revision}", reader(xet_read_token, kind)),
        ]
    routes += [
        Route("/api/whoami-v2", whoami),
        Route("/api/repos/create", writer(write.create_repo), methods=["POST"]),
        Route("/api/repos/delete", writer(admin.delete_repo), methods=["DELETE"]),
        Route("/api/repos/move", writer(admin.move_repo), methods=["POST"]),
        Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
        Route("/api/zoo/lfs/{org}/{name}/{oid}/{size}", writer(write.lfs_upload, signed=True), methods=["PUT"]),
        Route("/api/zoo/lfs-verify/{org}/{name}", writer(write.lfs_verify, needs=None), methods=["POST"]),
        Route("/api/zoo/stats", stats),
        *[Route(xet.CAS_PREFIX + path, cas(handler, method == "POST"), methods=[method])
          for method, path, handler in xet.endpoints()],
        # the rest of the CAS API (xorb grants, v2, telemetry): 404 before any check, so hf_xet falls back
        Route(xet.CAS_PREFIX + "/{rest:path}", cas(xet.not_implemented, False),
              methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        # the pages, after every API route: /api/models is two segments, like /ORG/NAME
        Route("/", page(pages.index)),
        Mount(pages.STATIC_PATH, StaticFiles(directory=pages.STATIC), name="static"),
    ]
    for kind, url_base in (("dataset", "/datasets"), ("model", "")):
        routes += [Route(url_base + "/{org}/{name}", page(pages.repo_page, kind)),
                   Route(url_base + "/{org}/{name}/tree/{revision}", page(pages.repo_page, kind)),
                   Route(url_base + "/{org}/{name}/tree/{revision}/{path:path}", page(pages.repo_page, kind))]
    routes.append(Route("/{rest:path}", unknown, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]))
    app = Starlette(routes=routes, middleware=[Middleware(RequestLog), Middleware(EncodedSlashes)])
    app.state.hub = hub
    return app


class EncodedSlashes:
    """ASGI middleware: a path segment with an encoded slash (``refs%2Fpr%2F1``, how clients send a
    revision) stays one segment for routing, its slashes as :data:`zoo.hub.read.SLASH` (the server
    decodes ``%2F`` before routing, which would split it); an encoded NUL is refused."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        raw = (scope.get("raw_path") or b"") if scope["type"] == "http" else b""
        lowered = raw.lower()
        if b"%2f" in lowered or b"%00" in lowered:
            from urllib.parse import unquote

            try:
                segments = [unquote(seg, errors="strict") for seg in raw.split(b"?", 1)[0].decode("ascii").split("/")]
            except (UnicodeError, ValueError):
                segments = None
            if segments is None or any(read.SLASH in seg for seg in segments):
                return await read.hub_error(400, None, "invalid path: an encoded NUL or a bad escape")(scope, receive, send)
            scope = {**scope, "path": "/".join(seg.replace("/", read.SLASH) for seg in segments)}
        await self.app(scope, receive, send)


class RequestLog:
    """ASGI middleware: one info line per request (method, path, status, bytes sent, milliseconds),
    and for an exception nobody handled, a 500 answer and its traceback at error level (starlette's
    own handler would print the traceback a second time, and uvicorn a third)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        state = {"status": None, "bytes": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:  # the client went away mid-body: nothing to answer, nothing broken
            log.info("%s %s: the client disconnected before sending the whole body", scope["method"], scope["path"])
        except Exception:  # deliberate: a bug in a handler; the client gets a 500, the log the traceback
            log.exception("%s %s failed", scope["method"], scope["path"])
            if state["status"] is None:  # nothing sent yet: answer, so the client is not left hanging
                await read.hub_error(500, None, "internal server error (logged on the server)")(scope, receive, sending)
        finally:
            log.info("%s %s %s %d B %.1f ms", scope["method"], scope["path"], state["status"], state["bytes"],
                     (time.perf_counter() - t0) * 1e3)


#: seconds a connection may take to send a request's headers (idle new connections included); uvicorn
#: times out only idle keep-alive connections after a response, so without this a client that connects
#: and sends nothing, or sends headers a byte at a time, holds a socket for ever
HEADER_TIMEOUT = 30.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete within
    :data:`HEADER_TIMEOUT` seconds of its opening or of the first bytes of its next request."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers() and not self.transport.is_closing():
            self._arm()
        else:
            self._disarm()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            log.info("closing a connection from %s: no complete request within %.0f s",
                     "%s:%d" % self.client if self.client else "?", self.header_timeout)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def app_from_env() -> Starlette:
    """The app for ``uvicorn --factory`` workers: settings come as JSON in ``$ZOO_SERVE_SETTINGS``
    (with the parent's log level, since each worker is a fresh process)."""
    settings = json.loads(config.serve_settings())
    logs.configure(settings.pop("log_level", None))
    GuardedH11Protocol.header_timeout = settings.pop("header_timeout", HEADER_TIMEOUT)
    return create_app(**settings)


def serve(host: str = "127.0.0.1", port: int = 8080, workers: int = 1, log_level: str | None = None,
          header_timeout: float = HEADER_TIMEOUT, **settings) -> None:
    """Run ``zoo serve``: log the address, then answer until interrupted (``settings`` go to
    :func:`create_app`; the token file is read now so a bad path fails before any worker starts)."""
    if settings.get("token_file"):
        read_tokens(settings["token_file"])
    app = None if workers > 1 else create_app(**settings)  # one process: a bad setting fails before binding
    log.info("zoo serve: listening on http://%s:%d (%d worker%s, cache %s%s)", host, port, workers,
             "s" if workers > 1 else "", settings.get("cache_root") or config.zoo_home(),
             f", storage {settings['storage']}" if settings.get("storage") else "")
    # uvicorn's own lines (its start-up banner repeats the address) only from warnings up; the
    # request lines come from RequestLog
    GuardedH11Protocol.header_timeout = header_timeout
    if workers > 1:
        config.set_serve_settings(json.dumps({**settings, "log_level": log_level, "header_timeout": header_timeout}))
        uvicorn.run("zoo.hub.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False, http=GuardedH11Protocol)
    else:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http=GuardedH11Protocol)
