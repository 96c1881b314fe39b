"""Offline bundles (zoo/weights/bundles.py, zoo/weights/hf_cache.py, zoo/transfer/mirror.py): export,
verified import, bundles as mirrors, the HF cache layout, runs with their base, --pattern as zoo list."""

import os
import subprocess
import sys

import pytest
import torch

import zoo
from zoo.weights.cache import Cache
from zoo.errors import UsageError
from zoo.util.hashing import sha256_file
from zoo.weights.bundle_export import export_bundle
from zoo.weights.bundle_manifest import read_manifest
from zoo.weights.bundles import BundleError, import_bundle

from conftest import TOKEN, HubServer, run_zoo, tiny_card, tiny_hub_card, write_toml


@pytest.fixture
def lite0_cached(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    zoo.pull("efficientnet_lite0")
    return zoo.card("efficientnet_lite0")


def _fresh_home(tmp_path, monkeypatch, name="receiver"):
    home = tmp_path / name
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home


def test_flipped_byte_aborts_the_import_naming_the_file(lite0_cached, tmp_path, monkeypatch):
    bundle = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"]).path
    blob = bundle / "blobs" / lite0_cached.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    home = _fresh_home(tmp_path, monkeypatch)
    with pytest.raises(BundleError, match=f"blobs/{lite0_cached.sha256}.*corrupt.*nothing was imported"):
        import_bundle(bundle)
    assert not (home / "blobs").exists() or not any((home / "blobs").iterdir())
    assert Cache().entries() == []


def test_round_trip_into_an_empty_home_then_offline_load(lite0_cached, tmp_path, monkeypatch):
    exported = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"])
    assert (exported.path / "manifest.json.sha256").read_text().split()[0] == exported.manifest_sha256
    home = _fresh_home(tmp_path, monkeypatch)
    env = {"ZOO_HOME": str(home), "ZOO_OFFLINE": "1"}
    result = run_zoo("mirror", "import", str(exported.path), env=env)
    assert result.returncode == 0, result.stderr
    assert run_zoo("verify", env=env).returncode == 0
    model = zoo.load("efficientnet_lite0")
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    listing = run_zoo("mirror", "ls", str(exported.path), env=env).stdout
    assert "tf_efficientnet_lite0.bundled_in1k" in listing and "18.8" in listing


def test_tar_bundle_round_trip(lite0_cached, tmp_path, monkeypatch):
    tar = export_bundle(tmp_path / "b.tar", ["efficientnet_lite0"], tar=True).path
    assert tar.is_file() and read_manifest(tar)["models"][0]["sha256"] == lite0_cached.sha256
    _fresh_home(tmp_path, monkeypatch)
    import_bundle(tar)
    assert [e.name for e in Cache().entries()] == [lite0_cached.name]
    assert not [p for p in Cache().root.iterdir() if p.name.startswith(".bundle-")]


def test_bundle_directory_is_a_mirror(lite0_cached, tmp_path, monkeypatch):
    bundle = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"]).path
    _fresh_home(tmp_path, monkeypatch)
    monkeypatch.setenv("ZOO_MIRRORS", str(bundle))
    zoo.pull("efficientnet_lite0")
    assert Cache().entry(lite0_cached.name).source == f"mirror {bundle}"


def test_a_user_card_travels_with_its_weights(tmp_path, monkeypatch, user_cards, tiny_weights):
    write_toml(user_cards / "t.toml", tiny_card("zootest_tiny.a", sources=[{"uri": str(tiny_weights)}]))
    zoo.pull("zootest_tiny.a")
    bundle = export_bundle(tmp_path / "bundle", ["zootest_tiny.a"]).path
    monkeypatch.delenv("ZOO_CARDS_PATH")
    _fresh_home(tmp_path, monkeypatch)
    import_bundle(bundle)
    assert zoo.card("zootest_tiny.a").path.startswith(str(Cache().root / "cards"))


def test_hf_cache_layout_serves_stock_timm_offline(lite0_cached, tmp_path, monkeypatch):
    bundle = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"]).path
    home = _fresh_home(tmp_path, monkeypatch)
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    result = run_zoo("mirror", "import", "--hf-cache", str(bundle), env={"ZOO_HOME": str(home), "HF_HOME": str(hf_home)})
    assert result.returncode == 0, result.stderr
    code = ("import timm, torch; from safetensors.torch import load_file\n"
            "m = timm.create_model('tf_efficientnet_lite0', pretrained=True)\n"
            "ref = load_file(%r)\n"
            "print(all(torch.equal(v, ref[k]) for k, v in m.state_dict().items()))\n") % str(Cache().blob_path(lite0_cached.sha256))
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"


def test_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a zoo bundle"):
        import_bundle(tmp_path / "empty")
    result = run_zoo("mirror", "ls", str(tmp_path / "empty"))
    assert result.returncode == 1 and "not a zoo bundle" in result.stderr


def test_export_from_another_zoo_home(lite0_cached, tmp_path, monkeypatch):
    """--from DIR: a cache on a shared file system is read in place, without joining it."""
    shared = Cache().root
    _fresh_home(tmp_path, monkeypatch, "exporter")
    bundle = export_bundle(tmp_path / "bundle", ["efficientnet_lite0"], source=str(shared)).path
    assert Cache().entries() == []  # the exporter's own cache stayed empty
    assert read_manifest(bundle)["models"][0]["sha256"] == lite0_cached.sha256
    with pytest.raises(UsageError, match="no such directory"):
        export_bundle(tmp_path / "b2", ["efficientnet_lite0"], source=str(tmp_path / "nowhere"))


@pytest.fixture
def s3_hub(seaweed, tmp_path_factory, hub_tiny_card):
    """``zoo serve --storage s3://...`` holding test_efficientnet's weights, uploaded with HfApi."""
    import uuid

    from huggingface_hub import HfApi

    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    storage = f"s3://{seaweed.bucket()}/mirror-{uuid.uuid4().hex[:8]}"
    server = HubServer(tmp_path_factory.mktemp("served_s3"), "--storage", storage, "--token-file", str(tokens),
                       env=seaweed.env)
    api = HfApi(endpoint=server.url, token=TOKEN)
    api.create_repo("zootest/tiny")
    api.upload_file(path_or_fileobj=str(hub_tiny_card), path_in_repo="model.safetensors", repo_id="zootest/tiny")
    yield storage
    server.stop()


@pytest.fixture
def hub_tiny_card(tiny_weights, user_cards):
    write_toml(user_cards / "tiny.toml", tiny_hub_card())  # unpinned: found through its hub repo
    return tiny_weights


def test_export_from_an_s3_store_then_import_offline(s3_hub, seaweed, tiny_weights, tmp_path, monkeypatch):
    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    env = {**seaweed.env, "ZOO_OFFLINE": "1"}
    result = run_zoo("mirror", "export", str(tmp_path / "bundle"), "test_efficientnet.zootest", "--from", s3_hub, env=env)
    assert result.returncode == 0, result.stderr
    assert not (Cache().root / "blobs").exists()  # streamed from the store, never through the cache
    [model] = read_manifest(tmp_path / "bundle")["models"]
    assert model["sha256"] == sha256_file(tiny_weights) and model["size"] == tiny_weights.stat().st_size
    assert model["hub_repo"] == "zootest/tiny" and len(model["revision"]) == 40
    _fresh_home(tmp_path, monkeypatch)
    import_bundle(tmp_path / "bundle")
    assert zoo.load("test_efficientnet.zootest")(torch.randn(1, 3, 160, 160)).shape == (1, 1000)
    # a name the store does not hold says so; a blob that rotted in the store aborts, leaving nothing
    missing = run_zoo("mirror", "export", str(tmp_path / "b2"), "efficientnet_lite0", "--from", s3_hub, env=env)
    assert missing.returncode == 2 and f"is not in {s3_hub}" in missing.stderr
    from zoo.store.objects import open_storage

    store = open_storage(s3_hub)
    bad = tmp_path / "rotten"
    data = bytearray(tiny_weights.read_bytes())
    data[1000] ^= 1
    bad.write_bytes(bytes(data))
    store.put_file(f"blobs/{model['sha256']}", bad)
    with pytest.raises(BundleError, match="corrupt in the store.*nothing was exported"):
        export_bundle(tmp_path / "b3", pattern="test_*", source=s3_hub)
    assert not (tmp_path / "b3").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b3")]


def _logits(model, digits):
    from zoo.model.images import open_rgb

    tf = zoo.transforms(model)
    with torch.inference_mode():
        return model(torch.stack([tf(open_rgb(sorted((digits / str(d)).iterdir())[0])) for d in range(10)]))


def test_a_run_travels_with_its_base_and_loads_offline(lite0_cached, small_run, small_digits, tmp_path, monkeypatch,
                                                       capsys):
    """`zoo mirror export OUT RUN` carries the run and its base; `zoo mirror import` on a machine with an
    empty ZOO_HOME and no network writes a plain run directory that zoo.load loads."""
    from conftest import zoo_cli

    run = small_run[0]
    expected = _logits(zoo.load(run), small_digits)
    r = zoo_cli(capsys, "mirror", "export", str(tmp_path / "b.tar"), str(run), "--tar")
    assert r.returncode == 0 and "exported 1 models and 1 runs (digits-lite0)" in r.stdout, r.stderr
    manifest = read_manifest(tmp_path / "b.tar")
    [entry] = manifest["runs"]
    assert entry["base"] == lite0_cached.name and entry["base_sha256"] == lite0_cached.sha256
    assert sorted(entry["files"]) == ["README.md", "card.toml", "head.safetensors", "metrics.json"]
    home = _fresh_home(tmp_path, monkeypatch)
    r = zoo_cli(capsys, "mirror", "import", str(tmp_path / "b.tar"), "--runs-to", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    imported = tmp_path / "runs" / "digits-lite0"
    assert f"run {imported}" in " ".join(r.stdout.split())
    assert Cache().entry(lite0_cached.name).source == f"bundle {tmp_path / 'b.tar'}"  # the base came in the bundle
    assert torch.equal(_logits(zoo.load(imported), small_digits), expected)
    # importing again is a no-op for a run already there; a different directory in its place is refused
    assert zoo_cli(capsys, "mirror", "import", str(tmp_path / "b.tar"), "--runs-to", str(tmp_path / "runs")).returncode == 0
    (imported / "README.md").write_text("mine")
    r = zoo_cli(capsys, "mirror", "import", str(tmp_path / "b.tar"), "--runs-to", str(tmp_path / "runs"))
    assert r.returncode == 1 and "is not the run digits-lite0" in r.stderr and "--runs-to" in r.stderr
    assert (imported / "README.md").read_text() == "mine" and home.is_dir()


def test_a_bundle_with_a_broken_run_imports_nothing(lite0_cached, small_run, tmp_path, monkeypatch):
    from zoo.transfer.mirror import export_bundle as export_with_runs, import_bundle as import_with_runs

    bundle = export_with_runs(tmp_path / "bundle", runs=[small_run[0]]).path
    card = bundle / "runs" / "digits-lite0" / "card.toml"
    card.write_text(card.read_text().replace('name = "digits-lite0"', 'name = "renamed"'))
    _fresh_home(tmp_path, monkeypatch)
    with pytest.raises(BundleError, match="runs/digits-lite0/card.toml \\(run digits-lite0\\) is corrupt"):
        import_with_runs(bundle, runs_to=tmp_path / "runs")
    assert Cache().entries() == [] and not (tmp_path / "runs" / "digits-lite0").exists()
    # a bundle whose manifest agrees with a tampered card (the hashes redone) is still refused: the head seals the card
    import hashlib
    import json

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["runs"][0]["files"]["card.toml"] = {"sha256": hashlib.sha256(card.read_bytes()).hexdigest(),
                                                 "size": card.stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="runs/digits-lite0 is refused .*card.toml was changed after the run was written"):
        import_with_runs(bundle, runs_to=tmp_path / "runs")
    assert Cache().entries() == [] and not (tmp_path / "runs" / "digits-lite0").exists()
    with pytest.raises(UsageError, match="holds runs \\(digits-lite0\\): say where they go"):
        import_bundle(bundle)


@pytest.mark.parametrize("pattern", ["efficientnet_lite0", "TF_EFFICIENTNET_LITE*", "*.bundled_in1k", "zootest*", "*"])
def test_pattern_exports_exactly_what_zoo_list_lists(pattern, tmp_path, monkeypatch, capsys, user_cards, tiny_weights):
    """--pattern is `zoo list PATTERN`'s match (names, aliases, architectures), less what is not cached."""
    import json

    from conftest import zoo_cli

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    write_toml(user_cards / "t.toml", tiny_card("zootest_tiny.a", sources=[{"uri": str(tiny_weights)}]))
    zoo.pull("efficientnet_lite0")
    zoo.pull("zootest_tiny.a")
    listed = {c["name"] for c in json.loads(zoo_cli(capsys, "list", pattern, "--json").stdout)}
    cached = {e.name for e in Cache().entries()}
    assert listed & cached  # every pattern here lists a cached model
    r = zoo_cli(capsys, "mirror", "export", str(tmp_path / "bundle"), "--pattern", pattern)
    assert r.returncode == 0, r.stderr
    assert {m["name"] for m in read_manifest(tmp_path / "bundle")["models"]} == listed & cached
