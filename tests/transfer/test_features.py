"""Bottleneck features (zoo/transfer/features.py, ``zoo extract``) on real data: sklearn's digits."""

import json

import pytest
import torch

import zoo
from zoo.errors import UsageError
from zoo.transfer.datasets import scan
from zoo.transfer.features import extract

from conftest import digits_subset, run_zoo


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")


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
    data.files, data.labels = data.files[::10], data.labels[::10]  # a 180-image subset is enough here
    s1 = extract(model, data, cache_dir=tmp_path / "cache")
    assert calls and not s1.cached and s1.features().shape == (len(data.files), 1280)
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


def test_unreadable_images_are_skipped_and_folders_checked(digits_folder, tmp_path):
    root = digits_subset(digits_folder, tmp_path / "mini", 3, ("0", "1"))
    (root / "1" / "broken.png").write_bytes(b"\x89PNG not really")
    model = zoo.load("efficientnet_lite0", head=0)
    data = scan(root)
    fs = extract(model, data, cache_dir=tmp_path / "c", workers=0)
    assert len(fs.kept) == 6 and [p.name for p, _ in data.skipped] == ["broken.png"]
    assert fs.labels().tolist() == [0, 0, 0, 1, 1, 1]
    (root / "2").mkdir()
    with pytest.raises(UsageError, match="holds no images"):
        scan(root)
    with pytest.raises(UsageError, match="at least 2 class"):
        scan(root / "0")


def test_extract_a_named_layer_and_refuse_unknown_ones(digits_folder, tmp_path):
    model = zoo.load("efficientnet_lite0", head=0)
    data = scan(digits_folder)
    data.files, data.labels = data.files[::100], data.labels[::100]
    fs = extract(model, data, cache_dir=tmp_path / "c", layer="blocks.5")
    assert fs.features().shape == (len(data.files), 192)  # lite0's blocks.5 has 192 channels, average-pooled
    pooled = extract(model, data, cache_dir=tmp_path / "c")
    assert not pooled.cached and pooled.path != fs.path  # the layer is part of the cache key
    with pytest.raises(UsageError, match="no layer 'blocks.55'; did you mean"):
        extract(model, data, cache_dir=tmp_path / "c", layer="blocks.55")
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
