"""The deterministic safetensors writer: the same tensors and metadata give the same bytes, always.

A file's sha256 is its identity in zoo (a converted checkpoint's card pins it; a run's card records
its head's), so it must not depend on the safetensors release, which does not promise a byte-stable
header. The format is 8 bytes of header length, a JSON header (``__metadata__`` first, then tensors
in the order given, compact separators, padded with spaces to 8 bytes), then the raw little-endian
tensor bytes; safetensors reads it back (tests/weights/test_convert.py). A :class:`Chunked` tensor is
streamed, so a feature file larger than memory can be written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from typing import Any, Mapping

from zoo.errors import ConversionError
from zoo.util.tempfiles import temp_beside

#: torch dtype name -> safetensors dtype code
_DTYPES = {
    "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class Chunked:
    """A tensor too large to hold at once: its safetensors dtype name (``"F32"``), shape, and an
    iterable of raw little-endian byte chunks in row-major order (streamed by write_safetensors)."""

    def __init__(self, dtype: str, shape: list[int], chunks: Any):
        self.dtype, self.shape, self.chunks = dtype, list(shape), chunks
        self.nbytes = _ITEMSIZE[dtype] * math.prod(self.shape)


def write_safetensors(tensors: Mapping[str, Any], path: str, metadata: Mapping[str, str] | None = None) -> str:
    """Write ``tensors`` (name -> torch tensor or :class:`Chunked`, in the order given) as
    safetensors; return the sha256.

    Byte-for-byte deterministic for the same tensors and metadata. Writes a temp file beside
    ``path`` and renames it into place, so ``path`` never holds a half-written file. A
    :class:`Chunked` entry is streamed, so a file larger than memory can be written.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs: list[Any] = []
    offset = 0
    for name, tensor in tensors.items():
        if isinstance(tensor, Chunked):
            code, shape, size, data = tensor.dtype, tensor.shape, tensor.nbytes, tensor
        else:
            dtype = str(tensor.dtype).removeprefix("torch.")
            if dtype not in _DTYPES:
                raise ConversionError(f"tensor {name!r} has dtype {dtype}, which safetensors cannot store here")
            data = _raw_bytes(tensor)
            code, shape, size = _DTYPES[dtype], list(tensor.shape), len(data)
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + size]}
        blobs.append(data)
        offset += size
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    head += b" " * (-len(head) % 8)
    digest = hashlib.sha256()
    tmp = str(temp_beside(path, "incomplete"))
    try:
        with open(tmp, "wb") as fh:
            for blob in (struct.pack("<Q", len(head)), head, *blobs):
                written = 0
                for piece in (blob.chunks if isinstance(blob, Chunked) else (blob,)):
                    fh.write(piece)
                    digest.update(piece)
                    written += len(piece)
                if isinstance(blob, Chunked) and written != blob.nbytes:
                    raise ConversionError(f"a streamed tensor gave {written} bytes, its shape needs {blob.nbytes}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest.hexdigest()


def _raw_bytes(tensor: Any) -> bytes:
    """The tensor's bytes, row-major, in this machine's (little-endian) order; any dtype, 0-d too."""
    import torch  # lazy: the weights stage never loads torch before a tensor is written

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()
