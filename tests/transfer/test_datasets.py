"""Image folders and train/validation splits (zoo/transfer/datasets.py)."""

import shutil

import pytest

from zoo.transfer.datasets import split
from zoo.errors import UsageError


def _folder(root, classes, n):
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 20 % 255, 0, 0)).save(root / c / f"{i}.png")
    return root


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    root = _folder(tmp_path / "d", ["cat", "dog"], 10)
    a, b = split(root, 0.2, seed=1), split(root, 0.2, seed=1)
    assert a.train == b.train and a.val == b.val and split(root, 0.2, seed=2).val != a.val
    assert len(a.val) == 4 and sorted(a.data.labels[i] for i in a.val) == [0, 0, 1, 1]
    assert not set(a.train) & set(a.val) and len(a.train) + len(a.val) == 20


def test_train_and_validation_subfolders_are_recognised(tmp_path):
    _folder(tmp_path / "d" / "train", ["cat", "dog"], 6)
    _folder(tmp_path / "d" / "validation", ["cat", "dog"], 2)
    s = split(tmp_path / "d")
    assert len(s.train) == 12 and len(s.val) == 4 and s.data.classes == ["cat", "dog"]
    assert all("validation" in str(s.data.files[i]) for i in s.val)
    _folder(tmp_path / "v", ["cat", "cow"], 2)
    with pytest.raises(UsageError, match=r"missing \['dog'\], extra \['cow'\]"):
        split(tmp_path / "d" / "train", val_dir=tmp_path / "v")


def test_too_small_classes_for_the_split_are_named(tmp_path):
    root = _folder(tmp_path / "d", ["cat", "dog"], 10)
    shutil.rmtree(root / "dog")
    _folder(root, ["dog"], 1)
    with pytest.raises(UsageError, match="class 'dog' has 1 images"):
        split(root, 0.2)


def test_a_train_folder_without_validation_is_not_taken_for_classes(tmp_path):
    _folder(tmp_path / "d" / "train", ["cat", "dog"], 4)
    _folder(tmp_path / "d" / "test", ["cat", "dog"], 2)
    with pytest.raises(UsageError, match="no validation/ .* pass --val DIR"):
        split(tmp_path / "d")
    s = split(tmp_path / "d", val_dir=tmp_path / "d" / "test")
    assert s.data.classes == ["cat", "dog"] and len(s.train) == 8 and len(s.val) == 4
    from zoo.transfer.datasets import all_images

    (tmp_path / "d" / "test").rename(tmp_path / "d" / "validation")
    assert all_images(tmp_path / "d").classes == ["cat", "dog"] and len(all_images(tmp_path / "d").files) == 12
