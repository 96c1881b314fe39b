"""zoo.predict: the loop behind ``zoo predict``, callable from Python, on real photos."""

import pytest
from PIL import Image
from skimage import data

import zoo
from zoo.errors import UsageError

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
