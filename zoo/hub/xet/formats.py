"""Xet's byte formats, as the specification and hf_xet define them: hashes, xorbs and shards.

A hash is 32 bytes, printed as four little-endian 64-bit words in hex (so its hex is not the hex of
its bytes); :func:`hash_hex` and :func:`hash_from_hex` convert. Chunk hashes are blake3 keyed with
:data:`DATA_KEY`; a xorb's hash and a file's are the root of the aggregated tree over their chunks'
``(hash, size)`` (a file's then keyed again, with zeros); a verification entry is blake3 keyed with
:data:`VERIFICATION_KEY` over a segment's chunk hashes. The server computes every one of these itself
from the bytes it received: nothing a client claims is stored before it is checked.

A xorb arrives as chunks, each an 8-byte header (version, compressed length, scheme, uncompressed
length) and its bytes: stored as they are (scheme 0), as an LZ4 frame (1), or byte-grouped by 4 and
then LZ4 (2, for float tensors). A shard is a header, file-info blocks (segments of xorb chunk
ranges, verification hashes, the file's sha256), xorb-info blocks (each chunk's hash and offsets)
and, when the server writes one, lookup tables and a footer.
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass, field

import blake3
import lz4.frame
import numpy as np

from zoo.errors import XetObjectError

DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16,
                  155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41])
INTERNAL_NODE_KEY = bytes([1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83,
                           111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63])
VERIFICATION_KEY = bytes([127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243, 164, 205, 38,
                          213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195])
ZERO = bytes(32)
BOOKEND = b"\xff" * 32
SHARD_TAG = b"HFRepoMetaData\x00" + bytes([85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209,
                                              74, 169])
SHARD_HEADER_VERSION, SHARD_FOOTER_VERSION = 2, 1
ENTRY = 48  # every shard record is 48 bytes
FOOTER_SIZE = 200
XORB_IDENT = b"XETBLOB"

MAX_CHUNK = 128 * 1024  # bytes of one chunk, uncompressed
MAX_XORB_CHUNKS = 8 * 1024
MAX_XORB_DATA = 64 * 1024 * 1024  # uncompressed bytes of one xorb
MAX_XORB_BYTES = MAX_XORB_DATA + MAX_XORB_CHUNKS * 8  # its chunks as sent, headers included
#: a chunk whose hash is 0 modulo this is one the dedupe query may be asked about
GLOBAL_DEDUP_MODULUS = 1024
FLAG_VERIFICATION, FLAG_METADATA_EXT = 1 << 31, 1 << 30
CHUNK_GLOBAL_DEDUP_FLAG = 1 << 31

_HEX = re.compile(r"^[0-9a-f]{64}\Z")


def hash_hex(h: bytes) -> str:
    return "".join(f"{int.from_bytes(h[i:i + 8], 'little'):016x}" for i in range(0, 32, 8))


def hash_from_hex(text: str) -> bytes:
    if not _HEX.match(text or ""):
        raise XetObjectError(f"{text!r} is not a Xet hash (64 lowercase hex digits)")
    return b"".join(int(text[i:i + 16], 16).to_bytes(8, "little") for i in range(0, 64, 16))


def is_hash_hex(text: str) -> bool:
    return bool(_HEX.match(text or ""))


def chunk_hash(data: bytes) -> bytes:
    return blake3.blake3(data, key=DATA_KEY).digest()


def _last_word(h: bytes) -> int:
    return int.from_bytes(h[24:32], "little")


def dedupe_eligible(h: bytes) -> bool:
    """Whether clients may ask the dedupe query about this chunk (besides a file's first chunk)."""
    return _last_word(h) % GLOBAL_DEDUP_MODULUS == 0


def _merge(entries: list[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{hash_hex(h)} : {size}\n" for h, size in entries)
    return blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(size for _, size in entries)


def _next_cut(level: list[tuple[bytes, int]], start: int) -> int:
    """How many nodes from ``start`` merge into one parent: 2 to 9, cut after a hash 0 modulo 4."""
    left = len(level) - start
    if left <= 2:
        return left
    end = min(9, left)
    for i in range(2, end):
        if _last_word(level[start + i][0]) % 4 == 0:
            return i + 1
    return end


def merkle_root(entries: list[tuple[bytes, int]]) -> bytes:
    """The aggregated hash tree's root over ``(chunk hash, size)``: a xorb's hash."""
    if not entries:
        return ZERO
    level = list(entries)
    while len(level) > 1:
        out, i = [], 0
        while i < len(level):
            cut = i + _next_cut(level, i)
            out.append(_merge(level[i:cut]))
            i = cut
        level = out
    return level[0][0]


def file_hash(entries: list[tuple[bytes, int]]) -> bytes:
    """A file's Xet hash: the tree root over all its chunks, keyed again with zeros."""
    if not entries:
        return ZERO
    return blake3.blake3(merkle_root(entries), key=ZERO).digest()


def range_hash(chunk_hashes: list[bytes]) -> bytes:
    """A verification entry: proves the uploader knew the chunks of a segment it did not send."""
    return blake3.blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()


def keyed(h: bytes, key: bytes) -> bytes:
    """A chunk hash as a dedupe answer shows it: only a client holding the chunk can match it."""
    return blake3.blake3(h, key=key).digest()


# --- xorbs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One chunk of a stored xorb: its bytes are ``start..end`` (header included), ``size`` uncompressed."""

    start: int
    end: int
    size: int
    hash: bytes


def _lz4(payload: bytes, size: int, where: str) -> bytes:
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        out = d.decompress(payload, max_length=size + 1)  # a bomb stops here, not after a gigabyte
    except RuntimeError as exc:
        raise XetObjectError(f"{where}: not an LZ4 frame ({exc})") from None
    if not d.eof or len(out) != size:
        raise XetObjectError(f"{where}: the LZ4 frame holds {len(out)}{'+' if not d.eof else ''} bytes, "
                             f"its header says {size}")
    if d.unused_data:  # hf_xet's decoder reads on past the frame and fails: every download would
        raise XetObjectError(f"{where}: {len(d.unused_data)} bytes after the LZ4 frame")
    return out


def regroup4(grouped: bytes) -> bytes:
    """Undo byte grouping by 4: the first quarter holds every 4th byte from 0, and so on."""
    a = np.frombuffer(grouped, np.uint8)
    n, out, pos = len(a), np.empty(len(a), np.uint8), 0
    for k in range(4):
        count = (n - k + 3) // 4
        out[k::4] = a[pos:pos + count]
        pos += count
    return out.tobytes()


def group4(data: bytes) -> bytes:
    a = np.frombuffer(data, np.uint8)
    return b"".join(a[k::4].tobytes() for k in range(4))


def decode_chunk(scheme: int, payload: bytes, size: int, where: str) -> bytes:
    if scheme == 0:
        if len(payload) != size:
            raise XetObjectError(f"{where}: stored chunk of {len(payload)} bytes, its header says {size}")
        return payload
    if scheme == 1:
        return _lz4(payload, size, where)
    if scheme == 2:
        return regroup4(_lz4(payload, size, where))
    raise XetObjectError(f"{where}: unknown compression scheme {scheme}")


def chunk_header(data: bytes, pos: int, where: str) -> tuple[int, int, int]:
    """(scheme, compressed length, uncompressed length) of the chunk header at ``pos``."""
    if len(data) - pos < 8:
        raise XetObjectError(f"{where}: truncated: {len(data) - pos} bytes where a chunk header (8) starts")
    version, scheme = data[pos], data[pos + 4]
    clen = int.from_bytes(data[pos + 1:pos + 4], "little")
    ulen = int.from_bytes(data[pos + 5:pos + 8], "little")
    if version != 0:
        raise XetObjectError(f"{where}: chunk header version {version} at byte {pos} (this server reads 0)")
    if ulen > MAX_CHUNK or clen > 2 * MAX_CHUNK or ulen == 0:
        raise XetObjectError(f"{where}: a chunk of {ulen} bytes ({clen} compressed) at byte {pos}: "
                             f"chunks hold 1 to {MAX_CHUNK} bytes")
    if pos + 8 + clen > len(data):
        raise XetObjectError(f"{where}: truncated: the chunk at byte {pos} needs {clen} bytes, "
                             f"{len(data) - pos - 8} are left")
    return scheme, clen, ulen


def parse_xorb(data: bytes, where: str = "xorb") -> tuple[list[Chunk], int]:
    """Every chunk of an uploaded xorb, decompressed and hashed; and how many bytes are chunks (a
    footer, if the client sent one, is not kept: the server's own index replaces it)."""
    chunks: list[Chunk] = []
    pos = total = 0
    while pos < len(data):
        if data[pos:pos + len(XORB_IDENT)] == XORB_IDENT:
            break
        scheme, clen, ulen = chunk_header(data, pos, where)
        total += ulen
        if total > MAX_XORB_DATA:  # a megabyte of LZ4 would otherwise cost a gigabyte of work
            raise XetObjectError(f"{where}: over {MAX_XORB_DATA} bytes uncompressed")
        raw = decode_chunk(scheme, data[pos + 8:pos + 8 + clen], ulen, f"{where}, chunk {len(chunks)}")
        chunks.append(Chunk(pos, pos + 8 + clen, ulen, chunk_hash(raw)))
        pos += 8 + clen
        if len(chunks) > MAX_XORB_CHUNKS:
            raise XetObjectError(f"{where}: over {MAX_XORB_CHUNKS} chunks")
    if not chunks:
        raise XetObjectError(f"{where}: no chunks")
    return chunks, pos


def decode_chunks(data: bytes, count: int, where: str = "xorb range"):
    """The uncompressed bytes of ``count`` consecutive chunks at the start of ``data``."""
    pos = 0
    for i in range(count):
        scheme, clen, ulen = chunk_header(data, pos, where)
        yield decode_chunk(scheme, data[pos + 8:pos + 8 + clen], ulen, f"{where}, chunk {i}")
        pos += 8 + clen


def serialize_xorb(chunks: list[bytes], scheme: int = 1) -> bytes:
    """A xorb as a client sends it (no footer): for tests and benchmarks, and the server never
    needs it. Scheme 1 is LZ4, 2 byte-grouped LZ4, 0 stored; a chunk LZ4 cannot shrink is stored."""
    out = bytearray()
    for raw in chunks:
        body = raw if scheme == 0 else lz4.frame.compress(group4(raw) if scheme == 2 else raw)
        used = scheme if scheme and len(body) < len(raw) else 0
        body = body if used else raw
        out += bytes([0]) + len(body).to_bytes(3, "little") + bytes([used]) + len(raw).to_bytes(3, "little") + body
    return bytes(out)


# --- shards -----------------------------------------------------------------------------------


@dataclass
class Segment:
    xorb: bytes
    size: int  # uncompressed bytes of chunks start..end
    start: int
    end: int  # exclusive
    verification: bytes | None = None


@dataclass
class FileInfo:
    hash: bytes
    segments: list[Segment]
    sha256: str | None = None

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)


@dataclass
class ChunkEntry:
    hash: bytes
    start: int  # offset of its first byte in the xorb's uncompressed data
    size: int
    flags: int = 0


@dataclass
class XorbInfo:
    hash: bytes
    chunks: list[ChunkEntry] = field(default_factory=list)
    stored_bytes: int = 0  # bytes of the serialized xorb (headers included)

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)


@dataclass
class Shard:
    files: list[FileInfo]
    xorbs: list[XorbInfo]


def _take(data: bytes, pos: int, what: str) -> bytes:
    if pos + ENTRY > len(data):
        raise XetObjectError(f"shard truncated: {what} at byte {pos} needs {ENTRY} bytes, {len(data) - pos} are left")
    return data[pos:pos + ENTRY]


def parse_shard(data: bytes) -> Shard:
    """The file and xorb records of an uploaded shard; its lookup tables and footer (if any) are
    ignored: the server builds its own from what it verified."""
    if len(data) < 48 or data[:32] != SHARD_TAG:
        raise XetObjectError("not a Xet shard (its first 32 bytes are not the shard tag)")
    version = struct.unpack_from("<Q", data, 32)[0]
    if version != SHARD_HEADER_VERSION:
        raise XetObjectError(f"shard header version {version} (this server reads {SHARD_HEADER_VERSION})")
    pos, files, xorbs = 48, [], []
    while True:
        head = _take(data, pos, "a file record")
        pos += ENTRY
        if head[:32] == BOOKEND:
            break
        flags, n = struct.unpack_from("<II", head, 32)
        if n == 0 or pos + n * ENTRY > len(data):
            raise XetObjectError(f"shard: file {hash_hex(head[:32])} has {n} segments, which the shard cannot hold")
        segments = []
        for _ in range(n):
            e = _take(data, pos, "a file segment")
            pos += ENTRY
            _, size, start, end = struct.unpack_from("<IIII", e, 32)
            if end <= start:
                raise XetObjectError(f"shard: a segment of file {hash_hex(head[:32])} has chunk range {start}..{end}")
            segments.append(Segment(e[:32], size, start, end))
        if flags & FLAG_VERIFICATION:
            for seg in segments:
                seg.verification = _take(data, pos, "a verification entry")[:32]
                pos += ENTRY
        sha256 = None
        if flags & FLAG_METADATA_EXT:
            sha256 = hash_hex(_take(data, pos, "a file's sha256")[:32])
            pos += ENTRY
        files.append(FileInfo(head[:32], segments, sha256))
    while True:
        head = _take(data, pos, "a xorb record")
        pos += ENTRY
        if head[:32] == BOOKEND:
            break
        _, n, _, on_disk = struct.unpack_from("<IIII", head, 32)
        if pos + n * ENTRY > len(data):
            raise XetObjectError(f"shard: xorb {hash_hex(head[:32])} lists {n} chunks, which the shard cannot hold")
        info = XorbInfo(head[:32], stored_bytes=on_disk)
        for _ in range(n):
            e = _take(data, pos, "a chunk record")
            pos += ENTRY
            start, size, flags, _ = struct.unpack_from("<IIII", e, 32)
            info.chunks.append(ChunkEntry(e[:32], start, size, flags))
        xorbs.append(info)
    return Shard(files, xorbs)


def _words(h: bytes) -> tuple[int, ...]:
    """A hash's sort key as xet orders them (its 64-bit words, first word first)."""
    return struct.unpack("<4Q", h)


def serialize_shard(files: list[FileInfo], xorbs: list[XorbInfo], hmac_key: bytes = ZERO,
                    expiry: int | None = None, footer: bool = True) -> bytes:
    """A shard: what the dedupe query answers (``footer=True``, chunk hashes keyed with
    ``hmac_key``, the lookup tables the client searches), or what a client uploads (no footer)."""
    out = bytearray(SHARD_TAG + struct.pack("<QQ", SHARD_HEADER_VERSION, FOOTER_SIZE))
    file_offset = len(out)
    file_lookup = []
    index = 0
    for f in sorted(files, key=lambda f: _words(f.hash)) if footer else files:
        file_lookup.append((f.hash[:8], index))
        flags = (FLAG_VERIFICATION if all(s.verification for s in f.segments) else 0) | \
            (FLAG_METADATA_EXT if f.sha256 else 0)
        out += f.hash + struct.pack("<IIQ", flags, len(f.segments), 0)
        for s in f.segments:
            out += s.xorb + struct.pack("<IIII", 0, s.size, s.start, s.end)
        if flags & FLAG_VERIFICATION:
            for s in f.segments:
                out += s.verification + bytes(16)
        if f.sha256:
            out += hash_from_hex(f.sha256) + bytes(16)
        index += (len(out) - file_offset) // ENTRY - index
    out += BOOKEND + bytes(16)
    xorb_offset = len(out)
    xorb_lookup, chunk_lookup = [], []
    index = 0
    for x in sorted(xorbs, key=lambda x: _words(x.hash)) if footer else xorbs:
        xorb_lookup.append((x.hash[:8], index))
        out += x.hash + struct.pack("<IIII", 0, len(x.chunks), x.size, x.stored_bytes)
        for i, c in enumerate(x.chunks):
            h = keyed(c.hash, hmac_key) if hmac_key != ZERO else c.hash
            out += h + struct.pack("<IIII", c.start, c.size, c.flags, 0)
            chunk_lookup.append((h[:8], index, i))
        index += 1 + len(x.chunks)
    out += BOOKEND + bytes(16)
    if not footer:
        return bytes(out)
    tables = {}
    tables["file"] = len(out)
    for key, i in file_lookup:
        out += key + struct.pack("<I", i)
    tables["xorb"] = len(out)
    for key, i in xorb_lookup:
        out += key + struct.pack("<I", i)
    tables["chunk"] = len(out)
    for key, i, j in sorted(chunk_lookup, key=lambda t: struct.unpack("<Q", t[0])[0]):
        out += key + struct.pack("<II", i, j)
    footer_offset = len(out)
    stored = sum(x.size for x in xorbs)
    out += struct.pack("<9Q", SHARD_FOOTER_VERSION, file_offset, xorb_offset, tables["file"], len(file_lookup),
                       tables["xorb"], len(xorb_lookup), tables["chunk"], len(chunk_lookup))
    out += hmac_key
    out += struct.pack("<2Q", int(time.time()), expiry if expiry is not None else 2 ** 64 - 1)
    out += bytes(48)
    out += struct.pack("<4Q", sum(x.stored_bytes for x in xorbs), sum(f.size for f in files), stored, footer_offset)
    return bytes(out)
