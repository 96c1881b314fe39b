"""Regenerate the README's reference blocks from the code they describe.

Three blocks of README.md are written by this script, between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` markers: ``commands`` (every command of the argparse tree with its arguments,
help texts and defaults), ``exceptions`` (the tree in zoo/errors.py's docstring) and ``home`` (the
areas of ZOO_HOME from zoo/home.py). tests/test_readme.py fails when a block is stale; run
``python tools/readme_reference.py`` after changing a command, an exception or an area.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _usage_args(parser: argparse.ArgumentParser) -> str:
    """The positional part of a command's usage line (``OUT [NAME ...]``)."""
    parts = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        name = action.metavar or action.dest.upper()
        parts.append({"*": f"[{name} ...]", "+": f"{name} [{name} ...]", "?": f"[{name}]"}.get(action.nargs, name))
    return " ".join(parts)


def _option(action: argparse.Action, formatter) -> str:
    if action.option_strings:
        flags = ", ".join(action.option_strings)
        if action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
    else:
        flags = action.metavar or action.dest.upper()
    text = formatter._get_help_string(action).replace("%%", "%")
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return f"- `{flags}`: {text}"


def commands_markdown() -> str:
    sys.path.insert(0, str(ROOT))
    from zoo.cli import build_parser

    out: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str], summary: str | None) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        formatter = parser._get_formatter()
        if path != ["zoo"] and not subs:
            usage = _usage_args(parser)
            out.append(f"#### `{' '.join(path + ([usage] if usage else []))}`")
            out.append("")
            out.append(summary or "")
            out.append("")
            out.extend(_option(a, formatter) for a in parser._actions
                       if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)))
            out.append("")
        for sub in subs:
            helps = {c.dest: c.help for c in sub._choices_actions}
            for name, child in sub.choices.items():
                walk(child, path + [name], helps.get(name))

    parser = build_parser()
    out.append("Global options, before the command: " + "; ".join(
        _option(a, parser._get_formatter())[2:] for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)) + ".")
    out.append("")
    walk(parser, ["zoo"], None)
    return "\n".join(out).rstrip() + "\n"


def exceptions_markdown() -> str:
    text = (ROOT / "zoo" / "errors.py").read_text()
    tree = re.search(r"::\n\n(.*?)\n\n", text, re.S).group(1)
    return "```\n" + "\n".join(line[4:] for line in tree.splitlines()) + "\n```\n"


def home_markdown() -> str:
    sys.path.insert(0, str(ROOT))
    from zoo import home

    rows = ["| area | holds | written by | `zoo cache prune` removes |", "|---|---|---|---|"]
    for a in home.AREAS:
        rows.append(f"| `{a.name}/` | {a.holds} | `{a.writer}` | {a.prune} |".replace("<sha256>", "&lt;sha256&gt;"))
    return "\n".join(rows) + "\n"


BLOCKS = {"commands": commands_markdown, "exceptions": exceptions_markdown, "home": home_markdown}


def render(readme: str) -> str:
    """``readme`` with every generated block replaced by what the code says now."""
    for name, make in BLOCKS.items():
        begin, end = f"<!-- BEGIN {name} (tools/readme_reference.py) -->", f"<!-- END {name} -->"
        if begin not in readme or end not in readme:
            raise SystemExit(f"README.md lacks the markers of the {name!r} block: {begin} ... {end}")
        head, rest = readme.split(begin, 1)
        _, tail = rest.split(end, 1)
        readme = f"{head}{begin}\n{make()}{end}{tail}"
    return readme


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    print(f"rewrote the generated blocks of {README}")
