"""A process-unique temp file in the cache that hashes what is written while it is written.

Split from zoo/weights/cache.py (which owns the layout) because it is the one piece with a thread:
the download loop hands chunks over and a worker writes and hashes them, both releasing the GIL. It
knows the cache only through what it calls (``blobs``, ``temp_blob``, ``commit_file``), so the cache
can import it and not the other way round.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import queue
import shutil
import threading
from pathlib import Path

from zoo.errors import CacheError, CorruptBlobError
from zoo.util.tempfiles import abandoned


class BlobWriter:
    """A process-unique temp file in ``blobs/`` that hashes while it writes; :meth:`commit` renames
    it to ``blobs/<sha256>`` only when the hash matches.

    Writing and hashing run in a worker thread (both release the GIL), so the caller's network
    reads overlap them: the download loop only hands chunks over. With ``resume=True`` a partial
    file left by a dead process under the same key is adopted (its bytes are re-hashed first) and
    :attr:`offset` says where to continue, e.g. with an HTTP ``Range`` request.
    """

    _DONE = object()

    def __init__(self, cache, key: str, resume: bool = False):
        self.cache, self.key = cache, key
        cache.blobs.mkdir(parents=True, exist_ok=True)
        # host + pid + random: no other writer (thread, process, or host on a shared file system
        # whose locks are broken) ever appends to this file
        self.path = cache.temp_blob(key)
        if resume:
            self._adopt(key)
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self._fh = open(self.path, "ab")
        self._digest = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="zoo-blob-writer", daemon=True)
        if self.offset:
            with open(self.path, "rb") as fh:
                while chunk := fh.read(8 << 20):
                    self._digest.update(chunk)
        self._thread.start()

    def _adopt(self, key: str) -> None:
        leftovers = [Path(p) for p in glob.glob(str(self.cache.blobs / f".incomplete-{glob.escape(key)}.*"))]
        # only a dead writer's file: one still being written (here or on another host) is left alone
        leftovers = [p for p in leftovers if p != self.path and abandoned(p)]

        def size(p: Path) -> int:
            try:
                return p.stat().st_size
            except FileNotFoundError:  # another writer adopted or removed it meanwhile
                return -1

        for best in sorted(leftovers, key=size, reverse=True):  # the longest partial saves the most
            try:
                os.replace(best, self.path)
                os.utime(self.path)  # ours now: fresh, so no other host takes it for abandoned
            except FileNotFoundError:
                continue
            leftovers.remove(best)
            break
        for p in leftovers:
            p.unlink(missing_ok=True)

    def _drain(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is self._DONE:
                return
            if self._error is None:
                try:
                    self._fh.write(chunk)
                    self._digest.update(chunk)
                except BaseException as exc:  # reported by commit()
                    self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            self._fail()
        self._queue.put(chunk)
        self.offset += len(chunk)

    def _fail(self):
        """The write failed (a full disk, an I/O error): the temp file goes, and the error says
        where, how far it got, and what to do."""
        self._finish()
        written = self.path.stat().st_size if self.path.exists() else 0
        self.path.unlink(missing_ok=True)
        exc = self._error
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            free = shutil.disk_usage(self.path.parent).free
            raise CacheError(f"no space left writing {self.path} after {written} of at least {self.offset} bytes "
                             f"({free} bytes free there); the partial file was removed. Free some space "
                             "(zoo cache prune) or set ZOO_HOME elsewhere") from None
        raise CacheError(f"writing {self.path} failed after {written} bytes: {exc}; the partial file was removed") from None

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(self._DONE)
            self._thread.join()
            try:
                self._fh.close()  # the last buffered bytes reach the disk here: it can fail too
            except OSError as exc:
                self._error = self._error or exc

    def restart(self) -> None:
        """Drop what was written (the server ignored a Range request and sends everything)."""
        self._finish()
        self.path.unlink(missing_ok=True)
        self.__init__(self.cache, self.key)

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None, mode: int = 0o444,
               keep_short: bool = False) -> str:
        """Finish writing; rename into ``blobs/<sha256>`` (read-only, ``mode``) if the hash (and
        size) match, else raise. ``keep_short``: when the size was not known, a mismatch may be a
        body cut short, so the partial stays for the next pull to resume (a source whose file is
        no longer answers 416, and that pull starts again from byte 0)."""
        self._finish()
        if self._error is not None:
            self._fail()
        actual = self._digest.hexdigest()
        size = self.path.stat().st_size
        if expected_size is not None and size != expected_size:
            self.path.unlink(missing_ok=True)
            what = "an empty body" if size == 0 else f"a short body ({size} of {expected_size} bytes)"
            raise CorruptBlobError(f"got {what}, not the whole file")
        if expected_sha256 and actual != expected_sha256:
            if keep_short and expected_size is None:
                raise CorruptBlobError(f"sha256 mismatch: expected {expected_sha256}, got {actual} after {size} bytes "
                                       "(the size is not known, so the body may have been cut short); the bytes "
                                       "are kept and the next pull resumes from there")
            self.path.unlink(missing_ok=True)
            raise CorruptBlobError(f"sha256 mismatch: expected {expected_sha256}, got {actual} ({size} bytes)")
        self.cache.commit_file(self.path, actual, mode)
        return actual

    def discard(self, keep_partial: bool = False) -> None:
        """Give up; keep the partial bytes for a later resume (unless a write failed: then they are
        not known to be what was sent), or delete them."""
        self._finish()
        if not keep_partial or self._error is not None:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:  # neither committed nor explicitly discarded: nothing is kept
            self.discard(keep_partial=False)
