"""The source-URI grammar shared by cards, the loader, mirrors and publishing.

- ``hf://org/repo`` names a Hugging Face repo, ``hf://org/repo/path/to/file`` a file in it, and
  ``@rev`` right after the repo pins a revision (URL-quoted when it holds a ``/``:
  ``hf://org/repo@refs%2Fpr%2F1/model.safetensors``).
- ``https://...`` (and ``http://...``, for loopback mirrors) is a plain URL.
- ``file:///abs/path`` and plain filesystem paths are local files.
- ``pkg://DIST/path`` is a file inside an installed Python distribution (a PyPI package).

Only parsing lives here (stdlib only): turning a URI into bytes is the weights layer's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from zoo.errors import UriError
from zoo.util.paths import unsafe_relpath

_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Uri:
    """A parsed source URI. ``scheme`` is one of ``hf``, ``https``, ``http``, ``file``, ``pkg``.

    ``hf``: ``repo_id``, ``revision`` (None = the default branch), ``path`` (None = the repo).
    ``pkg``: ``dist`` and ``path``. ``file``: ``path`` (a local path). ``http(s)``: ``url``.
    """

    scheme: str
    text: str
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    dist: str | None = None
    url: str | None = None


def _relative_parts(text: str, parts: list[str], what: str) -> str:
    """Join path segments, refusing empty, ``.`` and ``..`` ones (no escaping a repo or package)."""
    joined = "/".join(parts)
    why = unsafe_relpath(joined)
    if why:
        raise UriError(f"bad {what} in {text!r}: {why} (empty, '.' and '..' path segments are not allowed)")
    return joined


def parse_uri(text: str) -> Uri:
    """Parse ``text`` into a :class:`Uri`; raise :class:`UriError` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise UriError(f"empty source URI {text!r}")
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return Uri(scheme="file", text=text, path=text)
    scheme = scheme.lower()
    if scheme == "hf":
        return _parse_hf(text, rest)
    if scheme == "pkg":
        parts = rest.split("/")
        dist = parts[0]
        if not _DIST.match(dist) or len(parts) < 2:
            raise UriError(f"bad pkg URI {text!r}; expected pkg://DISTRIBUTION/path/inside/it")
        return Uri(scheme="pkg", text=text, dist=dist, path=_relative_parts(text, parts[1:], "package path"))
    if scheme in ("http", "https"):
        if not urlsplit(text).netloc:
            raise UriError(f"bad URL {text!r}: no host")
        return Uri(scheme=scheme, text=text, url=text)
    if scheme == "file":
        split = urlsplit(text)
        if split.netloc not in ("", "localhost"):
            raise UriError(f"bad file URI {text!r}: only local files (file:///abs/path) are supported")
        from urllib.request import url2pathname  # imports http.client & co: ~40 ms, only pay it here

        return Uri(scheme="file", text=text, path=url2pathname(split.path))
    raise UriError(f"unsupported URI scheme {scheme!r} in {text!r}; use hf://, https://, file:// or pkg://")


def _parse_hf(text: str, rest: str) -> Uri:
    parts = rest.split("/")
    if len(parts) < 2:
        raise UriError(f"bad hf URI {text!r}; expected hf://org/repo[@revision][/path/to/file]")
    org, name = parts[0], parts[1]
    revision = None
    if "@" in name:
        name, _, quoted = name.partition("@")
        revision = unquote(quoted)
        if not revision:
            raise UriError(f"bad hf URI {text!r}: empty revision after '@'")
    for piece in (org, name):
        if not _REPO_PART.match(piece):
            raise UriError(f"bad hf URI {text!r}: {piece!r} is not a valid repo namespace or name")
    path = _relative_parts(text, parts[2:], "file path") if len(parts) > 2 else None
    return Uri(scheme="hf", text=text, repo_id=f"{org}/{name}", revision=revision, path=path)


def format_hf_uri(repo_id: str, path: str | None = None, revision: str | None = None) -> str:
    """Build ``hf://repo[@rev][/path]``, quoting a revision that holds ``/`` (the inverse of parse)."""
    uri = f"hf://{repo_id}"
    if revision:
        uri += "@" + quote(revision, safe="")
    if path:
        uri += "/" + path.lstrip("/")
    return uri
