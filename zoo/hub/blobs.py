"""Where the hub's file bytes live: the cache's ``blobs/<sha256>`` on local disk, or the same
content-addressed layout in an S3-compatible store (``zoo serve --storage s3://...``).

On S3 an LFS upload goes straight to the store: the batch answer is a presigned PUT to a staging
key ``uploads/<sha256>.<random>``, and the client's verify call makes the server read what landed,
hash a private copy of it, and only then copy that (inside the store) to ``blobs/<sha256>``; a
wrong size or hash is deleted and refused. Uploads that cannot go direct (``--proxy-downloads``: clients cannot reach
the store; files over S3's 5 GB single-PUT limit) land in the server's local cache first, verified
as the bytes arrive (zoo/weights/blobwriter.py), and are then stored. A commit may refer to a blob only
once the store holds it with the declared size. Downloads of LFS files are
answered with a redirect to a short-lived presigned URL of the store, as the Hugging Face Hub
hands large files to its CDN: the bytes flow from the store, not through Python.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from pathlib import Path

from zoo.errors import CorruptBlobError, ObjectNotFound
from zoo.weights.cache import Cache

#: S3's limit for one PutObject (and one CopyObject): larger uploads pass through the server
SINGLE_PUT_MAX = 5 * 1024 ** 3
#: how long a presigned upload URL stays valid (S3 checks it when the PUT starts)
UPLOAD_EXPIRES = 3600
_STAGED = re.compile(r"^[0-9a-f]{64}\.[0-9a-f]{32}\Z")


class Blobs:
    def __init__(self, cache: Cache, storage, redirect: bool = True):
        self.cache, self.storage = cache, storage
        self.remote = storage.shared
        # False (zoo serve --proxy-downloads): stream from the store, for clients that cannot reach it
        self.redirect = redirect
        self._swept = float("-inf")  # when this process last swept abandoned uploads (see stage)

    @staticmethod
    def key(sha256: str) -> str:
        return f"blobs/{sha256}"

    def size(self, sha256: str) -> int | None:
        """The stored size of the blob, None if it is not stored."""
        if self.remote:
            return self.storage.size(self.key(sha256))
        return self.cache.blob_path(sha256).stat().st_size if self.cache.has_blob(sha256) else None

    def has(self, sha256: str, size: int | None = None) -> bool:
        stored = self.size(sha256)
        return stored is not None and (size is None or stored == size)

    def stored(self, sha256: str) -> None:
        """A verified blob just landed in the local cache: on S3, put it in the store too."""
        if self.remote and not self.has(sha256, self.cache.blob_path(sha256).stat().st_size):
            self.storage.put_file(self.key(sha256), self.cache.blob_path(sha256))

    def url(self, sha256: str, expires: int = 300) -> str | None:
        """A presigned GET of the blob (S3), or None (served from local disk)."""
        return self.storage.url(self.key(sha256), expires) if self.remote else None

    def direct_upload(self, size: int) -> bool:
        """Whether an upload of ``size`` bytes goes straight to the store (presigned PUT)."""
        return self.remote and self.redirect and size <= SINGLE_PUT_MAX

    def stage(self, sha256: str, size: int) -> tuple[str, str]:
        """A fresh staging name for an upload of ``sha256`` and the presigned PUT that writes it.
        Once an hour a server also deletes staged uploads nobody verified (the client died, or
        lied and never called verify) once their URL is long expired."""
        if time.monotonic() - self._swept > 3600:
            self._swept = time.monotonic()
            for prefix in ("uploads/", "verifying/"):  # the latter: a server that died mid-verify
                for key in self.storage.list(prefix, older_than=2 * UPLOAD_EXPIRES):
                    self.storage.delete(key)
        staged = f"{sha256}.{uuid.uuid4().hex}"
        return staged, self.storage.upload_url(f"uploads/{staged}", size, UPLOAD_EXPIRES)

    def adopt(self, staged: str, sha256: str, size: int) -> None:
        """Verify what a client PUT to ``uploads/<staged>``: the declared size, then the sha256 of
        every byte read back; only then copy it to ``blobs/<sha256>``. ObjectNotFound if nothing
        landed; CorruptBlobError if it is not the file.

        The presigned URL stays valid for an hour, so the client could PUT other bytes while the
        server hashes. What is hashed and promoted is therefore a copy under ``verifying/``, a key
        no URL was handed out for (a copy is of one whole version). Pinning the version by ETag
        instead would rest on MD5, whose same-length collisions are cheap to make. A store error
        keeps the upload, so the client's retry of verify can still succeed."""
        if not _STAGED.match(staged) or not staged.startswith(sha256):
            raise ObjectNotFound(f"no upload staged as {staged!r} for {sha256}")
        key, private = f"uploads/{staged}", f"verifying/{staged}"
        try:
            self.storage.copy(key, private)  # ObjectNotFound when nothing landed
            got = self.storage.size(private)
            digest = hashlib.sha256()
            if got == size:
                for chunk in self.storage.stream(private):
                    digest.update(chunk)
            if got != size or digest.hexdigest() != sha256:
                self.storage.delete(key)
                raise CorruptBlobError(f"{got} bytes landed, {size} were declared" if got != size else
                                       f"sha256 mismatch: declared {sha256}, got {digest.hexdigest()}")
            if not self.has(sha256, size):
                self.storage.copy(private, self.key(sha256))
            self.storage.delete(key)
        finally:
            self.storage.delete(private)

    def stream(self, sha256: str, start: int = 0, end: int | None = None):
        return self.storage.stream(self.key(sha256), start=start, end=end)

    def read(self, sha256: str) -> bytes | None:
        obj = self.storage.get(self.key(sha256)) if self.remote else None
        if obj is not None:
            return obj.data
        path: Path = self.cache.blob_path(sha256)
        return path.read_bytes() if path.is_file() else None
