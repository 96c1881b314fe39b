"""zoo evaluate (zoo/transfer/evaluate.py) on real data: a digits run on its own split and on
digits it never saw, and lite0's ImageNet head on skimage photos."""

import json
import shutil
from dataclasses import replace

import pytest
from PIL import Image
from skimage import data as photos

import zoo
from zoo.errors import UsageError
from zoo.transfer.datasets import split
from zoo.transfer.evaluate import validation_split
from zoo.transfer.finetune import finetune
from zoo.transfer.runs import read_run

from conftest import digits_subset, zoo_cli


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")


@pytest.fixture(scope="module")
def unseen(digits_folder, tmp_path_factory):
    """Digits 20-24 of each class (small_run trained on the first 20), and one broken PNG."""
    root = tmp_path_factory.mktemp("unseen") / "digits"
    for c in sorted(d.name for d in digits_folder.iterdir()):
        (root / c).mkdir(parents=True)
        for p in sorted((digits_folder / c).iterdir())[20:25]:
            shutil.copy(p, root / c / p.name)
    (root / "3" / "broken.png").write_bytes((root / "3" / sorted((root / "3").iterdir())[0].name).read_bytes()[:60])
    return root


def _total(matrix):
    return sum(map(sum, matrix))


def test_the_runs_own_split_gives_exactly_the_accuracy_it_recorded(small_run, small_digits, tmp_path, capsys):
    run, _ = small_run
    card = read_run(run)
    got = zoo.evaluate(run, small_digits, val=True, workers=0)
    made = split(small_digits, val_split=card.training["val_split"], seed=card.training["seed"])
    assert got.images == [str(made.data.files[i]) for i in made.val]  # the very images the run validated on
    assert len(got.images) == card.metrics["val_size"] == 40
    assert got.correct == round(card.metrics["val_accuracy"] * 40)
    assert got.accuracy == card.metrics["val_accuracy"] == got.recorded_accuracy
    matrix = got.confusion()
    assert _total(matrix) == 40 and sum(matrix[i][i] for i in range(10)) == got.correct
    assert got.classes == list(card.classes) and not got.other and got.top == 5
    assert [s.support for s in got.per_class()] == [4] * 10  # stratified: 20% of 20 per class
    # the command says the same, and prints the recorded figure beside the measured one
    png = tmp_path / "cm.png"
    done = zoo_cli(capsys, "evaluate", str(run), str(small_digits), "--val", "--workers", "0", "--json",
                   "--plot", str(png))
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["accuracy"] == card.metrics["val_accuracy"] and r["recorded_accuracy"] == r["accuracy"]
    assert _total(r["confusion"]["matrix"]) == r["images"] == 40
    assert len(r["misclassified"]) == 40 - r["correct"]
    with Image.open(png) as img:
        assert img.format == "PNG" and min(img.size) > 300
    bad = zoo_cli(capsys, "evaluate", str(run), str(small_digits), "--plot", str(tmp_path / "cm.jpg"))
    assert bad.returncode == 2 and "--plot writes a PNG" in bad.stderr


def test_unseen_digits_per_class_figures_agree_with_sklearn_and_with_predict(small_run, unseen):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    run, _ = small_run
    got = zoo.evaluate(run, unseen, top=3, batch_size=16, workers=1)
    assert len(got.images) == 50 and len(got.skipped) == 1 and got.skipped[0][0].endswith("broken.png")
    assert _total(got.confusion()) == 50 and got.top == 3 and got.correct <= got.in_top <= 50
    assert 0.5 < got.accuracy < 1  # a head trained on 160 digits: good, not perfect (the test can fail)
    p, r, f, s = precision_recall_fscore_support(got.labels, got.predicted, labels=got.classes, zero_division=0)
    scores = got.per_class()
    assert [x.support for x in scores] == list(s) == [5] * 10
    assert [x.precision for x in scores] == pytest.approx(list(p), abs=1e-12)
    assert [x.recall for x in scores] == pytest.approx(list(r), abs=1e-12)
    assert [x.f1 for x in scores] == pytest.approx(list(f), abs=1e-12)
    assert got.confusion() == confusion_matrix(got.labels, got.predicted, labels=got.classes).tolist()
    assert got.macro()["f1"] == pytest.approx(f.mean(), abs=1e-12)
    # zoo.predict on the same labelled folder: the same best class per image, the same accuracy
    predicted = zoo.predict(run, [unseen], top=3)
    best = {q.image: q.top[0][0] for q in predicted if q.ok}
    assert [best[i] for i in got.images] == got.predicted
    assert predicted.accuracy.correct == got.correct and predicted.accuracy.in_top == got.in_top


