"""zoo.predict (the loop behind ``zoo predict``, on real photos and digit trees) and zoo.decode of a model's output."""

import shutil

import pytest
import torch
from PIL import Image
from skimage import data

import zoo
from zoo.errors import UsageError
from zoo.model.images import open_rgb

from conftest import zoo_cli

CATS = {"tiger cat", "Egyptian cat", "tabby, tabby cat"}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.chelsea()).save(folder / "chelsea.jpg")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    (folder / "broken.jpg").write_bytes((folder / "chelsea.jpg").read_bytes()[:2000])
    (folder / "notes.txt").write_text("not an image, and not an image name: skipped in a directory")
    return folder


def test_predict_returns_one_record_per_image_in_order_and_keeps_going_past_a_bad_one(photos):
    events = []
    results = zoo.predict("efficientnet_lite0", [photos, photos / "chelsea.jpg"], top=3, batch_size=2,
                          progress=events.append)
    assert [r.image for r in results] == [str(photos / n) for n in ("broken.jpg", "chelsea.jpg", "coffee.png")] + \
        [str(photos / "chelsea.jpg")]
    broken, chelsea, coffee, again = results
    assert not broken.ok and "unreadable" in broken.error and broken.top == []
    assert chelsea.ok and len(chelsea.top) == 3 and chelsea.top[0][0] in CATS
    assert abs(sum(p for _, p in chelsea.top) - 1) < 0.2
    # the same image in another batch: the same classes, the same probabilities to float32 rounding
    assert [l for l, _ in chelsea.top] == [l for l, _ in again.top]
    assert all(abs(p - q) < 1e-5 for (_, p), (_, q) in zip(chelsea.top, again.top))
    assert coffee.top[0][0] == "espresso"
    assert chelsea.as_dict()["predictions"][0] == {"label": chelsea.top[0][0], "probability": chelsea.top[0][1]}
    starts = [e for e in events if e.kind == "start"]
    assert len(starts) == 1 and starts[0].total == 4 and starts[0].unit == "images"
    assert sum(e.advance for e in events if e.kind == "advance") == 4


def test_predict_takes_a_loaded_model_and_refuses_nothing_to_do(photos):
    model = zoo.load("efficientnet_lite0")
    (r,) = zoo.predict(model, [photos / "chelsea.jpg"], top=1)
    assert r.top[0][0] in CATS
    empty = photos / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no images given"):
        zoo.predict(model, [empty])


def test_fetch_tells_a_name_from_a_source_uri(tmp_path):
    got = zoo.fetch("efficientnet_lite0")
    assert got.kind == "card" and got.path.name == zoo.card("efficientnet_lite0").sha256
    copy = tmp_path / "weights.safetensors"
    copy.write_bytes(got.path.read_bytes())
    by_path = zoo.fetch(str(copy))
    assert by_path.kind == "uri" and by_path.path == got.path  # the same bytes, the same blob


def _tree(root, small_digits, layout):
    """Copies of small_digits images at ``layout``'s paths ({relative path: (class, index)})."""
    for rel, (label, i) in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sorted((small_digits / label).iterdir())[i], root / rel)
    return root


def test_predict_walks_a_nested_labelled_tree_and_scores_it(small_run, small_digits, tmp_path, capsys):
    run, _ = small_run
    layout = {"7/a.png": ("7", 0), "7/2019/b.png": ("7", 1), "7/2019/june/c.png": ("7", 2),
              "3/x/y/z/d.png": ("3", 0), "3/e.png": ("3", 1), "3/.ipynb_checkpoints/e-copy.png": ("3", 1),
              "loose.png": ("1", 0)}
    tree = _tree(tmp_path / "tree", small_digits, layout)
    model = zoo.load(run)
    results = zoo.predict(model, [tree], top=2)
    assert isinstance(results, list) and len(results) == 6  # every depth; the hidden folder left out
    assert [r.image for r in results] == [str(tree / p) for p in (
        "3/e.png", "3/x/y/z/d.png", "7/2019/b.png", "7/2019/june/c.png", "7/a.png", "loose.png")]
    assert [r.label for r in results] == ["3", "3", "7", "7", "7", None]  # an image loose in the root has none
    assert all(r.correct is not None for r in results[:5]) and results[5].correct is None
    acc = results.accuracy
    assert acc.images == 5 and acc.top == 2 and acc.correct == sum(r.top[0][0] == r.label for r in results[:5])
    assert acc.correct >= 4  # training images of the run: it knows them
    assert results[0].as_dict()["true_label"] == "3"
    # a folder that is no class of the model: the tree is not an ImageFolder of its classes, nothing is scored
    shutil.copytree(tree / "3", tree / "misc")
    unscored = zoo.predict(model, [tree], top=1)
    assert len(unscored) == 8 and all(r.label is None for r in unscored) and unscored.accuracy is None
    # the command prints the accuracy line
    shutil.rmtree(tree / "misc")
    r = zoo_cli(capsys, "predict", str(run), str(tree), "--top", "2")
    assert r.returncode == 0, r.stderr
    assert f"accuracy {acc.accuracy:.4f} ({acc.correct}/5 labelled images), top-2" in r.stdout
    assert "true class 7" in r.stdout


