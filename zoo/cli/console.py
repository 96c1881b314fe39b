"""What every command uses to talk to a person: rich consoles (stdout for results, stderr for
progress and errors), JSON output, argparse number types and progress bars. The library never
prints; it returns data, logs, and calls the progress hooks these bars provide.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from zoo import config
from zoo.util import distributed


def console(stderr: bool = False):
    from rich.console import Console  # rich only once a command prints

    # markup off: card text (and error messages) may hold '[...]', which is not rich markup here;
    # under torchrun only rank 0 speaks
    out = Console(stderr=stderr, highlight=False, markup=False, emoji=False,
                  quiet=distributed.active() and not distributed.is_main())
    if not out.is_terminal and not config.terminal_columns_set():
        out.width = 200  # piped into a file or a pager: wrapping at 80 columns only hurts
    return out


def print_json(data: Any) -> int:
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
