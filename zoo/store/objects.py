"""Keyed object storage with compare-and-swap: a local directory, or an S3-compatible bucket.

The hub keeps repo metadata and refs as small objects that several servers may update at once.
Both backends give the same contract:

- ``get(key)`` -> :class:`Object` (bytes and an ETag) or None;
- ``put(key, data, if_match=ETAG)`` replaces only the version read; ``if_none_match=True`` creates
  only if absent; a lost race raises :class:`~zoo.errors.PreconditionFailed` (the caller re-reads
  and retries: :func:`update`); a key that is not stored is :class:`~zoo.errors.ObjectNotFound`
  where an answer is required (``stream``, ``copy``), None where absence is an answer (``get``, ``size``);
- ``url(key)``: a short-lived presigned GET for S3 (so bytes can flow from the store, not through
  the server), None for a directory.

S3 goes through botocore directly, configured the standard AWS way (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``): conditional writes are ``PutObject`` with
``If-Match`` / ``If-None-Match``, which s3fs does not expose. SeaweedFS 4.48 enforces both under
concurrency (tests/test_storage.py: 2 writers x 20 commits, none lost). A directory does the same
with a per-key file lock, the ETag being the sha256 of the bytes, and an atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zoo import config
from zoo.errors import MissingExtra, ObjectNotFound, PreconditionFailed, StorageError, UsageError
from zoo.util.paths import unsafe_relpath
from zoo.util.tempfiles import temp_beside


@dataclass(frozen=True)
class Object:
    data: bytes
    etag: str


def _safe_key(key: str) -> str:
    why = unsafe_relpath(key)
    if why:
        raise UsageError(f"bad storage key {key!r}: {why}")
    return key


class LocalStorage:
    """Objects as files under ``root`` (the default backend: one machine, or a shared file system)."""

    #: servers on it share nothing but this directory: blobs are served from the local cache
    shared = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def get(self, key: str) -> Object | None:
        try:
            with open(os.path.join(self.root, _safe_key(key)), "rb") as fh:  # no pathlib: a page reads thousands
                data = fh.read()
        except FileNotFoundError:
            return None
        return Object(data, hashlib.sha256(data).hexdigest())

    def put(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        from filelock import FileLock

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            current = self.get(key)
            if if_none_match and current is not None:
                raise PreconditionFailed(f"{key} exists already")
            if if_match is not None and (current is None or current.etag != if_match):
                raise PreconditionFailed(f"{key} changed since it was read")
            tmp = temp_beside(path)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Store the file at ``path`` under ``key`` (streamed; replaced atomically)."""
        import shutil

        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(dest)
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "", depth: int | None = None) -> list[str]:
        """Keys under ``prefix``; with ``depth``, only those with at most that many '/' after it."""
        folder = prefix.rpartition("/")[0]  # walk only below the prefix's folder, not the whole root
        start = os.path.join(self.root, _safe_key(folder)) if folder else str(self.root)
        cut = len(str(self.root)) + 1
        keys = []
        # os.walk and plain strings: pathlib's rglob costs a millisecond per repo of a large hub
        for dirpath, dirnames, filenames in os.walk(start):
            rel = dirpath[cut:].replace(os.sep, "/")
            here = rel + "/" if rel else ""
            if not (here.startswith(prefix) or prefix.startswith(here)):
                dirnames.clear()  # a folder no key of the prefix can be in: skip its subtree
                continue
            if depth is not None and here.startswith(prefix) and here[len(prefix):].count("/") >= depth:
                dirnames.clear()  # its subfolders hold only keys deeper than asked
            for name in filenames:
                key = f"{rel}/{name}" if rel else name
                if key.startswith(prefix) and not name.endswith(".lock") and not name.startswith(".") \
                        and (depth is None or key[len(prefix):].count("/") <= depth):
                    keys.append(key)
        return sorted(keys)

    def stream(self, key: str, chunk: int = 1 << 20, start: int = 0, end: int | None = None):
        """The object's bytes ``start..end`` (inclusive; all by default) in chunks, as on S3."""
        try:
            fh = open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root}: {key} is not stored") from None
        with fh:
            fh.seek(start)
            left = None if end is None else end - start + 1
            while data := fh.read(chunk if left is None else min(chunk, left)):
                yield data
                if left is not None:
                    left -= len(data)

    def url(self, key: str, expires: int = 300) -> str | None:
        return None