def test_an_imagenet_model_scores_a_tree_named_by_its_labels(tmp_path):
    root = tmp_path / "labelled"
    (root / "espresso").mkdir(parents=True)
    Image.fromarray(data.coffee()).save(root / "espresso" / "coffee.png")
    (root / "n02123045" / "home").mkdir(parents=True)  # WordNet id of "tabby, tabby cat"
    Image.fromarray(data.chelsea()).save(root / "n02123045" / "home" / "chelsea.png")
    coffee, chelsea = zoo.predict("efficientnet_lite0", [root])  # sorted by path
    assert coffee.label == "espresso" and coffee.correct
    assert chelsea.label == "tabby, tabby cat" and chelsea.top[0][0] in CATS


def _digits_batch(model, small_digits, labels):
    tf = zoo.transforms(model)
    return torch.stack([tf(open_rgb(str(sorted((small_digits / c).iterdir())[0]))) for c in labels])


def test_decode_reads_a_runs_class_names_off_its_output(small_run, small_digits):
    model = zoo.load(small_run[0])
    x = _digits_batch(model, small_digits, ["7", "3", "0"])
    with torch.inference_mode():
        out = model(x)
    assert out.is_inference() and out.class_names == [str(i) for i in range(10)]
    decoded = zoo.decode(out, top=3)
    assert [top[0][0] for top in decoded] == ["7", "3", "0"]  # training images of the run
    assert all(label in out.class_names for top in decoded for label, _ in top)
    assert zoo.decode(model(x), top=1)[0][0][0] == "7"  # outside inference mode too
    # a tensor made from the output is a new tensor, without the names: said so, with the way out
    with pytest.raises(UsageError, match=r"10 classes and no class names: decode the model's output as it comes"):
        zoo.decode(out[0])
    assert zoo.decode(out[0], model=model, top=1)[0][0][0] == "7"


def test_decode_uses_head_class_names_even_when_they_change_after_loading(photos):
    model = zoo.load("efficientnet_lite0", head=["a", "b"])
    x = zoo.transforms(model)(open_rgb(str(photos / "chelsea.jpg"))).unsqueeze(0)
    with torch.inference_mode():
        (top,) = zoo.decode(model(x))
    assert sorted(label for label, _ in top) == ["a", "b"] and abs(sum(p for _, p in top) - 1) < 1e-5
    model.class_names = ["cat", "dog"]  # the hook reads the model at call time
    assert {label for label, _ in zoo.decode(model(x))[0]} == {"cat", "dog"}
    imagenet = zoo.load("efficientnet_lite0")
    with torch.inference_mode():
        out = imagenet(x)
    assert not hasattr(out, "class_names") and zoo.decode(out, top=1)[0][0][0] in CATS


def test_a_loaded_model_scripts_once_its_class_names_hook_is_removed(monkeypatch):
    """torch.jit.script cannot compile the hook that tags outputs with class names; the handle
    zoo.load keeps removes it, and the scripted model gives the same logits."""
    import warnings

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    model = zoo.load("efficientnet_lite0", head=["a", "b"])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        eager = model(x)
    assert eager.class_names == ["a", "b"]
    model.class_names_hook.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, still used
        scripted = torch.jit.script(model)
    with torch.inference_mode():
        assert torch.allclose(scripted(x), eager, atol=1e-5)
