"""Pull-through (``zoo serve --upstream URL``): a file the server lacks is fetched once from the
upstream hub, verified against the upstream's sha256 as it lands, and served from then on.

Concurrent misses of one file (in any worker on one cache) wait on one lock and fetch it once. On a
shared store (S3) the file also goes into the store and is recorded there (``ServedRepos.
remember_pulled_through``), so every server on the store serves what any one of them pulled.

A miss the upstream does not have either stays a 404; any other failure (the upstream down,
corrupt bytes, a full disk) raises, and the server answers with an error status that says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from zoo.errors import SourceError, SourceNotFound
from zoo.hub.served import ServedRepos
from zoo.weights.sources import download, hf_remote

log = logging.getLogger(__name__)


@dataclass
class Upstream:
    """The hub misses are fetched from, and how many files this process fetched from it."""

    url: str
    fetches: Counter = field(default_factory=Counter)

    def fetch_file(self, served: ServedRepos, repo_id: str, revision: str, path: str) -> bool:
        """Fetch one file into the cache, indexed under ``repo_id`` so it is served from now on.
        False when the upstream does not have it either."""
        cache = served.cache
        name = "upstream--" + (repo_id + "--" + path).replace("/", "--")
        with cache.lock(name):  # concurrent misses of one file (in any worker) fetch it once
            done = cache.entry(name)
            if done is not None and cache.has_blob(done.sha256):  # fetched before (before a store, or storing failed)
                _share(served, repo_id, path, done.sha256, done.size, done.revision)
                return True
            try:
                remote = hf_remote(repo_id, path, revision if revision != "main" else None, endpoint=self.url)
            except SourceNotFound:
                return False
            log.info("pulling %s/%s through from %s", repo_id, path, self.url)
            with cache.writer("upstream") as writer:
                download(remote, writer)
                sha = writer.commit(remote.sha256, expected_size=remote.size)
            size = cache.blob_path(sha).stat().st_size
            _share(served, repo_id, path, sha, size, remote.revision)  # before the record: a failure is retried
            cache.record(name, sha, size, f"{self.url}/{repo_id}/{path}", revision=remote.revision,
                         hub_repo=repo_id, filename=path)
            self.fetches[f"{repo_id}/{path}"] += 1
        return True

    def fetch_repo(self, served: ServedRepos, repo_id: str, revision: str) -> bool:
        """Pull-through of a whole repo (what ``snapshot_download`` asks for first): every file the
        upstream lists at ``revision``, each fetched and verified like a single miss. False when the
        upstream has no such repo or revision."""
        from huggingface_hub import HfApi  # lazy: only a server with an upstream needs the client
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            files = HfApi(endpoint=self.url, token=False).list_repo_files(repo_id, revision=revision)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return False
        except Exception as exc:  # deliberate: httpx and huggingface_hub errors all mean the upstream failed
            raise SourceError(f"the upstream {self.url} failed to list {repo_id}: {type(exc).__name__}: {exc}") from exc
        return bool(files) and all(self.fetch_file(served, repo_id, revision, path) for path in files)


def _share(served: ServedRepos, repo_id: str, path: str, sha256: str, size: int, revision: str | None) -> None:
    """On S3, put a pulled-through file in the store and record it there, unless it already is."""
    if not served.shared:
        return
    shared = served.pulled_through(repo_id)
    known = shared.files.get(path) if shared else None
    if known is None or known.sha256 != sha256:
        served.blobs.stored(sha256)
        served.remember_pulled_through(repo_id, path, sha256, size, revision)
