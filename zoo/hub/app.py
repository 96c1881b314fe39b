"""The ASGI app: routes of the read side over one cache, plus request counters at ``/api/zoo/stats``."""

from __future__ import annotations

import os
from collections import Counter

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..cache import Cache
from . import read
from .repos import RepoIndex


class ServedIndex(RepoIndex):
    """The repo index plus per-file request counters (for operators, and for tests that must see
    that N concurrent pulls made one download)."""

    def __init__(self, cache: Cache):
        super().__init__(cache)
        self.counts: Counter = Counter()

    def count(self, key: str) -> None:
        self.counts[key] += 1


def create_app(cache_root: str | os.PathLike | None = None) -> Starlette:
    """The hub over the cache at ``cache_root`` (default ``$ZOO_HOME``)."""
    index = ServedIndex(Cache(cache_root))

    def bind(handler):
        async def endpoint(request: Request):
            return handler(index, request)
        return endpoint

    async def stats(request: Request):
        return JSONResponse({"requests": dict(index.counts), "repos": sorted(index.repos())})

    repo = "/{org}/{name}"
    routes = [
        Route(repo + "/resolve/{revision}/{path:path}", bind(read.resolve), methods=["GET", "HEAD"]),
        Route("/api/models" + repo, bind(read.model_info)),
        Route("/api/models" + repo + "/revision/{revision}", bind(read.model_info)),
        Route("/api/models" + repo + "/tree/{revision}", bind(read.tree)),
        Route("/api/models" + repo + "/tree/{revision}/{path:path}", bind(read.tree)),
        Route("/api/zoo/stats", stats),
    ]
    app = Starlette(routes=routes)
    app.state.index = index
    return app
