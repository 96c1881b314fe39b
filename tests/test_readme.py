"""The README teaches in the order a newcomer needs, and its reference is the code's: every command
and option (the argparse tree), every environment variable (zoo/config.py), every exit code (zoo/cli),
every exception (zoo/errors.py) and every ZOO_HOME area (zoo/home.py)."""

import re
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "tools"))
import readme_reference  # noqa: E402


def _section(title: str) -> str:
    """The text of the ``###``/``##`` section with this title, up to the next heading of its level or above."""
    m = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^#{{1,3}} |\Z)", README, re.M | re.S)
    assert m, f"README has no section {title!r}"
    return m.group(2)


def test_sections_come_in_the_order_a_newcomer_needs():
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[:5] == ["Quick start", "Install elsewhere", "Concepts", "Guides", "Reference"], headings
    guides = re.findall(r"^### (.+)$", README.split("\n## Guides\n")[1].split("\n## Reference\n")[0], re.M)
    assert guides[:10] == ["Browse the models", "Load a model and predict", "Fine-tune a new head",
                           "Evaluate and predict on folders", "Run faster on a CPU: the ONNX Runtime engine",
                           "Compare backbones", "Publish a head", "Offline machines",
                           "Serve a hub", "Past one machine"], guides
    reference = re.findall(r"^### (.+)$", README.split("\n## Reference\n")[1], re.M)
    assert reference == ["Commands", "Environment variables", "Exit codes", "Exceptions", "`ZOO_HOME` layout"]
    assert "pip install zoo-hub" in _section("Install elsewhere")


def test_generated_blocks_are_current():
    # commands with their options, help and defaults; the exception tree; the ZOO_HOME areas
    assert readme_reference.render(README) == README, "run: python tools/readme_reference.py"


def test_every_command_and_option_is_in_the_reference():
    import argparse

    from zoo.cli import build_parser

    commands = _section("Commands")

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                assert any(f"`{o}" in commands or f", {o}" in commands for o in action.option_strings), \
                    f"{' '.join(path)} {action.option_strings} is not in the README's reference"
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) and len(path) > 1:
            assert f"#### `{' '.join(path)}" in commands, f"{' '.join(path)} is not in the README's reference"

    walk(build_parser(), ["zoo"])


def test_every_environment_variable_is_in_the_table():
    source = (ROOT / "zoo" / "config.py").read_text()
    read = set(re.findall(r'environ\.get\("([A-Z_0-9]+)"', source)) | set(re.findall(r'_truthy\("([A-Z_0-9]+)"\)', source))
    read |= set(re.findall(r'"([A-Z_0-9]+)" in os\.environ', source)) | set(re.findall(r'_ENV = "([A-Z_0-9]+)"', source))
    assert {"ZOO_HOME", "ZOO_OFFLINE", "HF_ENDPOINT", "ZOO_LOG_LEVEL"} <= read
    table = _section("Environment variables")
    listed = set(re.findall(r"^\| `([A-Z_0-9]+)`(?:, `([A-Z_0-9]+)`)?", table, re.M))
    names = {n for pair in listed for n in pair if n}
    assert read <= names, f"not in the README's table: {sorted(read - names)}"


def test_every_exit_code_is_in_the_table():
    source = (ROOT / "zoo" / "cli" / "__init__.py").read_text()
    main = source[source.index("def main("):source.index("def _report(")]
    codes = {int(c) for c in re.findall(r"return (\d+)\b", main)}
    assert codes == {0, 1, 2, 130}
    table = _section("Exit codes")
    assert {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)} == codes


def test_every_exception_and_area_is_in_the_reference():
    import zoo
    from zoo import errors, home

    tree = _section("Exceptions")
    classes = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)
               and value.__module__ == "zoo.errors"}
    for name in classes:
        assert re.search(rf"\b{name}\b", tree), f"{name} is not in the README's exception tree"
        assert getattr(zoo, name) is getattr(errors, name)  # and importable from zoo
    layout = _section("`ZOO_HOME` layout")
    for area in home.AREAS:
        assert f"`{area.name}/`" in layout
