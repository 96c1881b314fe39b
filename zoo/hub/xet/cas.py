"""The hub's Xet store (its content-addressed storage, "CAS"), over the same storage as its repos:
the cache directory, or an S3 store that every server behind it shares.

Keys, all under ``xet/``:

- ``xorbs/<hash>``: a xorb's chunks as uploaded, once the server decompressed and hashed every chunk
  and the xorb hash matched; ``xorbs/<hash>.json``, written after it, is the server's own index of
  its chunks (hash, byte range, size). A xorb without its index does not exist.
- ``owners/<hash>``: the repos (``model:org/name``) whose writers sent the xorb, or whose files use it.
  The dedupe query answers only from xorbs a repo the caller may read owns: it never tells one user
  what another uploaded.
- ``dedupe/<chunk hash>``: the xorbs holding a chunk clients may ask about (hash 0 modulo 1024, or a
  file's first chunk), and the files that have it.
- ``files/<xet hash>``: a file's verified reconstruction (segments, size, sha256); ``sha256/<sha256>``
  names its Xet hash, so a download can offer Xet for exactly the files whose reconstruction is held.

A shard becomes files the way an LFS upload does: every segment's chunks are read back from stored
xorbs, the Xet file hash is recomputed from the server's chunk hashes, the bytes are hashed with
sha256 into ``blobs/<sha256>``, and only then may a commit of that repo name the sha256 as an LFS oid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Callable

from zoo.errors import CorruptBlobError, PreconditionFailed, RequestTooLarge, XetObjectError
from zoo.hub.xet import formats as fm
from zoo.hub.xet.formats import hash_hex
from zoo.store.objects import json_update

log = logging.getLogger(__name__)

#: how long a dedupe answer's shard (its keyed chunk hashes) may stay in a client's cache
DEDUPE_SHARD_LIFETIME = 7 * 24 * 3600
#: xorbs (and files) remembered per dedupe chunk; xorbs looked at and chunks answered per query
DEDUPE_KEPT, DEDUPE_CANDIDATES, DEDUPE_CHUNKS_ANSWERED = 16, 256, 64 * 1024
#: a shard may make the server read back this many times --max-upload-mb of files in all
SHARD_READ_BACK_FILES = 32
#: a shard (one commit's file list and new xorbs) over this is refused
MAX_SHARD_BYTES = 64 * 1024 * 1024
INDEX_CACHE = 512


class XorbIndex:
    """The server's index of one stored xorb: each chunk's hash, byte range and size."""

    __slots__ = ("hash", "key", "hashes", "starts", "ends", "sizes")

    def __init__(self, xorb: str, doc: dict):
        self.hash, self.key = xorb, doc["data"]  # the object holding the bytes this index describes
        self.hashes = [fm.hash_from_hex(h) for h in doc["hashes"]]
        self.starts, self.ends, self.sizes = doc["starts"], doc["ends"], doc["sizes"]

    def __len__(self) -> int:
        return len(self.hashes)

    def info(self) -> fm.XorbInfo:
        out, offset = fm.XorbInfo(fm.hash_from_hex(self.hash), stored_bytes=self.ends[-1]), 0
        for h, size in zip(self.hashes, self.sizes):
            out.chunks.append(fm.ChunkEntry(h, offset, size))
            offset += size
        return out


class XetStore:
    def __init__(self, storage, blobs, cache):
        self.storage, self.blobs, self.cache = storage, blobs, cache
        self._indexes: OrderedDict[str, XorbIndex] = OrderedDict()  # immutable once written: safe to keep
        self._lock = threading.Lock()
        self._xet_of: dict[str, str] = {}

    # --- xorbs --------------------------------------------------------------------------------

    @staticmethod
    def xorb_key(xorb: str) -> str:
        """The key of a xorb's index; its bytes are under the key the index names."""
        return f"xet/xorbs/{xorb}"

    def index(self, xorb: str) -> XorbIndex | None:
        with self._lock:
            found = self._indexes.get(xorb)
            if found is not None:
                self._indexes.move_to_end(xorb)
                return found
        obj = self.storage.get(self.xorb_key(xorb) + ".json") if fm.is_hash_hex(xorb) else None
        if obj is None:
            return None
        found = XorbIndex(xorb, json.loads(obj.data))
        with self._lock:
            self._indexes[xorb] = found
            while len(self._indexes) > INDEX_CACHE:
                self._indexes.popitem(last=False)
        return found

    def put_xorb(self, xorb: str, data: bytes, scope: str) -> bool:
        """Verify and store an uploaded xorb; True if it was new to this repo (whether the store held
        it for another is not for the caller to learn). The uploader's repo becomes one of its
        senders even when the store held it already: sending the bytes proves having them.

        Two uploads of one xorb may differ in bytes (another compression): each writes its bytes
        under a key of their own sha256 and the first index written (create-if-absent) wins, so an
        index never describes another upload's bytes."""
        if not fm.is_hash_hex(xorb):
            raise XetObjectError(f"{xorb!r} is not a xorb hash")
        chunks, used = fm.parse_xorb(data, f"xorb {xorb}")
        got = hash_hex(fm.merkle_root([(c.hash, c.size) for c in chunks]))
        if got != xorb:
            raise XetObjectError(f"the xorb's chunks hash to {got}, not to the {xorb} it was sent as")
        if self.index(xorb) is None:
            body = data[:used]
            key = f"{self.xorb_key(xorb)}.{hashlib.sha256(body).hexdigest()[:32]}"
            self.storage.put(key, body)
            try:
                self.storage.put(self.xorb_key(xorb) + ".json", json.dumps({
                    "data": key, "hashes": [hash_hex(c.hash) for c in chunks], "starts": [c.start for c in chunks],
                    "ends": [c.end for c in chunks], "sizes": [c.size for c in chunks]}).encode(), if_none_match=True)
            except PreconditionFailed:  # another upload of it won the race: its bytes are the ones indexed
                if self.index(xorb).key != key:
                    self.storage.delete(key)
        new = scope not in self.owners(xorb)["sent"]
        self._own(xorb, scope, sent=True)
        for c in chunks:
            if fm.dedupe_eligible(c.hash):
                self._remember_chunk(hash_hex(c.hash), xorb=xorb)
        return new

    def _own(self, xorb: str, scope: str, sent: bool) -> None:
        """Record ``scope`` as a repo that sent the xorb's bytes (``sent``), or whose files use it.
        Only a sender may name ranges of it without verification hashes: a repo that uses one
        range proved it knows that range, not the rest of the xorb."""
        field_, key = "sent" if sent else "used", f"xet/owners/{xorb}"
        current = self.storage.get(key)
        if current is not None and scope in json.loads(current.data).get(field_, []):
            return

        def add(doc):
            doc = {"sent": [], "used": [], **(doc or {})}
            doc[field_] = sorted({*doc[field_], scope})
            return doc
        json_update(self.storage, key, add)

    def owners(self, xorb: str) -> dict[str, list[str]]:
        """``{"sent": [...], "used": [...]}``: the repos that sent the xorb, and those whose files use it."""
        obj = self.storage.get(f"xet/owners/{xorb}")
        doc = json.loads(obj.data) if obj else {}
        return {"sent": doc.get("sent", []), "used": doc.get("used", [])}

    def readable(self, xorb: str, may_read: Callable[[str], bool]) -> bool:
        owners = self.owners(xorb)
        return any(may_read(scope) for scope in owners["sent"] + owners["used"])

    def _remember_chunk(self, chunk: str, xorb: str | None = None, file: str | None = None) -> None:
        """Let a dedupe query about ``chunk`` find the xorb that holds it, or a file that has it
        (the answer then describes all the file's xorbs: a client asks about one chunk in a
        thousand, so one hit must let it skip everything it shares with that file)."""
        field_, value = ("xorbs", xorb) if xorb else ("files", file)
        key = f"xet/dedupe/{chunk}"
        current = self.storage.get(key)
        if current is not None and value in json.loads(current.data).get(field_, []):
            return

        def add(doc):
            doc = dict(doc or {})
            doc[field_] = ([v for v in doc.get(field_, []) if v != value] + [value])[-DEDUPE_KEPT:]
            return doc
        json_update(self.storage, key, add)

    def read_chunks(self, index: XorbIndex, start: int, end: int):
        """The uncompressed bytes of chunks ``start..end`` (exclusive) of a stored xorb, one chunk at a time."""
        first, last = index.starts[start], index.ends[end - 1] - 1
        data = b"".join(self.storage.stream(index.key, start=first, end=last))
        if len(data) != last - first + 1:
            raise XetObjectError(f"xorb {index.hash}: the store returned {len(data)} of {last - first + 1} bytes")
        yield from fm.decode_chunks(data, end - start, f"xorb {index.hash}")

    # --- dedupe -------------------------------------------------------------------------------

    def dedupe_shard(self, chunk: str, may_read: Callable[[str], bool]) -> bytes | None:
        """The dedupe answer for a chunk: a shard describing the xorbs that hold it and those of the
        files that have it, each held by a repo the caller may read (at most
        :data:`DEDUPE_CHUNKS_ANSWERED` chunks, of at most :data:`DEDUPE_CANDIDATES` xorbs looked
        at), their chunk hashes keyed with a fresh key: a client can match only chunks it has.
        None when there is no such xorb."""
        obj = self.storage.get(f"xet/dedupe/{chunk}") if fm.is_hash_hex(chunk) else None
        if obj is None:
            return None
        doc = json.loads(obj.data)
        candidates = list(reversed(doc.get("xorbs", [])))  # the newest first
        for file in reversed(doc.get("files", [])):
            record = self.file_record(file)
            candidates += [seg[0] for seg in record["segments"]] if record else []
        infos, seen, chunks = [], set(), 0
        for xorb in dict.fromkeys(candidates):
            if len(seen) == DEDUPE_CANDIDATES:
                break
            seen.add(xorb)
            index = self.index(xorb)
            if index is None or chunks + len(index) > DEDUPE_CHUNKS_ANSWERED or not self.readable(xorb, may_read):
                continue
            infos.append(index.info())
            chunks += len(index)
        if not infos:
            return None
        return fm.serialize_shard([], infos, hmac_key=os.urandom(32), expiry=int(time.time()) + DEDUPE_SHARD_LIFETIME)

    # --- shards and files ---------------------------------------------------------------------

    def file_record(self, file_hash: str) -> dict | None:
        obj = self.storage.get(f"xet/files/{file_hash}") if fm.is_hash_hex(file_hash) else None
        return json.loads(obj.data) if obj else None

    def xet_hash_of(self, sha256: str) -> str | None:
        """The Xet hash of the blob ``sha256`` if the store holds its verified reconstruction."""
        found = self._xet_of.get(sha256)  # a verified mapping never changes: kept once found
        if found is None:
            obj = self.storage.get(f"xet/sha256/{sha256}")
            found = json.loads(obj.data)["xet"] if obj else None
            if found is not None:
                with self._lock:
                    self._xet_of[sha256] = found
                    while len(self._xet_of) > 65536:
                        self._xet_of.pop(next(iter(self._xet_of)))
        return found

    def accept_shard(self, data: bytes, scope: str, may_read: Callable[[str], bool],
                     mark_blob: Callable[[str], None], max_file: int) -> list[str]:
        """Turn an uploaded shard into blobs: the sha256 of each file it records, after checking every
        claim in it. No file is recorded, and the repo marked as holding none, unless every file
        checks out (a file read back before a later one failed stays an unreferenced blob, which
        ``zoo cache prune`` removes as it removes an LFS upload nobody committed).

        Bounded work: a file over ``max_file`` bytes is a 413, as an LFS upload over the limit is,
        and so are files that would make the server read back over :data:`SHARD_READ_BACK_FILES`
        times that in all (a few bytes of shard could otherwise name terabytes of one stored
        xorb); a file recorded twice is read once, and one whose reconstruction the store holds
        already (the same Xet hash: the same chunks, checked) is not read again."""
        shard = fm.parse_shard(data)
        for x in shard.xorbs:  # the xorbs this upload made: sent by this repo, and as the server indexed them
            xorb = hash_hex(x.hash)
            index = self.index(xorb)
            if index is None or scope not in self.owners(xorb)["sent"]:
                raise XetObjectError(f"the shard lists xorb {xorb}, which was not uploaded")
            if [(c.hash, c.size) for c in x.chunks] != list(zip(index.hashes, index.sizes)):
                raise XetObjectError(f"the shard's chunk list of xorb {xorb} is not the xorb's")
        files = list({f.hash: f for f in shard.files}.values())
        for f in files:
            if f.size > max_file:
                raise RequestTooLarge(f"file {hash_hex(f.hash)} of {f.size} bytes: over the {max_file} byte limit")
        checked = [self._check_file(f, scope, may_read) for f in files]
        known = {f.hash: self.file_record(hash_hex(f.hash)) for f in files}
        fresh = [f for f in files if not (known[f.hash] and self.blobs.has(known[f.hash]["sha256"], f.size))]
        if sum(f.size for f in fresh) > SHARD_READ_BACK_FILES * max_file:
            raise RequestTooLarge(f"the shard's files add up to {sum(f.size for f in fresh)} bytes: over "
                                  f"{SHARD_READ_BACK_FILES} times the {max_file} byte limit; upload them in several commits")
        sha256s, fresh_hashes = {}, {f.hash for f in fresh}
        for f, (used, _) in zip(files, checked):
            record = known[f.hash]
            if f.hash not in fresh_hashes:
                if f.sha256 is not None and f.sha256 != record["sha256"]:
                    raise XetObjectError(f"file {hash_hex(f.hash)}: the shard's sha256 for it is not its reconstruction's")
                sha256s[f.hash] = record["sha256"]
            else:
                sha256s[f.hash] = self._read_back(f, used)
        for f, (used, eligible) in zip(files, checked):
            name, sha256 = hash_hex(f.hash), sha256s[f.hash]
            self._record(f, sha256)
            mark_blob(sha256)
            for xorb in {hash_hex(s.xorb) for s in f.segments}:
                self._own(xorb, scope, sent=False)
            for chunk in eligible:
                self._remember_chunk(chunk, file=name)
        return [sha256s[f.hash] for f in files]

    def _check_file(self, f: fm.FileInfo, scope: str, may_read: Callable[[str], bool]
                    ) -> tuple[dict[bytes, XorbIndex], list[str]]:
        """Check every claim a file record makes; (the xorbs it uses, its chunks a dedupe query may name).
        A refusal never says what the server computed (a right file hash or sha256 would be an
        answer to someone guessing at ranges of a xorb they do not have)."""
        name = hash_hex(f.hash)
        used: dict[bytes, XorbIndex] = {}
        entries = []
        for n, seg in enumerate(f.segments):
            xorb = hash_hex(seg.xorb)
            index = used.get(seg.xorb) or self.index(xorb)
            owners = self.owners(xorb) if index is not None else {"sent": [], "used": []}
            sender = scope in owners["sent"]
            if index is None or not sender and not self.readable(xorb, may_read):
                # a xorb of repos the caller cannot read: as if absent (its existence is not for them)
                raise XetObjectError(f"file {name}: segment {n} names xorb {xorb}, which the store does not hold")
            if seg.end > len(index):
                raise XetObjectError(f"file {name}: segment {n} asks for chunks {seg.start}..{seg.end} of xorb "
                                     f"{xorb}, which has {len(index)}")
            if sum(index.sizes[seg.start:seg.end]) != seg.size:
                raise XetObjectError(f"file {name}: segment {n}'s size is not the size of its chunks")
            if seg.verification is not None and seg.verification != fm.range_hash(index.hashes[seg.start:seg.end]):
                raise XetObjectError(f"file {name}: segment {n}'s verification hash does not match xorb {xorb}'s chunks")
            if seg.verification is None and not sender:
                raise XetObjectError(f"file {name}: segment {n} reuses xorb {xorb} without a verification entry")
            used[seg.xorb] = index
            entries += zip(index.hashes[seg.start:seg.end], index.sizes[seg.start:seg.end])
        if fm.file_hash(entries) != f.hash:
            raise XetObjectError(f"file {name}: its segments' chunks do not hash to it")
        if f.sha256 is not None and not fm.is_hash_hex(f.sha256):
            raise XetObjectError(f"file {name}: bad sha256")
        eligible = [hash_hex(h) for i, (h, _) in enumerate(entries) if i == 0 or fm.dedupe_eligible(h)]
        return used, eligible

    def _read_back(self, f: fm.FileInfo, used: dict[bytes, XorbIndex]) -> str:
        """Read the file back from its xorbs into ``blobs/<sha256>`` (the store's too, on S3),
        hashing it on the way; its sha256. One file at a time: a temp file and its writer open."""
        name = hash_hex(f.hash)
        self.cache.ensure_space(f.size, f"rebuilding Xet file {name}")
        writer = self.cache.writer(f"xet-{name[:16]}")
        try:
            for seg in f.segments:
                for raw in self.read_chunks(used[seg.xorb], seg.start, seg.end):
                    writer.write(raw)
            try:
                sha256 = writer.commit(f.sha256, f.size)
            except CorruptBlobError:
                raise XetObjectError(f"file {name}: the shard's sha256 for it is not its reconstruction's") from None
        finally:
            if writer.path.exists():
                writer.discard()
        self.blobs.stored(sha256)
        return sha256

    def _record(self, f: fm.FileInfo, sha256: str) -> None:
        """Record a verified reconstruction (the first one of a Xet hash stays: any other is of the same chunks)."""
        name = hash_hex(f.hash)
        record = {"sha256": sha256, "size": f.size,
                  "segments": [[hash_hex(s.xorb), s.start, s.end, s.size] for s in f.segments]}
        for key, doc in ((f"xet/files/{name}", record), (f"xet/sha256/{sha256}", {"xet": name})):
            if self.storage.size(key) is None:
                try:
                    self.storage.put(key, json.dumps(doc).encode(), if_none_match=True)
                except PreconditionFailed:
                    pass
        log.info("xet: file %s verified: %d bytes, sha256 %s", name, f.size, sha256)

    def reconstruction(self, record: dict, wanted: tuple[int, int] | None,
                       url: Callable[[XorbIndex, int, int], str]) -> dict | None:
        """The v1 reconstruction answer for bytes ``wanted`` (inclusive; all by default) of a file:
        the chunk ranges of xorbs that cover them, and where to fetch each (``url(index, first
        byte, last byte)``: a URL good for that range only); None if the range starts past the end."""
        size = record["size"]
        a, b = wanted if wanted is not None else (0, size - 1)
        b = min(b, size - 1)
        if a >= size or a > b:
            return None
        terms, fetch, offset_first = [], {}, 0
        pos = 0
        for xorb, start, end, seg_size in record["segments"]:
            if pos + seg_size <= a:
                pos += seg_size
                continue
            if pos > b:
                break
            index = self.index(xorb)
            if index is None:
                raise XetObjectError(f"xorb {xorb} of this file is missing from the store")
            first = last = None
            cpos = pos
            for k in range(start, end):
                cend = cpos + index.sizes[k]
                if cend > a and cpos <= b:
                    if first is None:
                        first, first_pos = k, cpos
                    last = k
                cpos = cend
            if not terms:
                offset_first = a - first_pos
            rng = {"start": first, "end": last + 1}
            terms.append({"hash": xorb, "unpacked_length": sum(index.sizes[first:last + 1]), "range": rng})
            byte_range = {"start": index.starts[first], "end": index.ends[last] - 1}
            entry = {"range": rng, "url": url(index, byte_range["start"], byte_range["end"]), "url_range": byte_range}
            if entry not in fetch.setdefault(xorb, []):
                fetch[xorb].append(entry)
            pos += seg_size
        return {"offset_into_first_range": offset_first, "terms": terms, "fetch_info": fetch}
