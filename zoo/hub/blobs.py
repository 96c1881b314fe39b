"""Where the hub's file bytes live: the cache's ``blobs/<sha256>`` on local disk, or the same
content-addressed layout in an S3-compatible store (``zoo serve --storage s3://...``).

On S3 every server writes uploads to its local cache first (the sha256 is verified as the bytes
arrive, zoo/blobwriter.py), then stores the verified file under ``blobs/<sha256>``; a commit may
refer to a blob only once the store holds it with the declared size. Downloads of LFS files are
answered with a redirect to a short-lived presigned URL of the store, as the Hugging Face Hub
hands large files to its CDN: the bytes flow from the store, not through Python.
"""

from __future__ import annotations

from pathlib import Path

from ..cache import Cache


class Blobs:
    def __init__(self, cache: Cache, storage, redirect: bool = True):
        from ..storage import S3Storage

        self.cache, self.storage = cache, storage
        self.remote = isinstance(storage, S3Storage)
        # False (zoo serve --proxy-downloads): stream from the store, for clients that cannot reach it
        self.redirect = redirect

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

    def stream(self, sha256: str):
        return self.storage.stream(self.key(sha256))

    def read(self, sha256: str) -> bytes | None:
        obj = self.storage.get(self.key(sha256)) if self.remote else None
        if obj is not None:
            return obj.data
        path: Path = self.cache.blob_path(sha256)
        return path.read_bytes() if path.is_file() else None
