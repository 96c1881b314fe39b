"""Who may write (and, with ``--private``, read): bearer tokens from ``--token-file``.

One token per line, optionally followed by what it may do::

    s3cret-1                                     # user "zoo", writes every repo
    s3cret-2  user=alice repos=alice/*,team/*    # writes her own and the team's repos
    s3cret-3  user=ci role=read                  # reads private repos, writes none

``repos`` patterns (``fnmatch``, on ``org/name``) bound both what a token writes and which private or
gated repos it reads; a write needs ``role=write`` (the default). The user name is who the hub
says opened a pull request or made a commit, and the namespace ``create_repo`` uses without one.

LFS uploads are PUT to a URL the batch answer hands out, without the client's auth headers (the
client drops them), so that URL carries its own proof: an HMAC of the repo, oid and size under a
per-cache secret (``ZOO_HOME/hub-secret``, created once), valid in every worker on that cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import re
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from starlette.requests import Request

from zoo import config, home
from zoo.errors import PreconditionFailed, StorageError, UsageError
from zoo.util.tempfiles import temp_beside

#: how long a signed upload or verify link stays valid (seconds)
LINK_LIFETIME = 24 * 3600


@dataclass(frozen=True)
class Identity:
    """What one token may do."""

    token: str
    user: str = "zoo"
    role: str = "write"
    repos: tuple[str, ...] = ("*",)

    def covers(self, repo_id: str) -> bool:
        return any(fnmatchcase(repo_id, pattern) for pattern in self.repos)

    def can_read(self, repo_id: str) -> bool:
        return self.covers(repo_id)

    def can_write(self, repo_id: str) -> bool:
        return self.role == "write" and self.covers(repo_id)


_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")


def parse_token_line(line: str, where: str = "token file") -> Identity:
    token, *fields = line.split()
    out: dict = {}
    for item in fields:
        key, eq, value = item.partition("=")
        if not eq or key not in ("user", "role", "repos") or not value:
            raise UsageError(f"{where}: {item!r}: expected user=NAME, role=read|write or repos=PATTERN[,PATTERN]")
        out[key] = value
    if "role" in out and out["role"] not in ("read", "write"):
        raise UsageError(f"{where}: role must be read or write, not {out['role']!r}")
    if "user" in out and not _USER_RE.match(out["user"]):
        raise UsageError(f"{where}: user {out['user']!r}: letters, digits, '.', '_' and '-' only")
    repos = tuple(p for p in out.pop("repos", "*").split(",") if p)
    return Identity(token, repos=repos or ("*",), **out)


def read_tokens(path: str | os.PathLike | None) -> dict[str, Identity]:
    """Token -> :class:`Identity`, one per line; blank lines and '#' comments ignored."""
    if not path:
        return {}
    out = {}
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            identity = parse_token_line(re.split(r"\s+#", line, maxsplit=1)[0], f"{path}, line {n}")
            out[identity.token] = identity
    return out


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Auth:
    """Write tokens, and the secret that signs upload links (which expire after
    :data:`LINK_LIFETIME`). The secret is ``$ZOO_HUB_SECRET``, else for servers sharing an S3 store
    one object in it (first writer wins: a link signed by one server is honoured by all), else a
    0600 file in the server's directory."""

    def __init__(self, tokens: dict[str, Identity] | set[str], secret_dir: Path, storage=None):
        self.tokens = tokens if isinstance(tokens, dict) else {t: Identity(t) for t in tokens}
        env = config.hub_secret()
        if env is not None:
            self._secret = env.encode()
        else:
            self._secret = self._shared_secret(storage) if storage is not None else self._load_secret(secret_dir)
        if len(self._secret) < 32:
            raise UsageError("the hub's signing secret is shorter than 32 bytes: set ZOO_HUB_SECRET to a long random "
                           "value, or delete the hub-secret object/file so a new one is made")

    @staticmethod
    def _shared_secret(storage) -> bytes:
        for attempt in range(20):
            current = storage.get("hub-secret")
            if current is not None:
                return current.data.strip()
            try:
                storage.put("hub-secret", secrets.token_hex(32).encode(), if_none_match=True)
            except PreconditionFailed:  # another server is making it (AWS answers 409 meanwhile): read it
                time.sleep(0.05 * (attempt + 1))
        raise StorageError("could not read or create the hub's signing secret in the store; set ZOO_HUB_SECRET")

    @staticmethod
    def _load_secret(root: Path) -> bytes:
        path = root / home.HUB_SECRET
        if not path.exists():
            root.mkdir(parents=True, exist_ok=True)
            tmp = temp_beside(path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)  # first writer wins; every worker then reads the same secret
            except FileExistsError:
                pass
            os.unlink(tmp)
        return path.read_bytes().strip()

    def identity(self, request: Request) -> Identity | None:
        """Whose token the request carries; None without one or with one not in the token file."""
        token = bearer(request)
        if token is None:
            return None
        found = None
        for known, identity in self.tokens.items():  # compare with every token: no early exit to time
            if hmac.compare_digest(token.encode(), known.encode()):
                found = identity
        return found

    def valid(self, request: Request) -> bool:
        return self.identity(request) is not None

    def mac(self, text: str) -> str:
        """HMAC-SHA256 of ``text`` with the hub's secret (Xet tokens: zoo/hub/xet/routes.py)."""
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def sign(self, repo_id: str, oid: str, size: int, expires: int | None = None) -> str:
        """``EXPIRES.HMAC`` over the repo, object, size and expiry: an upload link that only works
        for that object, until then."""
        expires = int(time.time() + LINK_LIFETIME) if expires is None else expires
        mac = hmac.new(self._secret, f"{repo_id}:{oid}:{size}:{expires}".encode(), hashlib.sha256).hexdigest()
        return f"{expires}.{mac}"

    def check_signature(self, repo_id: str, oid: str, size: int, signature: str) -> bool:
        expires, _, _ = (signature or "").partition(".")
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
            return False
        return hmac.compare_digest(self.sign(repo_id, oid, size, int(expires)).encode(), signature.encode())
