"""Deterministic safetensors and the bundled-weights converter (zoo/weights/safetensors_writer.py, zoo/weights/convert.py)."""

import hashlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import zoo
from zoo.weights.convert import ConversionError, convert_checkpoint, write_safetensors
from zoo.weights.sources import local_path
from zoo.cards.uri import parse_uri


def test_lite0_converts_to_the_same_bytes_twice_and_matches_the_pin(tmp_path):
    card = zoo.card("efficientnet_lite0")
    (src,) = card.sources
    raw = local_path(parse_uri(src.uri))
    shas = [convert_checkpoint(raw, src.converter, card.architecture, str(tmp_path / f"{i}.safetensors"),
                               source_uri=src.uri, source_sha256=src.sha256) for i in range(2)]
    assert shas[0] == shas[1] == card.sha256
    data = [(tmp_path / f"{i}.safetensors").read_bytes() for i in range(2)]
    assert data[0] == data[1] and hashlib.sha256(data[0]).hexdigest() == card.sha256
    assert len(data[0]) == card.size_bytes
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["zoo.source_sha256"] == src.sha256 and meta["zoo.converter"] == "efficientnet_lite_pth"
    # the tensors are the checkpoint's, in timm's names
    raw_sd = torch.load(raw, map_location="cpu", weights_only=True)
    ours = load_file(str(tmp_path / "0.safetensors"))
    assert torch.equal(ours["conv_stem.weight"], raw_sd["_conv_stem.weight"])
    assert torch.equal(ours["classifier.bias"], raw_sd["_fc.bias"])


def test_writer_round_trips_every_dtype_and_matches_safetensors_reader(tmp_path):
    tensors = {"f32": torch.randn(3, 4), "f16": torch.randn(5).half(), "bf16": torch.randn(2, 2).bfloat16(),
               "i64": torch.tensor(7), "u8": torch.arange(10, dtype=torch.uint8), "b": torch.tensor([True, False])}
    write_safetensors(tensors, str(tmp_path / "t.safetensors"), {"k": "v"})
    back = load_file(str(tmp_path / "t.safetensors"))
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t)
    header_len = int.from_bytes((tmp_path / "t.safetensors").read_bytes()[:8], "little")
    assert header_len % 8 == 0  # the header is padded so tensor data starts 8-byte aligned
    assert not list(tmp_path.glob("*.incomplete"))


def test_positional_mapping_checks_every_shape(tmp_path):
    card = zoo.card("efficientnet_lite1")
    raw = local_path(parse_uri(card.sources[0].uri))
    # lite1's tensors do not fit lite0 (same count, other shapes): refused, nothing written
    with pytest.raises(ConversionError, match="mismatch|tensors"):
        convert_checkpoint(raw, "efficientnet_lite_pth", "tf_efficientnet_lite0", str(tmp_path / "x.safetensors"))
    assert not list(tmp_path.iterdir())


def test_pickle_with_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ConversionError, match="weights-only"):
        convert_checkpoint(str(path), "timm_checkpoint", "test_efficientnet", str(tmp_path / "out.safetensors"))