class S3Storage:
    """Objects in ``s3://bucket/prefix`` of any S3-compatible store, through botocore."""

    #: any number of servers share it: blobs live in it, downloads redirect to it
    shared = True

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if client is None:
            try:
                import botocore.session
            except ImportError:
                raise MissingExtra("s3:// storage", "botocore", "s3") from None

            session = botocore.session.get_session()
            # botocore reads AWS_DEFAULT_REGION; AWS_REGION is what the other SDKs (and most docs) use
            region = session.get_config_variable("region") or config.aws_region() or "us-east-1"
            from botocore.config import Config

            # SigV4 presigned URLs: botocore would otherwise presign with SigV2, which AWS refuses
            # for buckets made since 2020 (S3-compatible stores take both)
            client = session.create_client("s3", region_name=region,  # AWS_ENDPOINT_URL and keys from the env
                                           config=Config(signature_version="s3v4",
                                                         max_pool_connections=2 * GET_WORKERS))
        self.client = client

    def __repr__(self) -> str:
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def _key(self, key: str) -> str:
        key = _safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise PreconditionFailed(f"{what}: {code or status}") from None
            if code in ("NoSuchKey", "404") or status == 404:
                raise ObjectNotFound(f"s3://{self.bucket}: {what}: not stored") from None
            raise StorageError(f"s3://{self.bucket}: {what}: {code}: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"s3://{self.bucket}: {what}: {exc}") from None

    def get(self, key: str) -> Object | None:
        try:
            r = self._call(f"get {key}", self.client.get_object, Key=self._key(key))
        except ObjectNotFound:
            return None
        return Object(r["Body"].read(), r["ETag"])

    def put(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        extra = {"IfMatch": if_match} if if_match is not None else {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            r = self._call(f"put {key}", self.client.put_object, Key=self._key(key), Body=data, **extra)
        except ObjectNotFound:  # If-Match on an object that is gone
            raise PreconditionFailed(f"{key} vanished since it was read") from None
        return r["ETag"]

    def size(self, key: str) -> int | None:
        try:
            return int(self._call(f"head {key}", self.client.head_object, Key=self._key(key))["ContentLength"])
        except ObjectNotFound:
            return None

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        """Upload the file at ``path`` (streamed from disk, never read into memory whole)."""
        with open(path, "rb") as fh:
            self._call(f"put {key}", self.client.put_object, Key=self._key(key), Body=fh)

    def delete(self, key: str) -> None:
        try:
            self._call(f"delete {key}", self.client.delete_object, Key=self._key(key))
        except ObjectNotFound:
            pass

    def list(self, prefix: str = "", older_than: float | None = None, depth: int | None = None) -> list[str]:
        """Keys under ``prefix``; with ``older_than``, only those last written that many seconds ago
        or more; with ``depth``, only those with at most that many '/' after the prefix."""
        import time

        if prefix:
            _safe_key(prefix.rstrip("/"))
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        keys, token = [], None
        while True:
            kwargs = {"Prefix": full, **({"ContinuationToken": token} if token else {})}
            r = self._call(f"list {prefix}", self.client.list_objects_v2, **kwargs)
            strip = len(self.prefix) + 1 if self.prefix else 0
            keys += [o["Key"][strip:] for o in r.get("Contents", [])
                     if (older_than is None or time.time() - o["LastModified"].timestamp() >= older_than)
                     and (depth is None or o["Key"][strip + len(prefix):].count("/") <= depth)]
            if not r.get("IsTruncated"):
                return sorted(keys)
            token = r["NextContinuationToken"]

    def stream(self, key: str, chunk: int = 1 << 20, start: int = 0, end: int | None = None):
        """The object's bytes ``start..end`` (inclusive; all by default) in chunks, never whole in
        memory (a server that proxies downloads, and resumes them with HTTP Range)."""
        from botocore.exceptions import BotoCoreError

        extra = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}

        body = self._call(f"get {key}", self.client.get_object, Key=self._key(key), **extra)["Body"]
        try:
            yield from body.iter_chunks(chunk)
        except BotoCoreError as exc:  # the connection broke mid-body (timeout, reset)
            raise StorageError(f"s3://{self.bucket}: reading {key}: {exc}") from None
        finally:
            body.close()

    def url(self, key: str, expires: int = 300) -> str | None:
        """A presigned GET, valid ``expires`` seconds: the client fetches from the store directly."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                                  ExpiresIn=expires)

    def upload_url(self, key: str, size: int, expires: int = 3600) -> str:
        """A presigned PUT of exactly ``size`` bytes (the length is a signed header: the store
        refuses any other), valid ``expires`` seconds (checked when the upload starts): the client
        sends the bytes to the store directly. Their content is not bounded: read it back before trusting it."""
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self._key(key), "ContentLength": size},
            ExpiresIn=expires, HttpMethod="PUT")

    def copy(self, src: str, dst: str) -> None:
        """A copy inside the store (the bytes never leave it; up to 5 GB, S3's CopyObject limit)."""
        self._call(f"copy {src}", self.client.copy_object, Key=self._key(dst),
                   CopySource={"Bucket": self.bucket, "Key": self._key(src)})


def open_storage(location: str | os.PathLike) -> LocalStorage | S3Storage:
    """``s3://BUCKET[/PREFIX]`` or a directory."""
    text = os.fspath(location)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise UsageError(f"bad storage location {text!r}; expected s3://BUCKET[/PREFIX]")
        return S3Storage(bucket, prefix)
    if "://" in text:
        raise UsageError(f"unsupported storage {text!r}; use s3://BUCKET/PREFIX or a directory")
    return LocalStorage(text)


#: concurrent GETs :func:`get_many` makes on a shared store (each is a network round trip)
GET_WORKERS = 16


def get_many(storage, keys: list[str]) -> dict[str, Object | None]:
    """``storage.get`` of every key: on S3 several at once (a hundred refs cost a few round trips,
    not a hundred), on a directory one after another (a read there costs no wait)."""
    if not getattr(storage, "shared", False) or len(keys) < 2:
        return {k: storage.get(k) for k in keys}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(GET_WORKERS, len(keys))) as pool:  # botocore clients are thread-safe
        return dict(zip(keys, pool.map(storage.get, keys)))


def update(storage, key: str, change: Callable[[bytes | None], bytes], attempts: int = 100) -> bytes:
    """Read-modify-write ``key`` with compare-and-swap, retrying lost races: ``change`` gets the
    current bytes (None if absent) and returns the new ones. Two servers updating the same ref
    never lose an update; after ``attempts`` lost races it gives up (the Hub answers 409 then)."""
    import random
    import time

    for attempt in range(attempts):
        current = storage.get(key)
        new = change(current.data if current else None)
        try:
            if current is None:
                storage.put(key, new, if_none_match=True)
            else:
                storage.put(key, new, if_match=current.etag)
            return new
        except PreconditionFailed:
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # back off a little, differently per writer
    raise PreconditionFailed(f"{key}: gave up after {attempts} lost races")


def json_update(storage, key: str, change: Callable[[dict | None], dict]) -> dict:
    """:func:`update` for JSON documents."""
    out = update(storage, key, lambda raw: json.dumps(change(json.loads(raw) if raw else None), sort_keys=True).encode())
    return json.loads(out)
