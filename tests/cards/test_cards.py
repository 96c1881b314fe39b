"""Card validation (zoo/cards/card.py): a broken card names its file and field."""

import dataclasses

import pytest

from zoo.cards.card import Card, card_from_dict, dump_card, read_card, write_card
from zoo.errors import CardError

from conftest import CARDS_DIR, shipped_card_data, tiny_card, write_toml


def test_shipped_card_round_trips_through_toml(tmp_path):
    card = read_card(CARDS_DIR / "resnet50.a1_in1k.toml")
    assert isinstance(card, Card) and card.name == "resnet50.a1_in1k"
    out = write_card(card, tmp_path / "copy.toml", header="a header")
    again = read_card(out)
    assert again == card
    assert open(out).read().startswith("# a header\n")
    assert not list(tmp_path.glob(".*.tmp")), "atomic write leaves no temp file"


def test_card_is_frozen():
    card = card_from_dict(tiny_card())
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.top1 = 99.0


def _error_for(tmp_path, data, name="bad.toml"):
    path = write_toml(tmp_path / name, data)
    with pytest.raises(CardError) as info:
        read_card(path)
    return info.value, path


@pytest.mark.parametrize("change, field, words", [
    ({"top1": "high"}, "top1", "number"),
    ({"top1": 101.0}, "top1", "[0, 100]"),
    ({"params": -3}, "params", "integer"),
    ({"input_size": [3, 224]}, "input_size", "[channels, height, width]"),
    ({"mean": [0.5, 0.5]}, "mean", "three numbers"),
    ({"std": [0.5, 0.0, 0.5]}, "std", "> 0"),
    ({"interpolation": "cubic"}, "interpolation", "bicubic"),
    ({"sha256": "abc"}, "sha256", "64 lowercase hex"),
    ({"hub_repo": "no-slash"}, "hub_repo", "org/name"),
    ({"aliases": "ResNet50"}, "aliases", "list"),
    ({"name": "Zootest_tiny.A", "architecture": "Zootest_tiny", "tag": "A"}, "name", "lowercase"),
    ({"tag": "b"}, "name", "architecture.tag"),
    ({"sources": []}, "sources", "at least 1"),
    ({"sources": [{"uri": "ftp://x/y"}]}, "sources[0].uri", "unsupported URI scheme"),
    ({"sources": [{"uri": "hf://a/b/c"}, {"uri": "hf://a/b/c", "sha256": "xyz"}]}, "sources[1].sha256", "sha256"),
    ({"topp1": 70.0}, "topp1", "unknown field"),
    ({"keras": {"name": "X"}}, "keras.source", "missing"),
])
def test_bad_field_is_named_with_the_file(tmp_path, change, field, words):
    error, path = _error_for(tmp_path, tiny_card(**change))
    assert error.where == str(path)
    assert error.field == field
    assert str(path) in str(error) and repr(field) in str(error)
    assert words in str(error)


def test_missing_required_field(tmp_path):
    data = tiny_card()
    del data["input_size"]
    error, _ = _error_for(tmp_path, data)
    assert error.field == "input_size" and "missing required field" in str(error)


def test_numbers_need_their_source(tmp_path):
    data = tiny_card()
    del data["metrics_source"]
    error, _ = _error_for(tmp_path, data)
    assert error.field == "metrics_source"
    data = tiny_card()
    del data["weights_mb_source"]
    error, _ = _error_for(tmp_path, data)
    assert error.field == "weights_mb_source"


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "unterminated\n')
    with pytest.raises(CardError) as info:
        read_card(path)
    assert str(path) in str(info.value) and "not valid TOML" in str(info.value)


def test_empty_sha256_slot_means_unpinned_and_is_kept_visible():
    data = tiny_card(sha256="")
    card = card_from_dict(data)
    assert card.sha256 is None
    assert 'sha256 = ""' in dump_card(card)


def test_record_has_every_field_and_derived_size():
    card = card_from_dict(shipped_card_data("resnet50.a1_in1k"))
    record = card.to_record()
    assert set(record) == {f.name for f in dataclasses.fields(Card)} | {"size_mb"}
    assert record["size_mb"] == card.weights_mb  # not pinned yet: the computed figure
    pinned = dataclasses.replace(card, size_bytes=102_000_000)
    assert pinned.size_mb == 102.0


@pytest.mark.parametrize("change, field", [
    ({"params": 10**400}, "params"),
    ({"top1": 10**400}, "top1"),
    ({"metrics_source": ""}, "metrics_source"),
    ({"weights_mb_source": ""}, "weights_mb_source"),
])
def test_out_of_range_and_empty_provenance_are_field_errors(tmp_path, change, field):
    error, _ = _error_for(tmp_path, tiny_card(**change))
    assert error.field == field


def test_non_utf8_card_names_the_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(CardError, match="not UTF-8") as info:
        read_card(path)
    assert str(path) in str(info.value)
