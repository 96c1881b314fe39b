"""Name resolution, user cards, register(), sorting and filtering (zoo/cards/registry.py)."""

import pytest

import zoo
from zoo.errors import AmbiguousModelError, CardError, UnknownModelError, UsageError
from zoo.cards.registry import get_registry, list_models

from conftest import run_zoo, tiny_card, write_toml


@pytest.mark.parametrize("name, expected", [
    ("resnet50.tv_in1k", "resnet50.tv_in1k"),            # 1. exact card name
    ("ResNet50", "resnet50.tv_in1k"),                    # 2. Keras alias
    ("InceptionV3", "inception_v3.tf_in1k"),             # 2. alias on the tf_ port
    ("EfficientNetB3", "tf_efficientnet_b3.aa_in1k"),
    ("resnet50", "resnet50.a1_in1k"),                    # 3. architecture -> timm's default tag
    ("inception_v3", "inception_v3.tv_in1k"),
    ("vgg16", "vgg16.tv_in1k"),                          # 3. single card: no mark needed
    ("efficientnet_lite0", "tf_efficientnet_lite0.bundled_in1k"),  # 2 beats 3: alias over architecture
    ("tf_efficientnet_lite1", "tf_efficientnet_lite1.bundled_in1k"),
    ("resnet50v2", "resnetv2_50.a1h_in1k"),              # 4. case-insensitive alias
    ("RESNET50.TV_IN1K", "resnet50.tv_in1k"),            # 4. case-insensitive name
    ("  vgg19 ", "vgg19.tv_in1k"),
])
def test_resolution_order(name, expected):
    assert zoo.card(name).name == expected


def test_efficientnet_lite0_full_name_still_reaches_timm_own_weights():
    card = zoo.card("efficientnet_lite0.ra_in1k")
    assert card.architecture == "efficientnet_lite0" and card.tag == "ra_in1k"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as info:
        zoo.card("resnt50")
    assert "resnet50" in info.value.suggestions
    assert "did you mean" in str(info.value) and "resnet50" in str(info.value)
    with pytest.raises(UnknownModelError) as info:
        zoo.card("qwertyuiop")
    assert info.value.suggestions == () and "zoo list" in str(info.value)


def test_user_cards_are_searched_after_shipped(user_cards):
    write_toml(user_cards / "tiny.toml", tiny_card("zootest_tiny.a", aliases=["Tiny"]))
    # a user card reusing a shipped name is shadowed, like a later PATH entry
    write_toml(user_cards / "shadow.toml", tiny_card("resnet50.tv_in1k", top1=1.0))
    assert zoo.card("Tiny").name == "zootest_tiny.a"
    assert zoo.card("zootest_tiny").name == "zootest_tiny.a"
    assert zoo.card("resnet50.tv_in1k").top1 == pytest.approx(76.156)
    assert [c.top1 for c in get_registry().shadowed] == [1.0]


