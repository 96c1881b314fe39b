"""Who may write (and, with ``--private``, read): bearer tokens from ``--token-file``.

LFS uploads are PUT to a URL the batch answer hands out, without the client's auth headers (the
client drops them), so that URL carries its own proof: an HMAC of the repo, oid and size under a
per-cache secret (``ZOO_HOME/hub-secret``, created once), valid in every worker on that cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from starlette.requests import Request

from ..tempfiles import temp_beside


def read_tokens(path: str | os.PathLike | None) -> set[str]:
    """One token per line; blank lines and '#' comments ignored."""
    if not path:
        return set()
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.strip().startswith("#")}


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Auth:
    """Write tokens, and the secret that signs upload links. The secret is a 0600 file in the
    server's directory, or, for servers sharing an S3 store, one object in it (first writer wins)."""

    def __init__(self, tokens: set[str], secret_dir: Path, storage=None):
        self.tokens = tokens
        self._secret = self._shared_secret(storage) if storage is not None else self._load_secret(secret_dir)

    @staticmethod
    def _shared_secret(storage) -> bytes:
        from ..storage import PreconditionFailed

        current = storage.get("hub-secret")
        if current is None:
            try:
                storage.put("hub-secret", secrets.token_hex(32).encode(), if_none_match=True)
            except PreconditionFailed:
                pass  # another server made it first: everyone uses that one
            current = storage.get("hub-secret")
        return current.data.strip()

    @staticmethod
    def _load_secret(root: Path) -> bytes:
        path = root / "hub-secret"
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

    def valid(self, request: Request) -> bool:
        token = bearer(request)
        return token is not None and any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens)

    def sign(self, repo_id: str, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{repo_id}:{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    def check_signature(self, repo_id: str, oid: str, size: int, signature: str) -> bool:
        return hmac.compare_digest(self.sign(repo_id, oid, size).encode(), (signature or "").encode())
