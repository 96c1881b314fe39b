"""Bundles from outside, tried as an attacker would: every field that becomes a path, every tar
member, every card is checked before anything is read into or written to the cache, and a refused
import leaves the cache byte-identical and nothing outside it."""

import hashlib
import io
import json
import os
import tarfile

import pytest

import zoo
from zoo.errors import BundleError
from zoo.weights.bundle_export import export_bundle
from zoo.weights.bundle_manifest import MANIFEST
from zoo.weights.bundles import import_bundle

from conftest import tiny_card, write_toml


def snapshot(root) -> dict:
    """Every file and link under ``root``: path -> sha256 of its bytes, or the link's target (the
    card index, a cache of the card files that any lookup may rebuild, aside)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (dirpath == str(root) and d == "index")]
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                out[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A genuine directory bundle of lite0 (from a sender's home); the test then imports into a
    receiver's home that already holds something, so "unchanged" means something."""
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "sender"))
    zoo.pull("efficientnet_lite0")
    path = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"]).path
    receiver = tmp_path / "receiver"
    monkeypatch.setenv("ZOO_HOME", str(receiver))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    (receiver / "models").mkdir(parents=True)
    (receiver / "models" / "keep.json").write_text("{}")
    return path


def _edit_manifest(bundle, **changes):
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["models"][0].update(changes)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("filename, why", [
    ("../../../../outside/pwned.safetensors", "'..' part"),
    ("/tmp/zoo-test-absolute-pwned", "absolute"),
    ("a\\..\\..\\pwned", "backslash"),
    ("model\0.safetensors", "NUL"),
    ("dir//model.safetensors", "empty part"),
])
def test_a_manifest_filename_that_leaves_its_directory_is_refused_before_anything_is_written(
        bundle, tmp_path, filename, why):
    _edit_manifest(bundle, filename=filename)
    before = snapshot(tmp_path / "receiver")
    with pytest.raises(BundleError, match=f"filename .* is not a safe relative path: .*{why}"):
        import_bundle(bundle, hf_cache=True)
    assert snapshot(tmp_path / "receiver") == before
    assert not (tmp_path / "hf").exists() and not (tmp_path / "outside").exists()
    assert not os.path.lexists("/tmp/zoo-test-absolute-pwned")


@pytest.mark.parametrize("field, value", [("name", "../x"), ("sha256", "../" * 21 + "a"), ("revision", "../../main"),
                                          ("hub_repo", "../../etc"), ("size", -1)])
def test_every_manifest_field_that_becomes_a_path_or_a_name_is_checked(bundle, tmp_path, field, value):
    _edit_manifest(bundle, **{field: value})
    before = snapshot(tmp_path / "receiver")
    with pytest.raises(BundleError, match=f"{field} .* is not"):
        import_bundle(bundle)
    assert snapshot(tmp_path / "receiver") == before


def _tar_with(bundle, tmp_path, add):
    """The genuine bundle as a .tar, plus whatever ``add(tar)`` puts in it."""
    out = tmp_path / "hostile.tar"
    with tarfile.open(out, "w") as tf:
        for path in sorted(bundle.rglob("*")):
            tf.add(path, arcname=str(path.relative_to(bundle)), recursive=False)
        add(tf)
    return out


def _member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("name, kind, link, why", [
    ("../escaped.txt", tarfile.REGTYPE, "", "'..' part"),
    ("/tmp/zoo-test-tar-absolute", tarfile.REGTYPE, "", "absolute"),
    ("blobs/link", tarfile.SYMTYPE, "/etc/passwd", "a link"),
    ("blobs/hard", tarfile.LNKTYPE, "manifest.json", "a link"),
    ("blobs/fifo", tarfile.FIFOTYPE, "", "a device or fifo"),
    ("elsewhere/x", tarfile.REGTYPE, "", "outside blobs/"),
])
def test_a_tar_member_outside_the_bundle_a_link_or_a_device_is_refused_by_name(bundle, tmp_path, name, kind, link, why):
    hostile = _tar_with(bundle, tmp_path, lambda tf: tf.addfile(*_member(name, kind, link=link)))
    before = snapshot(tmp_path / "receiver")
    with pytest.raises(BundleError) as info:
        import_bundle(hostile)
    assert f"member {name!r} is refused (" in str(info.value) and why in str(info.value)
    assert "nothing was imported" in str(info.value)
    assert snapshot(tmp_path / "receiver") == before
    assert not (tmp_path / "escaped.txt").exists() and not os.path.lexists("/tmp/zoo-test-tar-absolute")
    r_home = tmp_path / "receiver"
    assert not [p for p in os.listdir(r_home) if p.startswith(".bundle")]  # no staging left behind


