"""Bottleneck features (zoo/transfer/features.py, feature_cache.py, feature_files.py, ``zoo extract``) on real
data: sklearn's digits."""

import json
import os
import time

import pytest
import torch

import zoo
from zoo.errors import UsageError
from zoo.transfer import feature_cache
from zoo.transfer.datasets import scan, split
from zoo.transfer.features import extract, feature_transform

from conftest import digits_subset, run_zoo, zoo_cli


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")


@pytest.fixture(scope="module")
def lite0():
    """One lite0 for the module (extraction hands the model back as it came: eval, no hooks)."""
    return zoo.load("efficientnet_lite0", head=0)


class Forwards:
    """``on_forward``: how many images went through the backbone."""

    def __init__(self):
        self.images = 0

    def __call__(self, n: int) -> None:
        self.images += n


def _probe_accuracy(x, y, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    return clf.score(xte, yte)


@pytest.mark.slow  # lite0 over all 1797 digits; the quick loop extracts subsets (below, and small_run)
def test_extract_to_h5_then_logistic_regression(digits_folder, tmp_path, digits_home):
    import h5py

    out = tmp_path / "digits.h5"
    # the session's digits home: the one full extraction of the suite (finetune tests reuse it)
    result = run_zoo("extract", "efficientnet_lite0", "--data", str(digits_folder), "--out", str(out),
                     env={"ZOO_HOME": str(digits_home), "ZOO_OFFLINE": "1"}, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    with h5py.File(out) as h5:
        x, y = h5["features"][:], h5["labels"][:]
        classes = json.loads(h5.attrs["classes"])
        assert h5.attrs["model"] == "tf_efficientnet_lite0.bundled_in1k"
        assert len(h5["paths"]) == len(y) == 1797
    assert x.shape == (1797, 1280) and classes == [str(i) for i in range(10)]
    assert _probe_accuracy(x, y) >= 0.90


def test_second_extraction_reads_the_cache_and_runs_no_forward(digits_folder, tmp_path):
    model = zoo.load("efficientnet_lite0", head=0)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    data = scan(digits_folder)
    data.files, data.labels = data.files[::30], data.labels[::30]  # a 60-image subset is enough here
    s1 = extract(model, data, cache_dir=tmp_path / "cache")
    assert calls and not s1.cached and s1.features().shape == (60, 1280)
    calls.clear()
    s2 = extract(model, data, cache_dir=tmp_path / "cache")
    assert calls == [] and s2.cached and torch.equal(s1.features(), s2.features())
    assert torch.equal(s1.labels(), s2.labels()) and s1.kept == s2.kept
    # the rows are the model's pooled features of those images, in order
    from zoo.model.images import open_rgb

    tf = zoo.transforms(model)
    with torch.inference_mode():
        direct = model(torch.stack([tf(open_rgb(str(p))) for p in data.files[:4]]))
    assert torch.allclose(direct, s1.features()[:4], atol=1e-4)


def test_unreadable_images_are_skipped_and_folders_checked(digits_folder, tmp_path, lite0):
    root = digits_subset(digits_folder, tmp_path / "mini", 3, ("0", "1"))
    (root / "1" / "broken.png").write_bytes(b"\x89PNG not really")
    data = scan(root)
    fs = extract(lite0, data, cache_dir=tmp_path / "c", workers=0)
    assert len(fs.kept) == 6 and [p.name for p, _ in data.skipped] == ["broken.png"]
    assert fs.labels().tolist() == [0, 0, 0, 1, 1, 1]
    # again: the readable ones come from the cache, the broken one is tried (no forward) and skipped again
    again, forwards = scan(root), Forwards()
    fs2 = extract(lite0, again, cache_dir=tmp_path / "c", workers=0, on_forward=forwards)
    assert fs2.cached and forwards.images == 0 and fs2.kept == fs.kept
    assert [p.name for p, _ in again.skipped] == ["broken.png"]
    (root / "2").mkdir()
    with pytest.raises(UsageError, match="holds no images"):
        scan(root)
    with pytest.raises(UsageError, match="at least 2 class"):
        scan(root / "0")


def test_extract_a_named_layer_and_refuse_unknown_ones(digits_folder, tmp_path, lite0):
    model = lite0
    hooks = {name: dict(m._forward_hooks) for name, m in model.named_modules()}  # zoo.load's own hooks stay
    data = scan(digits_folder)
    data.files, data.labels = data.files[::100], data.labels[::100]
    fs = extract(model, data, cache_dir=tmp_path / "c", layer="blocks.5")
    assert fs.features().shape == (len(data.files), 192)  # lite0's blocks.5 has 192 channels, average-pooled
    pooled = extract(model, data, cache_dir=tmp_path / "c")
    assert not pooled.cached and pooled.space != fs.space  # the layer is part of the cache key
    with pytest.raises(UsageError, match="no layer 'blocks.55'; did you mean"):
        extract(model, data, cache_dir=tmp_path / "c", layer="blocks.55")
    assert {name: dict(m._forward_hooks) for name, m in model.named_modules()} == hooks  # extraction's are gone


# --- the per-image cache: subsets, supersets, other folders, interruptions, pruning (64 px inputs: quick)


def test_a_subset_runs_no_forward_and_a_superset_only_the_new_images(small_digits, digits_folder, tmp_path, lite0):
    cache, opts = tmp_path / "c", {"input_size": 64, "workers": 0}
    folder = scan(small_digits).subset(list(range(0, 200, 4)))  # 50 images, 5 a class
    part = list(range(0, 50, 2))
    first = extract(lite0, folder.subset(part), cache_dir=cache, **opts)
    assert not first.cached and first.from_cache == 0
    seen = {folder.files[i].name for i in part}  # the file names are the digits' indices: unique
    # a subset of what was extracted: every row from the cache, no forward
    forwards = Forwards()
    sub = extract(lite0, folder.subset(part[::3]), cache_dir=cache, on_forward=forwards, **opts)
    assert forwards.images == 0 and sub.cached and sub.from_cache == len(part[::3])
    assert torch.equal(sub.features(), first.features()[::3])
    # some of the same images in another folder: found by content, not by path
    elsewhere = scan(digits_subset(digits_folder, tmp_path / "copy", 1))  # the first image of each class
    shared = sum(p.name in seen for p in elsewhere.files)
    forwards = Forwards()
    moved = extract(lite0, elsewhere, cache_dir=cache, on_forward=forwards, **opts)
    assert 0 < shared < 10 and forwards.images == 10 - shared and moved.from_cache == shared
    seen |= {p.name for p in elsewhere.files}
    # the whole folder: the backbone runs only on the images no extraction saw yet
    forwards = Forwards()
    full = extract(lite0, folder, cache_dir=cache, on_forward=forwards, **opts)
    new = sum(p.name not in seen for p in folder.files)
    assert forwards.images == new > 0 and not full.cached and full.from_cache == 50 - new
    fresh = extract(lite0, scan(small_digits).subset(list(range(0, 200, 4))), cache_dir=tmp_path / "fresh", **opts)
    assert fresh.kept == full.kept and torch.equal(fresh.labels(), full.labels())
    assert torch.allclose(fresh.features(), full.features(), atol=1e-5)
    blocks = torch.cat(list(full.blocks(rows=7)))  # rows from several shards, read block by block
    assert torch.equal(blocks, full.features()) and len({path for path, _ in full.where}) == 3


def test_an_interrupted_extraction_keeps_the_shards_it_sealed(small_digits, tmp_path, lite0, monkeypatch):
    monkeypatch.setattr(feature_cache, "SHARD_BYTES", 16 * 1280 * 4)  # a shard every 16 rows
    data = scan(small_digits).subset(list(range(0, 200, 5)))  # 40 images
    calls = []

    def stop_at_third_batch(n):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt

    opts = {"cache_dir": tmp_path / "c", "input_size": 64, "batch_size": 8, "workers": 0}
    with pytest.raises(KeyboardInterrupt):
        extract(lite0, data, on_forward=stop_at_third_batch, **opts)
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no temp file left behind
    forwards = Forwards()
    fs = extract(lite0, data, on_forward=forwards, **opts)
    assert forwards.images == 40 - 16 and fs.from_cache == 16 and len(fs.kept) == 40


def test_shards_record_their_last_use_and_zoo_cache_prune_removes_unused_ones(small_digits, tmp_path, lite0):
    from zoo import home
    from zoo.weights.cache import Cache

    data = scan(small_digits).subset(list(range(0, 200, 20)))  # 10 images
    folder = tmp_path / home.FEATURES
    spaces = [extract(lite0, data, cache_dir=folder, input_size=64, pool=pool, workers=0).space
              for pool in ("avg", "max")]
    avg, mx = (next(folder.glob(f"{space}-*.safetensors")) for space in spaces)
    old = time.time() - 40 * 86400
    for shard in (avg, mx):
        os.utime(shard, (old, old))
    extract(lite0, data.subset([1, 2]), cache_dir=folder, input_size=64)  # uses the avg shard: its mtime moves on
    assert time.time() - avg.stat().st_mtime < 600
    removed = Cache(tmp_path).prune(older_than=30 * 86400)
    assert removed[home.FEATURES] == [mx.name] and avg.exists() and not mx.exists()
    forwards = Forwards()
    extract(lite0, data, cache_dir=folder, input_size=64, pool="max", on_forward=forwards)
    assert forwards.images == 10  # pruned rows are computed again


# --- pooling and input size


def test_pool_none_keeps_the_map_and_max_is_a_global_max(digits_folder, tmp_path, lite0):
    data = scan(digits_subset(digits_folder, tmp_path / "mini", 1))  # 10 images
    cache = tmp_path / "c"
    maps = extract(lite0, data, cache_dir=cache, pool="none", input_size=64, workers=0)
    assert maps.features().shape == (10, 1280, 2, 2) and maps.shape == (1280, 2, 2)  # lite0 is stride 32
    mx = extract(lite0, data, cache_dir=cache, pool="max", input_size=64, workers=0)
    avg = extract(lite0, data, cache_dir=cache, input_size=64, workers=0)
    assert len({maps.space, mx.space, avg.space}) == 3 and not (mx.cached or avg.cached)  # pooling is in the key
    from zoo.model.images import open_rgb

    tf = feature_transform(lite0, 64)
    with torch.inference_mode():
        final = lite0.forward_features(torch.stack([tf(open_rgb(str(p))) for p in data.files]))
    # extraction runs channels_last: about 2e-5 from this NCHW forward on values up to 6
    assert torch.allclose(mx.features(), final.amax(dim=(2, 3)), atol=1e-4)
    assert torch.allclose(avg.features(), final.mean(dim=(2, 3)), atol=1e-4)
    assert not torch.allclose(mx.features(), avg.features(), atol=1e-2)
    assert torch.allclose(maps.features(), final, atol=1e-4)
    block = extract(lite0, data, cache_dir=cache, layer="blocks.5", pool="none", input_size=96, workers=0)
    assert block.features().shape == (10, 192, 3, 3)  # a module's map, unpooled, at another input size
    with pytest.raises(UsageError, match="--input-size must be 32 to 1024 pixels a side"):
        extract(lite0, data, cache_dir=cache, input_size=16)
    with pytest.raises(UsageError, match="--pool must be one of avg, max, none"):
        extract(lite0, data, cache_dir=cache, pool="mean")


def test_an_unknown_layer_fails_before_any_image_is_read(small_digits, tmp_path, lite0):
    events, forwards = [], Forwards()
    with pytest.raises(UsageError, match="no layer 'block.5'; did you mean blocks.5"):
        extract(lite0, scan(small_digits), cache_dir=tmp_path / "c", layer="block.5", progress=events.append,
                on_forward=forwards)
    assert events == [] and forwards.images == 0  # no hashing task started, no forward
    assert not (tmp_path / "c").exists()


# --- exports: the split of each row


def _presplit(digits_folder, root):
    """DIR/train/<class> (3 images each) and DIR/validation/<class> (1 each), as in the dogs-vs-cats tutorial."""
    for c in ("0", "1", "2"):
        files = sorted((digits_folder / c).iterdir())[:4]
        for side, part in (("train", files[:3]), ("validation", files[3:])):
            (root / side / c).mkdir(parents=True)
            for p in part:
                (root / side / c / p.name).write_bytes(p.read_bytes())
    return root


def test_h5_records_each_rows_split_and_keeps_maps(digits_folder, tmp_path, capsys):
    import h5py

    root = _presplit(digits_folder, tmp_path / "dogs-vs-cats-like")
    out = tmp_path / "bottleneck.h5"
    r = zoo_cli(capsys, "extract", "efficientnet_lite0", "--data", str(root), "--out", str(out), "--pool", "none",
                "--input-size", "64", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "12 images (9 train, 3 validation) x 1280x2x2 features, 3 classes" in r.stdout
    with h5py.File(out) as h5:
        sides, paths = h5["split"].asstr()[:].tolist(), h5["paths"].asstr()[:].tolist()
        assert h5["features"].shape == (12, 1280, 2, 2) and h5.attrs["pool"] == "none"
        assert h5.attrs["input_size"] == "64x64" and h5.attrs["split_from"] == "train/ and validation/"
        labels = h5["labels"][:].tolist()
    assert sides == ["train" if "/train/" in p else "validation" for p in paths] and sides.count("validation") == 3
    assert labels == [int(os.path.basename(os.path.dirname(p))) for p in paths]
    # the second time every row comes from the cache
    r = zoo_cli(capsys, "extract", "efficientnet_lite0", "--data", str(root), "--out", str(out), "--pool", "none",
                "--input-size", "64", "--workers", "0")
    assert r.returncode == 0 and "(all from the feature cache)" in r.stdout
    r = zoo_cli(capsys, "extract", "efficientnet_lite0", "--data", str(root), "--out", str(out), "--val-split", "0.2")
    assert r.returncode == 2 and "already split into train/ and validation/; drop --val-split" in r.stderr


def test_a_plain_folder_records_the_split_finetune_would_make(digits_folder, tmp_path, capsys):
    from safetensors import safe_open

    root = digits_subset(digits_folder, tmp_path / "plain", 4, ("3", "8"))
    out = tmp_path / "f.safetensors"
    r = zoo_cli(capsys, "extract", "efficientnet_lite0", "--data", str(root), "--out", str(out), "--input-size", "64",
                "--val-split", "0.25", "--seed", "3", "--workers", "0")
    assert r.returncode == 0, r.stderr
    with safe_open(str(out), "pt") as f:
        meta, shape = f.metadata(), f.get_slice("features").get_shape()
    expected = split(root, 0.25, seed=3)
    assert json.loads(meta["split"]) == ["validation" if i in expected.val else "train" for i in range(8)]
    assert json.loads(meta["paths"]) == [str(p) for p in expected.data.files] and shape == [8, 1280]
    assert meta["split_from"] == expected.how and meta["pool"] == "avg"
    r = zoo_cli(capsys, "extract", "efficientnet_lite0", "--data", str(root), "--out", str(out), "--input-size", "64")
    assert r.returncode == 0 and "(all from the feature cache)" in r.stdout  # no split: the same rows
    with safe_open(str(out), "pt") as f:
        assert "split" not in f.metadata()  # no split asked, none on disk: none recorded
    for args, error in ((("--input-size", "2000"), "--input-size must be 32 to 1024 pixels a side (N or HxW), "
                                                   "not 2000x2000"),
                        (("--input-size", "big"), "expected N or HxW"),
                        (("--layer", "blocks.55"), "no layer 'blocks.55'; did you mean")):
        r = zoo_cli(capsys, "extract", "efficientnet_lite0", "--data", str(root), "--out", str(tmp_path / "x.h5"),
                    *args)
        assert r.returncode == 2 and error in r.stderr, (args, r.stderr)
        assert not (tmp_path / "x.h5").exists()
