"""Run directories (zoo/transfer/runs.py, model_card.py, exports.py): integrity (weights and card.toml
checked, the README free to edit), refusal of a base that does not fit, merged export and loading it
back."""

import json
import shutil

import pytest
import tomlkit
import torch

import zoo
from zoo.transfer.runs import RunError, card_seal, head_metadata, load_run, verify_run
from zoo.util.hashing import sha256_file

from conftest import run_zoo


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")


@pytest.fixture
def run(small_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(small_run[0], copy)
    return copy


def _edit_card(run, section, key, value):
    doc = tomlkit.parse((run / "card.toml").read_text())
    doc[section][key] = value
    (run / "card.toml").write_text(tomlkit.dumps(doc))


BLANK = "0" * 64


def _reseal(run, tensors=None, version=2):
    """Make an edited run whole again, as another writer would have written it: the head (its own
    tensors, or ``tensors``) with metadata taken from card.toml and, for version 2, the card's seal;
    card.toml recording the head's sha256. What a run made elsewhere with these values looks like."""
    from safetensors.torch import load_file

    from zoo.weights.safetensors_writer import write_safetensors

    doc = tomlkit.parse((run / "card.toml").read_text())
    doc["version"] = version
    doc["files"]["head.safetensors"] = BLANK
    draft = tomlkit.dumps(doc)
    meta = {**head_metadata(run / "head.safetensors"), "zoo_run": str(version),
            "classes": json.dumps([str(c) for c in doc["head"]["classes"]]),
            "base_sha256": str(doc["base"]["weights_sha256"]), "card_sha256": card_seal(draft, BLANK)}
    if version == 1:
        del meta["card_sha256"]
    tensors = tensors if tensors is not None else load_file(str(run / "head.safetensors"))
    sha = write_safetensors(tensors, str(run / "head.safetensors"), meta)
    (run / "card.toml").write_text(draft.replace(BLANK, sha))


def test_a_readme_edit_keeps_the_run_loadable_but_a_card_or_weights_edit_refuses_it(run):
    """The README is prose for people; card.toml and the weights are the run (the head seals the card)."""
    (run / "README.md").write_text("# My digits model\n\nTrained on my own scans; see the notes below.\n")
    assert verify_run(run).name == "digits-lite0"
    assert zoo.load(run).class_names == [str(i) for i in range(10)]
    card = (run / "card.toml").read_text()
    (run / "card.toml").write_text(card.replace("val_accuracy = ", "val_accuracy = 0.99 # ", 1))
    with pytest.raises(RunError, match=r"card.toml was changed after the run was written: its seal is [0-9a-f]{64}, "
                                       r"head.safetensors records [0-9a-f]{64}; restore it \(README.md is the file to edit\)"):
        zoo.load(run)
    (run / "card.toml").write_text(card)
    data = bytearray((run / "head.safetensors").read_bytes())
    data[-1] ^= 1
    (run / "head.safetensors").write_bytes(bytes(data))
    with pytest.raises(RunError, match="head.safetensors was changed after the run was written"):
        zoo.load(run)


def test_a_head_without_the_seal_of_its_card_is_refused(run):
    _reseal(run)
    assert verify_run(run)
    meta = head_metadata(run / "head.safetensors")
    from safetensors.torch import load_file

    from zoo.weights.safetensors_writer import write_safetensors

    del meta["card_sha256"]
    sha = write_safetensors(load_file(str(run / "head.safetensors")), str(run / "head.safetensors"), meta)
    _edit_card(run, "files", "head.safetensors", sha)
    with pytest.raises(RunError, match="head.safetensors carries no seal of card.toml"):
        verify_run(run)


def test_a_version_1_run_still_loads_and_its_readme_may_be_edited_too(run):
    """Runs written before the seal record README.md's sha256 among their files; that record is no
    longer checked, and the classes and base the head's metadata repeats are checked instead."""
    _reseal(run, version=1)
    assert "card_sha256" not in head_metadata(run / "head.safetensors")
    (run / "README.md").write_text("edited")
    card = verify_run(run)
    assert card.version == 1 and card.files["README.md"] != sha256_file(run / "README.md")
    assert zoo.load(run).class_names == [str(i) for i in range(10)]
    _edit_card(run, "head", "classes", [f"digit {i}" for i in range(10)])
    with pytest.raises(RunError, match=r"head.classes \['digit 0'.*are not the classes head.safetensors was trained with"):
        verify_run(run)


def test_a_base_with_other_weights_is_refused_naming_both(run):
    recorded = "ab" * 32
    _edit_card(run, "base", "weights_sha256", recorded)
    _reseal(run)
    with pytest.raises(RunError) as err:
        load_run(run)
    assert recorded in str(err.value) and zoo.card("efficientnet_lite0").sha256 in str(err.value)


def test_a_head_for_another_feature_size_is_refused_naming_both(run):
    _edit_card(run, "base", "num_features", 1024)
    _reseal(run)
    with pytest.raises(RunError, match="head for 1024 features, but tf_efficientnet_lite0.bundled_in1k gives 1280"):
        load_run(run)
    _edit_card(run, "base", "num_features", 1280)
    _reseal(run, {"classifier.weight": torch.zeros(10, 1024), "classifier.bias": torch.zeros(10)})
    with pytest.raises(RunError, match=r"classifier.weight has shape \(10, 1024\), tf_efficientnet_lite0 expects \(10, 1280\)"):
        load_run(run)


def test_altered_or_missing_files_are_caught(run):
    data = bytearray((run / "head.safetensors").read_bytes())
    data[-1] ^= 1
    (run / "head.safetensors").write_bytes(bytes(data))
    with pytest.raises(RunError, match="head.safetensors was changed after the run was written"):
        verify_run(run)
    (run / "metrics.json").unlink()
    r = run_zoo("predict", str(run), str(run / "README.md"))
    assert r.returncode == 1 and "error:" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(RunError, match="not a run directory"):
        verify_run(run.parent)


def test_predict_on_a_run_shows_the_new_class_names(small_run, small_digits, small_home):
    run, _ = small_run
    image = sorted((small_digits / "7").iterdir())[0]
    r = run_zoo("predict", str(run), str(image), "--json", "--top", "3", env={"ZOO_HOME": str(small_home)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "digits-lite0" and out["base"] == "tf_efficientnet_lite0.bundled_in1k"
    assert out["results"][0]["predictions"][0]["label"] == "7"


def test_a_run_takes_no_new_head(small_run):
    with pytest.raises(zoo.UsageError, match="fine-tuned run: its head and options are fixed"):
        zoo.load(small_run[0], head=3)


def test_merged_export_is_a_plain_timm_folder(run, tmp_path):
    out = tmp_path / "merged"
    r = run_zoo("export", str(run), "--merged", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "tf_efficientnet_lite0" and config["num_classes"] == 10
    assert config["label_names"] == [str(i) for i in range(10)]
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5] and "file" not in config["pretrained_cfg"]
    from safetensors.torch import load_file

    state = load_file(str(out / "model.safetensors"))
    assert torch.equal(state["classifier.weight"], load_run(run).state_dict()["classifier.weight"])


def test_zoo_load_of_a_merged_export_gives_the_runs_logits_and_class_names(run, small_digits, tmp_path):
    from zoo.model.images import open_rgb
    from zoo.transfer.exports import export_merged

    out = export_merged(run, tmp_path / "merged")
    fine_tuned, merged = zoo.load(run), zoo.load(out)
    assert merged.class_names == [str(i) for i in range(10)] and merged.card.name == "digits-lite0"
    assert merged.data_config == fine_tuned.data_config
    images = [sorted((small_digits / str(d)).iterdir())[0] for d in range(10)]
    tf = zoo.transforms(merged)
    x = torch.stack([tf(open_rgb(p)) for p in images])
    with torch.inference_mode():
        got, expected = merged(x), fine_tuned(x)
    assert torch.equal(got, expected)
    assert [row[0][0] for row in zoo.decode(got)] == [row[0][0] for row in zoo.decode(expected)]
    with pytest.raises(zoo.UsageError, match="fine-tuned export: its head and options are fixed"):
        zoo.load(out, head=3)


def test_class_names_are_text_in_the_model_card_never_template_code(small_run):
    from dataclasses import replace

    from zoo.transfer.model_card import model_card_text
    from zoo.transfer.runs import read_run

    card = replace(read_run(small_run[0]), classes=("{{ 7*7 }}", "{% if true %}x{% endif %}"), name="{{ name }}")
    text = model_card_text(card)
    assert "Classes: {{ 7*7 }}, {% if true %}x{% endif %}" in text and "# {{ name }}" in text


@pytest.mark.slow  # four CLI runs (~14 s); test_merged_export_is_a_plain_timm_folder stays quick
def test_export_replaces_only_its_own_folders(run, tmp_path):
    keep = tmp_path / "documents"
    keep.mkdir()
    (keep / "thesis.txt").write_text("precious")
    r = run_zoo("export", str(run), "--merged", str(keep), "--overwrite")
    assert r.returncode == 2 and "does not hold a merged export" in r.stderr
    assert (keep / "thesis.txt").read_text() == "precious"
    out = tmp_path / "merged"
    assert run_zoo("export", str(run), "--merged", str(out)).returncode == 0
    r = run_zoo("export", str(run), "--merged", str(out))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert run_zoo("export", str(run), "--merged", str(out), "--overwrite").returncode == 0


def test_a_published_card_with_a_bad_transform_is_refused(run):
    _edit_card(run, "transform", "input_size", [3, 100000, 224])
    with pytest.raises(RunError, match="transform.input_size"):
        load_run(run)