def test_folders_the_model_does_not_know_and_val_without_its_data_fail_clearly(small_run, small_digits, unseen,
                                                                                tmp_path):
    run, _ = small_run
    odd = tmp_path / "odd"
    shutil.copytree(unseen, odd)
    (odd / "3").rename(odd / "three")
    with pytest.raises(UsageError, match="class folders the model does not know: three; its classes are 0, 1, 2"):
        zoo.evaluate(run, odd)
    with pytest.raises(UsageError, match="holds 10 images, but digits-lite0 recorded 40: it is not the data the run"):
        zoo.evaluate(run, unseen, val=True)
    with pytest.raises(UsageError, match="efficientnet_lite0.* is not a run"):
        zoo.evaluate("efficientnet_lite0", unseen, val=True)
    # a card that does not say how it split (card.toml is sealed: the card is edited in memory)
    card = read_run(run)
    no_seed = replace(card, training={k: v for k, v in card.training.items() if k != "seed"})
    with pytest.raises(UsageError, match="no training.seed: its validation split cannot be re-created"):
        validation_split(no_seed, small_digits)
    no_fraction = replace(card, training={k: v for k, v in card.training.items() if k != "val_split"})
    with pytest.raises(UsageError, match="records no training.val_split"):
        validation_split(no_fraction, small_digits)
    neither = replace(no_fraction, training={k: v for k, v in no_fraction.training.items() if k != "validation"})
    with pytest.raises(UsageError, match="records neither training.val_split nor training.validation"):
        validation_split(neither, small_digits)
    assert validation_split(card, small_digits)[1] == split(small_digits, card.training["val_split"]).val
    # a run validated on DIR/validation: --val on DIR finds that folder again, on another folder it says so
    presplit = tmp_path / "presplit"
    shutil.copytree(small_digits, presplit / "train")
    shutil.copytree(unseen, presplit / "validation")
    on_folder = replace(no_fraction, training={**no_fraction.training, "validation": "old/place/validation"},
                        metrics={**card.metrics, "val_size": 51})
    folder, indices, what = validation_split(on_folder, presplit)
    assert [folder.files[i].parent.parent.name for i in indices] == ["validation"] * 51
    assert "validation" in what
    elsewhere = replace(on_folder, training={**on_folder.training, "validation": "old/place/test"})
    with pytest.raises(UsageError, match=r"its validation \(old/place/test\) is not a validation folder of"):
        validation_split(elsewhere, presplit)


def test_an_imagenet_model_on_folders_named_by_label_or_wordnet_id(tmp_path, capsys):
    root = tmp_path / "photos"
    for folder, name, image in (("espresso", "coffee.png", photos.coffee()),
                                ("n02123045", "chelsea.png", photos.chelsea())):  # n02123045: tabby cat
        (root / folder).mkdir(parents=True)
        Image.fromarray(image).save(root / folder / name)
    got = zoo.evaluate("efficientnet_lite0", root, workers=0)
    assert got.classes == ["tabby, tabby cat", "espresso"]  # ImageNet output order
    assert got.other and got.columns[-1] == "(other)" and _total(got.confusion()) == 2
    assert got.confusion()[1] == [0, 1, 0]  # the coffee is an espresso
    assert got.in_top == 2  # lite0 puts the tabby among its top 5 even when a tiger cat wins
    r = zoo_cli(capsys, "evaluate", "efficientnet_lite0", str(root), "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "tf_efficientnet_lite0.bundled_in1k on " in r.stdout and "2 images" in r.stdout
    assert f"accuracy {got.accuracy:.4f} ({got.correct}/2), top-5 accuracy 1.0000" in r.stdout
    assert "per class" in r.stdout and "macro average" in r.stdout and "(other)" in r.stdout
    (root / "n02123045").rename(root / "kitty")
    with pytest.raises(UsageError, match="does not know: kitty; its classes are ImageNet labels"):
        zoo.evaluate("efficientnet_lite0", root)


@pytest.mark.slow  # a partial fine-tune on images (about 30 s): the recorded figure of the images path
def test_a_run_trained_on_images_gets_its_recorded_accuracy_back(digits_folder, tmp_path):
    data = digits_subset(digits_folder, tmp_path / "three", 20, ("3", "5", "8"))
    result = finetune("efficientnet_lite0", data, tmp_path / "run", strategy="partial", epochs=2, batch_size=8,
                      workers=0)
    assert result.card.training["trained_on"] == "images"
    got = zoo.evaluate(result.run, data, val=True, batch_size=8, workers=0)
    assert len(got.images) == result.card.metrics["val_size"] == 12
    assert got.accuracy == result.card.metrics["val_accuracy"]
    assert _total(got.confusion()) == 12
