"""The ASGI app (``zoo serve``): read and write routes over one cache, auth, an HTML index page,
an optional pull-through upstream, and request counters at ``/api/zoo/stats``.

Workers share nothing in memory: repos, refs and blobs are files written atomically under locks,
so ``--workers N`` (several processes on one cache) stays correct. Settings reach each worker
through ``ZOO_SERVE_*`` environment variables (:func:`app_from_env`).
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from zoo.weights.cache import Cache
from zoo.errors import ZooError
from zoo.hub import read, write
from zoo.hub.auth import Auth, read_tokens
from zoo.hub.served import REPO_ID_RE, RepoIndex


class ServedIndex(RepoIndex):
    """The repo index plus per-file request counters (for operators, and for tests that must see
    that N concurrent pulls made one download)."""

    def __init__(self, cache: Cache, storage=None, redirect: bool = True):
        from zoo.hub.blobs import Blobs

        super().__init__(cache, storage)
        self.blobs = Blobs(cache, self.storage, redirect)
        self.counts: Counter = Counter()
        self.bytes_out = 0  # file bytes this process sent itself (not what it redirected)
        self.bytes_in = 0  # LFS bytes uploaded through this process (not what went to the store directly)

    def count(self, key: str) -> None:
        self.counts[key] += 1


@dataclass
class Hub:
    index: ServedIndex
    auth: Auth
    read_only: bool = False
    private: bool = False
    max_upload: int = 1 << 30
    upstream: str | None = None
    user: str = "zoo"
    upstream_fetches: Counter = field(default_factory=Counter)


def _fetch_upstream(hub: Hub, repo_id: str, revision: str, path: str) -> bool:
    """Pull-through: fetch one file from the upstream hub, verified, into the cache, indexed under
    ``repo_id`` so it is served from now on. False when the upstream does not have it either."""
    from zoo.errors import ZooError
    from zoo.weights.sources import download, hf_remote

    cache, index = hub.index.cache, hub.index
    name = "upstream--" + (repo_id + "--" + path).replace("/", "--")
    try:
        with cache.lock(name):  # concurrent misses of one file (in any worker) fetch it once
            done = cache.entry(name)
            if done is None or not cache.has_blob(done.sha256):
                remote = hf_remote(repo_id, path, revision if revision != "main" else None, endpoint=hub.upstream)
                with cache.writer("upstream") as writer:
                    download(remote, writer)
                    sha = writer.commit(remote.sha256, expected_size=remote.size)
                size = cache.blob_path(sha).stat().st_size
                _share(index, repo_id, path, sha, size, remote.revision)  # before the record: a failure is retried
                cache.record(name, sha, size, f"{hub.upstream}/{repo_id}/{path}", revision=remote.revision,
                             hub_repo=repo_id, filename=path)
                hub.upstream_fetches[f"{repo_id}/{path}"] += 1
            else:  # fetched before (perhaps before this server used a store, or storing it failed)
                _share(index, repo_id, path, done.sha256, done.size, done.revision)
    except ZooError:
        return False
    return True


def _share(index, repo_id: str, path: str, sha256: str, size: int, revision: str | None) -> None:
    """On S3, put a pulled-through file in the store and record it there, unless it already is."""
    if not index.shared:
        return
    shared = index.mirrored(repo_id)
    known = shared.files.get(path) if shared else None
    if known is None or known.sha256 != sha256:
        index.blobs.stored(sha256)
        index.remember_mirrored(repo_id, path, sha256, size, revision)


def _fetch_upstream_repo(hub: Hub, repo_id: str, revision: str) -> bool:
    """Pull-through of a whole repo (what ``snapshot_download`` asks for first): every file the
    upstream lists at ``revision``, each fetched and verified like a single miss."""
    from huggingface_hub import HfApi

    try:
        files = HfApi(endpoint=hub.upstream, token=False).list_repo_files(repo_id, revision=revision)
    except Exception:  # the upstream does not have it (or is down): the miss stands
        return False
    return bool(files) and all(_fetch_upstream(hub, repo_id, revision, path) for path in files)


def index_page(hub: Hub) -> str:
    """A plain page of the served repos with their card figures, for a person browsing the mirror."""
    from zoo.cards.registry import get_registry

    cards = {}
    for card in get_registry().cards:
        cards.setdefault(card.hub_repo, card)
    rows = []
    for repo_id in hub.index.repo_ids():
        repo = hub.index.get(repo_id)
        if repo is None or repo.private:  # the page is for anyone who can reach the server
            continue
        card = cards.get(repo_id)
        size = sum(f.size for f in repo.files.values()) / 1e6
        top1 = f"{card.top1:.2f}" if card and card.top1 is not None else ""
        params = f"{card.params / 1e6:.1f} M" if card and card.params else ""
        rows.append(f"<tr><td>{html.escape(repo_id)}</td><td>{html.escape(card.name if card else '')}</td>"
                    f"<td>{top1}</td><td>{params}</td><td>{size:.1f} MB</td><td>{len(repo.files)}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>zoo hub</title></head><body>"
            "<h1>zoo hub</h1><p>A Hugging Face-compatible mirror: set <code>HF_ENDPOINT</code> to this address.</p>"
            "<table border='1' cellpadding='4'><tr><th>repo</th><th>card</th><th>top-1 %</th><th>params</th>"
            "<th>size</th><th>files</th></tr>" + "".join(rows) + "</table></body></html>")


def create_app(cache_root: str | os.PathLike | None = None, *, token_file: str | None = None,
               read_only: bool = False, private: bool = False, max_upload_mb: int = 1024,
               upstream: str | None = None, storage: str | None = None, proxy_downloads: bool = False) -> Starlette:
    """The hub over the cache at ``cache_root`` (default ``$ZOO_HOME``); with ``storage``
    (``s3://BUCKET/PREFIX``) uploaded repos and their blobs live in that object store, shared by
    every server pointed at it (the cache then only stages uploads)."""
    from zoo.store.objects import open_storage

    cache = Cache(cache_root)
    index = ServedIndex(cache, open_storage(storage) if storage else None, not proxy_downloads)
    # on a shared store the signing secret is shared too: an upload signed by one server may be
    # PUT or verified through another (behind a load balancer)
    auth = Auth(read_tokens(token_file), cache.root, index.storage if index.shared else None)
    hub = Hub(index, auth, read_only, private, max_upload_mb * 1024 * 1024, upstream.rstrip("/") if upstream else None)

    def reader(handler):
        async def endpoint(request: Request):
            authorized = hub.auth.valid(request)
            request.state.authorized = authorized
            if hub.private and not authorized:
                return read.hub_error(401, None, "this hub is private: send a token (HF_TOKEN)")
            p = request.path_params
            if "org" in p and not REPO_ID_RE.match(f"{p['org']}/{p['name']}"):
                return read.hub_error(400, None, "invalid repo id")
            if "org" in p and not authorized and hub.index.store.info(f"{p['org']}/{p['name']}").get("private"):
                return read.hub_error(404, "RepoNotFound", f"Repository {p['org']}/{p['name']} not found")
            response = await run_in_threadpool(handler, hub.index, request)
            # pull-through of main only: other revisions would land under main's names
            if response.status_code == 404 and hub.upstream and "org" in p and p.get("revision", "main") == "main":
                repo_id = f"{p['org']}/{p['name']}"
                if handler is read.resolve:
                    fetched = await run_in_threadpool(_fetch_upstream, hub, repo_id, "main", p["path"])
                else:  # model info or tree of a repo we do not hold yet
                    fetched = await run_in_threadpool(_fetch_upstream_repo, hub, repo_id, "main")
                if fetched:
                    response = await run_in_threadpool(handler, hub.index, request)
            return response
        return endpoint

    def writer(handler, signed: bool = False):
        async def endpoint(request: Request):
            if hub.read_only:
                return read.hub_error(403, None, "this hub is read-only")
            if not signed and not hub.auth.valid(request):
                return read.hub_error(401, None, "writes need a valid token (HF_TOKEN, or token=)")
            p = request.path_params
            if "org" in p and not REPO_ID_RE.match(f"{p['org']}/{p['name']}"):
                return read.hub_error(400, None, "invalid repo id")
            try:
                return await handler(hub, request)
            except write.TooLarge:
                return read.hub_error(413, None, "request body too large")
            except (AttributeError, TypeError, KeyError, ValueError, RecursionError, UnicodeError):
                return read.hub_error(400, None, "malformed request body")
            except ZooError as exc:  # e.g. a repo lock held too long by another writer
                return read.hub_error(503, None, str(exc))
        return endpoint

    async def whoami(request: Request):
        if not hub.auth.valid(request):
            return read.hub_error(401, None, "invalid or missing token")
        return JSONResponse({"type": "user", "name": hub.user, "fullname": "zoo hub user", "orgs": [],
                             "auth": {"type": "access_token", "accessToken": {"displayName": "zoo", "role": "write"}}})

    async def stats(request: Request):
        if hub.private and not hub.auth.valid(request):
            return read.hub_error(401, None, "this hub is private")
        return JSONResponse({"requests": dict(hub.index.counts), "bytes_out": hub.index.bytes_out, "bytes_in": hub.index.bytes_in, "upstream": dict(hub.upstream_fetches),
                             "repos": hub.index.repo_ids()})

    async def home(request: Request):
        if hub.private and not hub.auth.valid(request):
            return read.hub_error(401, None, "this hub is private")
        return HTMLResponse(await run_in_threadpool(index_page, hub))

    repo = "/{org}/{name}"
    api = "/api/models" + repo
    routes = [
        Route("/", home),
        Route(repo + "/resolve/{revision}/{path:path}", reader(read.resolve), methods=["GET", "HEAD"]),
        Route("/api/models", reader(read.list_models)),
        Route(api, reader(read.model_info)),
        Route(api + "/revision/{revision}", reader(read.model_info)),
        Route(api + "/tree/{revision}", reader(read.tree)),
        Route(api + "/tree/{revision}/{path:path}", reader(read.tree)),
        Route(api + "/refs", reader(read.refs)),
        Route(api + "/commits/{revision}", reader(read.commits)),
        Route("/api/whoami-v2", whoami),
        Route("/api/repos/create", writer(write.create_repo), methods=["POST"]),
        Route("/api/validate-yaml", writer(write.validate_yaml), methods=["POST"]),
        Route(api + "/preupload/{revision}", writer(write.preupload), methods=["POST"]),
        Route(api + "/commit/{revision}", writer(write.commit), methods=["POST"]),
        Route(repo + ".git/info/lfs/objects/batch", writer(write.lfs_batch), methods=["POST"]),
        Route("/api/zoo/lfs" + repo + "/{oid}/{size}", writer(write.lfs_upload, signed=True), methods=["PUT"]),
        Route("/api/zoo/lfs-verify" + repo, writer(write.lfs_verify), methods=["POST"]),
        Route(api + "/xet-write-token/{revision}", _xet(hub)),
        Route(api + "/xet-read-token/{revision}", _xet(hub)),
        Route("/api/zoo/stats", stats),
    ]
    app = Starlette(routes=routes)
    app.state.hub = hub
    return app


def _xet(hub: Hub):
    async def endpoint(request: Request):
        return await write.xet_token(hub, request)
    return endpoint


SETTINGS_ENV = "ZOO_SERVE_SETTINGS"


def app_from_env() -> Starlette:
    """The app for ``uvicorn --factory`` workers: settings come as JSON in ``$ZOO_SERVE_SETTINGS``."""
    return create_app(**json.loads(os.environ.get(SETTINGS_ENV, "{}")))
