"""The ``zoo`` command: parse arguments, call the library, render with rich, map errors to exit codes.

Exit codes: 0 ok, 1 an operation failed (:class:`~zoo.errors.ZooError`), 2 bad usage or an unknown
name (:class:`~zoo.errors.UsageError`, argparse errors). One module per group of commands; each
imports torch, timm or huggingface_hub only inside the commands that need them, so ``zoo list``
and ``zoo info`` stay card-only.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from zoo import __version__
from zoo.errors import UsageError, ZooError


def console(stderr: bool = False):
    from rich.console import Console

    from zoo.util import distributed

    # markup off: card text (and error messages) may hold '[...]', which is not rich markup here;
    # under torchrun only rank 0 speaks
    out = Console(stderr=stderr, highlight=False, markup=False, emoji=False,
                  quiet=distributed.active() and not distributed.is_main())
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200  # piped into a file or a pager: wrapping at 80 columns only hurts
    return out


def print_json(data: Any) -> int:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    return 0


def _checked(parse, ok, expected: str):
    """An argparse type: ``parse`` the text, then require ``ok(value)``, else say what was expected."""

    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return check


positive_int = _checked(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _checked(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
fraction = _checked(float, lambda v: 0 < v < 1, "a fraction between 0 and 1")


def progress_bars():
    """A rich Progress on stderr, and ``start(label, total)`` that adds a bar and returns its
    ``advance(n)`` (with an images/s rate unless ``rate=False``): what library progress hooks take."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console(stderr=True))

    def start(label: str, total: int, rate: bool = True):
        task = bar.add_task(label, total=total, rate="")
        t0 = time.perf_counter()

        def advance(n: int) -> None:
            done = bar.tasks[task].completed + n
            speed = f"{done / max(time.perf_counter() - t0, 1e-9):.0f} images/s" if rate else ""
            bar.update(task, advance=n, rate=speed)

        return advance

    return bar, start


def build_parser() -> argparse.ArgumentParser:
    from zoo.cli import cards, compare, mirror, predict, runs, weights

    parser = argparse.ArgumentParser(prog="zoo", description="A model-zoo hub for transfer learning.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cards.add_parsers(sub)
    weights.add_parsers(sub)
    predict.add_parsers(sub)
    mirror.add_parsers(sub)
    runs.add_parsers(sub)
    compare.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script and ``python -m zoo``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from zoo.util import distributed

    try:
        return args.run(args)
    except UsageError as exc:
        console(stderr=True).print(f"error: {exc}", style="red")
        return 2
    except ZooError as exc:
        console(stderr=True).print(f"error: {exc}", style="red")
        return 1
    except OSError as exc:  # the file system said no (permissions, no space, missing directory)
        console(stderr=True).print(f"error: {exc}", style="red")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zoo list | head`
        return 0
    finally:
        distributed.shutdown()
