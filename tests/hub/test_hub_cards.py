"""README metadata as the hub reads it (zoo/hub/cards.py): any YAML a README can hold becomes JSON
the answer can carry, or a refusal that says why; never a server error."""

import json

import pytest

from zoo.hub.cards import front_matter, info_fields, problems


@pytest.mark.parametrize("block, expected", [
    ("d: 2024-05-01\n2020-01-01: k", {"d": "2024-05-01", "2020-01-01": "k"}),
    ("s: !!set {b, a}", {"s": ["a", "b"]}),
    ("o: !!omap [ {d: 2020-01-01} ]", {"o": [["d", "2020-01-01"]]}),
    ("h: 0x" + "f" * 4000, {"h": None}),
    ("n: .nan\ni: -.inf", {"n": "nan", "i": "-inf"}),
    ("b: !!binary aGk=", {"b": None}),
    ("x: &x [1]\ny: *x", {"x": [1], "y": [1]}),
])
def test_yaml_values_become_json(block, expected):
    got = front_matter(f"---\n{block}\n---\n# text\n")
    assert got == expected and json.loads(json.dumps(got)) == expected


@pytest.mark.parametrize("block, message", [
    ("[" * 50_000, "nests deeper than 64 levels"),
    ("\n".join(["a0: &a0 [" + ",".join(["lol"] * 100) + "]"] + [f"a{i}: &a{i} [*a{i-1}, *a{i-1}]" for i in range(1, 15)]),
     "expands to too much"),  # 28 aliases, 1.6 million values once expanded
    ("a: &a 1\n" + "\n".join(f"k{i}: *a" for i in range(40)), "40 YAML aliases; at most 32"),
    ("tags: [unclosed", "not valid YAML"),
])
def test_hostile_or_broken_yaml_is_refused_with_the_reason(block, message):
    with pytest.raises(ValueError, match=message):
        front_matter(f"---\n{block}\n---\n")


def test_no_block_typed_fields_and_derived_tags():
    assert front_matter("# just text\n") is None
    assert problems({"license": 5, "tags": ["a", 1]}) == ["license must be str or list, not int", "tags must be a list of strings"]
    assert info_fields({"library_name": "timm", "license": ["mit", "apache-2.0"], "tags": ["a", "timm"]}, "model") == {
        "cardData": {"library_name": "timm", "license": ["mit", "apache-2.0"], "tags": ["a", "timm"]},
        "library_name": "timm", "tags": ["a", "timm", "license:mit", "license:apache-2.0"]}
    assert "library_name" not in info_fields({"library_name": "x"}, "dataset")