def test_a_bundle_card_that_takes_a_name_is_refused_naming_both_cards(bundle, tmp_path, monkeypatch, user_cards,
                                                                      tiny_weights):
    # a sender's own card, edited in the bundle to list the architecture name resnet50 as an alias:
    # imported, it would make zoo.load("resnet50") load this bundle's weights
    write_toml(user_cards / "t.toml", tiny_card("zootest_tiny.a", sources=[{"uri": str(tiny_weights)}]))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "sender2"))
    zoo.pull("zootest_tiny.a")
    evil = export_bundle(tmp_path / "evil", ["zootest_tiny.a"]).path
    card_file = evil / "cards" / "zootest_tiny.a.toml"
    text = card_file.read_text()
    assert "aliases = []" in text
    card_file.write_text(text.replace("aliases = []", 'aliases = ["resnet50"]'))
    monkeypatch.delenv("ZOO_CARDS_PATH")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "receiver"))
    before = snapshot(tmp_path / "receiver")
    with pytest.raises(BundleError) as info:
        import_bundle(evil)
    message = str(info.value)
    assert "zootest_tiny.a is refused" in message and "'resnet50' belongs to resnet50.a1_in1k" in message
    assert snapshot(tmp_path / "receiver") == before and zoo.card("resnet50").name == "resnet50.a1_in1k"
    # an invalid card never enters ZOO_HOME/cards (where it would break every command)
    assert "\ncrop_pct = 0.875\n" in text
    card_file.write_text(text.replace("\ncrop_pct = 0.875\n", "\ncrop_pct = 7\n"))
    with pytest.raises(BundleError, match="card for zootest_tiny.a is invalid .*crop_pct"):
        import_bundle(evil)
    assert snapshot(tmp_path / "receiver") == before


def test_a_manifest_nested_too_deeply_is_a_bundle_error(bundle):
    (bundle / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="nested too deeply"):
        import_bundle(bundle)


def test_a_re_pointed_view_never_makes_a_load_read_other_bytes(tmp_path, monkeypatch, capsys):
    """timm reads ``views/<sha>.safetensors``; pointing it at other weights must not change what
    zoo.load loads, and zoo verify reports it (exit 1) until --repair makes it again."""
    import torch
    from safetensors.torch import load_file, save_file

    from conftest import zoo_cli
    from zoo.weights.cache import Cache

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    blob = zoo.pull("efficientnet_lite0")
    sha = blob.name
    genuine = load_file(str(blob))
    other = {k: (-v if k == "classifier.weight" else v) for k, v in genuine.items()}
    evil = tmp_path / "evil.safetensors"
    save_file(other, str(evil))
    cache = Cache()
    view = cache.safetensors_view(sha)
    view.unlink()
    os.symlink(evil, view)
    r = zoo_cli(capsys, "verify")
    assert r.returncode == 1 and "BAD VIEW" in r.stdout and str(evil) in r.stdout, r.stdout
    model = zoo.load("efficientnet_lite0")
    assert torch.equal(model.classifier.weight, genuine["classifier.weight"])
    assert os.path.realpath(view) == os.path.realpath(blob)  # made again by the load
    # views/ itself made a link to a directory of other weights
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(evil, elsewhere / f"{sha}.safetensors")
    import shutil

    shutil.rmtree(cache.views)
    os.symlink(elsewhere, cache.views)
    assert zoo_cli(capsys, "verify").returncode == 1
    r = zoo_cli(capsys, "verify", "--repair")
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout
    assert cache.views.is_dir() and not cache.views.is_symlink()
    assert torch.equal(zoo.load("efficientnet_lite0").classifier.weight, genuine["classifier.weight"])
    assert load_file(str(evil))["classifier.weight"].equal(other["classifier.weight"])  # nothing written through the link