def test_several_user_dirs_like_path(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_toml(a / "x.toml", tiny_card("zootest_tiny.a", top1=10.0))
    write_toml(b / "x.toml", tiny_card("zootest_tiny.a", top1=20.0))
    write_toml(b / "y.toml", tiny_card("zootest_other.b"))
    monkeypatch.setenv("ZOO_CARDS_PATH", f"{a}:{tmp_path / 'missing'}::{b}")
    assert zoo.card("zootest_tiny.a").top1 == 10.0
    assert zoo.card("zootest_other.b").name == "zootest_other.b"


def test_new_card_file_is_seen_without_restart(user_cards):
    with pytest.raises(UnknownModelError):
        zoo.card("zootest_tiny.a")
    write_toml(user_cards / "tiny.toml", tiny_card("zootest_tiny.a"))
    assert zoo.card("zootest_tiny.a").name == "zootest_tiny.a"


def test_architecture_with_several_cards_needs_a_default(user_cards):
    write_toml(user_cards / "a.toml", tiny_card("zootest_tiny.a"))
    write_toml(user_cards / "b.toml", tiny_card("zootest_tiny.b"))
    with pytest.raises(AmbiguousModelError) as info:
        zoo.card("zootest_tiny")
    assert "zootest_tiny.a" in str(info.value) and "zootest_tiny.b" in str(info.value)
    write_toml(user_cards / "b.toml", tiny_card("zootest_tiny.b", default=True))
    assert zoo.card("zootest_tiny").name == "zootest_tiny.b"


def test_duplicate_name_in_one_directory_is_one_bad_card(user_cards):
    write_toml(user_cards / "one.toml", tiny_card("zootest_tiny.a"))
    write_toml(user_cards / "two.toml", tiny_card("zootest_tiny.a"))
    assert zoo.card("resnet50").name == "resnet50.a1_in1k"  # everything else still works
    assert get_registry().find("zootest_tiny.a").path == str(user_cards / "one.toml")
    [(path, why)] = get_registry().problems
    assert path == str(user_cards / "two.toml") and "one.toml" in why


def test_a_broken_user_card_is_skipped_with_one_warning_naming_file_and_field(user_cards, caplog):
    import logging

    path = write_toml(user_cards / "broken.toml", tiny_card("zootest_tiny.a", crop_pct=7))
    (user_cards / "garbage.toml").write_bytes(b"name = \"unterminated\n\xff")
    write_toml(user_cards / "good.toml", tiny_card("zootest_good.a"))
    with caplog.at_level(logging.WARNING, logger="zoo.cards.registry"):
        names = {c.name for c in list_models()}
        zoo.card("resnet50")  # a second lookup: no second warning
    assert "zootest_good.a" in names and "zootest_tiny.a" not in names and len(names) > 50
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("zoo cards check" in w for w in warned)
    assert any(str(path) in w and "'crop_pct'" in w for w in warned)
    assert any("garbage.toml" in w for w in warned)
    from zoo.cards.registry import check_cards

    good, problems = check_cards(user_cards)
    assert good == 1 and sorted(p.rsplit("/", 1)[-1] for p, _ in problems) == ["broken.toml", "garbage.toml"]
    r = run_zoo("cards", "check", str(user_cards))
    assert r.returncode == 1 and "broken.toml: field 'crop_pct'" in r.stdout and "1 cards ok, 2 problems" in r.stdout


def test_a_card_from_elsewhere_never_takes_a_name_another_card_owns(user_cards, tmp_path, monkeypatch):
    """The hijack: a card listing the alias ``resnet50`` would make zoo.load("resnet50") load it
    (an alias wins over an architecture). Each claim of an earlier owner is refused, case-folded too."""
    write_toml(user_cards / "alias.toml", tiny_card("zootest_evil.a", aliases=["resnet50"]))
    write_toml(user_cards / "folded.toml", tiny_card("zootest_evil.b", aliases=["RESNET50.TV_IN1K"]))
    write_toml(user_cards / "default.toml", tiny_card("tf_efficientnet_lite0.evil", default=True))
    write_toml(user_cards / "fine.toml", tiny_card("tf_efficientnet_lite0.mine"))  # same architecture, no claim
    assert zoo.card("resnet50").name == "resnet50.a1_in1k"
    assert zoo.card("Resnet50.TV_in1k").name == "resnet50.tv_in1k"
    assert zoo.card("tf_efficientnet_lite0").name == "tf_efficientnet_lite0.bundled_in1k"
    assert zoo.card("tf_efficientnet_lite0.mine").path == str(user_cards / "fine.toml")
    refused = {c.name: why for c, why in get_registry().refused}
    assert set(refused) == {"zootest_evil.a", "zootest_evil.b", "tf_efficientnet_lite0.evil"}
    assert "'resnet50' belongs to resnet50.a1_in1k" in refused["zootest_evil.a"]
    assert "default of 'tf_efficientnet_lite0'" in refused["tf_efficientnet_lite0.evil"]
    # a later directory of ZOO_CARDS_PATH may not take what an earlier one owns either
    later = tmp_path / "later"
    later.mkdir()
    write_toml(later / "x.toml", tiny_card("zootest_later.a", aliases=["zootest_good_alias"]))
    write_toml(user_cards / "owner.toml", tiny_card("zootest_owner.a", aliases=["zootest_good_alias"]))
    monkeypatch.setenv("ZOO_CARDS_PATH", f"{user_cards}:{later}")
    assert zoo.card("zootest_good_alias").name == "zootest_owner.a"
    with pytest.raises(UsageError, match="'resnet50' belongs to resnet50.a1_in1k"):
        zoo.register(tiny_card("zootest_code.b", aliases=["resnet50"]))
    assert get_registry().find("zootest_code.b") is None


def test_a_card_nested_too_deeply_or_too_large_is_a_card_error(tmp_path):
    from zoo.cards.card import read_card

    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(CardError, match="nested too deeply"):
        read_card(deep)
    big = tmp_path / "big.toml"
    big.write_text('notes = "' + "x" * 300_000 + '"\n')
    with pytest.raises(CardError, match="not a card"):
        read_card(big)


def test_register_in_code(tmp_path):
    card = zoo.register(tiny_card("zootest_code.a", aliases=["CodeNet"]))
    assert zoo.card("CodeNet") is card
    with pytest.raises(UsageError, match="already exists"):
        zoo.register(tiny_card("zootest_code.a"))
    with pytest.raises(UsageError, match="already exists"):
        zoo.register(tiny_card("resnet50.tv_in1k"))
    replaced = zoo.register(tiny_card("resnet50.tv_in1k", top1=12.5), overwrite=True)
    assert zoo.card("resnet50.tv_in1k") is replaced
    zoo.unregister("resnet50.tv_in1k")
    assert zoo.card("resnet50.tv_in1k").top1 == pytest.approx(76.156)
    path = write_toml(tmp_path / "file.toml", tiny_card("zootest_file.a"))
    assert zoo.register(path).path == str(path)


def test_other_tags():
    reg = get_registry()
    others = {c.name for c in reg.other_tags(zoo.card("resnet50"))}
    assert others == {"resnet50.tv_in1k", "resnet50.tv2_in1k"}


# --- list_models: sorting and filtering


def test_sort_top1_best_first_and_asc_flips():
    cards = list_models(sort="top1")
    top1 = [c.top1 for c in cards if c.top1 is not None]
    assert top1 == sorted(top1, reverse=True) and len(top1) == len(cards)
    assert [c.top1 for c in list_models(sort="top1", descending=False)] == sorted(top1)


@pytest.mark.parametrize("key, attr", [("params", "params"), ("size", "size_mb"), ("depth", "depth"), ("res", "resolution")])
def test_sizes_sort_smallest_first(key, attr):
    values = [getattr(c, attr) for c in list_models(sort=key)]
    assert values == sorted(values)
    assert [getattr(c, attr) for c in list_models(sort=key, descending=True)] == sorted(values, reverse=True)


def test_cards_without_the_sort_value_come_last(user_cards):
    data = tiny_card("zootest_nometrics.a")
    for key in ("top1", "top5", "metrics_source", "metrics_img_size", "metrics_crop_pct", "extra_metrics"):
        data.pop(key, None)
    write_toml(user_cards / "n.toml", data)
    for desc in (True, False):
        assert list_models(sort="top1", descending=desc)[-1].name == "zootest_nometrics.a"


def test_pattern_matches_names_aliases_and_architectures_case_insensitively():
    names = {c.name for c in list_models("efficientnet*")}
    assert "efficientnet_b0.ra_in1k" in names
    assert "tf_efficientnet_b0.aa_in1k" in names            # via alias EfficientNetB0
    assert "tf_efficientnet_lite0.bundled_in1k" in names    # via alias efficientnet_lite0
    assert "resnet50.a1_in1k" not in names
    assert {c.name for c in list_models("VGG1?")} == {"vgg16.tv_in1k", "vgg19.tv_in1k"}


def test_filters():
    cards = list_models(min_top1=84.0)
    assert cards and all(c.top1 >= 84.0 for c in cards)
    cards = list_models(max_params=6_000_000, sort="params")
    assert cards and all(c.params <= 6_000_000 for c in cards)
    assert "tf_efficientnet_lite0.bundled_in1k" in {c.name for c in cards}
    bsd = list_models(license="BSD-3-Clause")
    assert bsd and {c.license for c in bsd} == {"bsd-3-clause"}
    assert list_models("vgg*", min_top1=99) == []


def test_unknown_sort_key():
    with pytest.raises(UsageError, match="top1"):
        list_models(sort="accuracy")


# --- the JSON index in ZOO_HOME that spares re-parsing TOML on every `zoo list`


def _top1_via_cli(name, env):
    import json

    from conftest import run_zoo

    result = run_zoo("info", name, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["top1"]


def test_index_is_written_used_and_invalidated_by_an_edit(user_cards, isolated_env):
    import json
    import os

    env = {"ZOO_CARDS_PATH": str(user_cards), "ZOO_HOME": str(isolated_env)}
    card_file = write_toml(user_cards / "tiny.toml", tiny_card("zootest_tiny.a", top1=10.0))
    assert _top1_via_cli("zootest_tiny.a", env) == 10.0
    index = isolated_env / "index" / "cards.json"
    data = json.loads(index.read_text())
    assert any(r["name"] == "zootest_tiny.a" for r in data["cards"])
    # the index is what the next process reads: a record changed in it (files unchanged) shows up
    for r in data["cards"]:
        if r["name"] == "zootest_tiny.a":
            r["top1"] = 11.0
    index.write_text(json.dumps(data))
    assert _top1_via_cli("zootest_tiny.a", env) == 11.0
    # editing the card file invalidates the index
    write_toml(card_file, tiny_card("zootest_tiny.a", top1=12.0))
    os.utime(card_file, ns=(1, 1))  # even with an old mtime: size/inode/mtime all enter the stamp
    assert _top1_via_cli("zootest_tiny.a", env) == 12.0


def test_corrupt_or_unwritable_index_only_costs_a_parse(user_cards, isolated_env, tmp_path):
    env = {"ZOO_CARDS_PATH": str(user_cards), "ZOO_HOME": str(isolated_env)}
    write_toml(user_cards / "tiny.toml", tiny_card("zootest_tiny.a", top1=10.0))
    index = isolated_env / "index" / "cards.json"
    index.parent.mkdir(parents=True)
    index.write_bytes(b"\x00{not json")
    assert _top1_via_cli("zootest_tiny.a", env) == 10.0
    assert index.read_text().startswith("{")  # rewritten
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert _top1_via_cli("zootest_tiny.a", {**env, "ZOO_HOME": str(blocker / "home")}) == 10.0


def test_record_round_trip_for_every_shipped_card():
    from zoo.cards.card import card_from_record

    for card in get_registry().cards:
        again = card_from_record(card.to_record())
        assert again == card and again.path == card.path


def test_alias_beats_architecture_only_in_its_exact_case():
    # 'ResNet50' is an explicit alias (Keras-closest weights); 'resnet50' is the architecture's default
    assert zoo.card("ResNet50").name == "resnet50.tv_in1k"
    assert zoo.card("resnet50").name == "resnet50.a1_in1k"
    assert zoo.card("Resnet18").name == "resnet18.a1_in1k"  # case-insensitive architecture


def test_hidden_and_non_toml_files_are_not_cards(user_cards):
    (user_cards / "._tiny.toml").write_bytes(b"\x00\x05\x16\x07 binary resource fork")
    (user_cards / "notes.txt").write_text("not a card")
    write_toml(user_cards / "tiny.toml", tiny_card("zootest_tiny.a"))
    assert zoo.card("zootest_tiny.a").name == "zootest_tiny.a"


def test_two_defaults_for_one_architecture_are_ambiguous(user_cards):
    write_toml(user_cards / "a.toml", tiny_card("zootest_tiny.a", default=True))
    write_toml(user_cards / "b.toml", tiny_card("zootest_tiny.b", default=True))
    with pytest.raises(AmbiguousModelError):
        zoo.card("zootest_tiny")


def test_register_refuses_a_taken_alias_and_non_cards():
    with pytest.raises(UsageError, match="already taken by 'resnet50.tv_in1k'"):
        zoo.register(tiny_card("zootest_code.a", aliases=["ResNet50"]))
    with pytest.raises(UsageError, match="not int"):
        zoo.register(123)


@pytest.mark.parametrize("content", [b"[]", b"null", b"[" * 100000, b'{"version": 1}'])
def test_foreign_json_in_the_index_is_ignored(isolated_env, content):
    from conftest import run_zoo

    index = isolated_env / "index" / "cards.json"
    index.parent.mkdir(parents=True)
    index.write_bytes(content)
    result = run_zoo("info", "vgg16", env={"ZOO_HOME": str(isolated_env)})
    assert result.returncode == 0 and "vgg16.tv_in1k" in result.stdout, result.stderr


def test_same_size_same_mtime_edit_is_seen(user_cards, isolated_env):
    import os

    env = {"ZOO_CARDS_PATH": str(user_cards), "ZOO_HOME": str(isolated_env)}
    card_file = write_toml(user_cards / "tiny.toml", tiny_card("zootest_tiny.a", top1=10.0))
    st = os.stat(card_file)
    assert _top1_via_cli("zootest_tiny.a", env) == 10.0
    write_toml(card_file, tiny_card("zootest_tiny.a", top1=20.0))
    os.utime(card_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # like cp -p: same size, same mtime
    assert os.stat(card_file).st_size == st.st_size
    assert _top1_via_cli("zootest_tiny.a", env) == 20.0
