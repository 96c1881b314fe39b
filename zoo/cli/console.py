"""What every command uses to talk to a person: rich consoles (stdout for results, stderr for
progress and errors), JSON output, argparse number types and progress bars. The library never
prints; it returns data, logs, and calls the progress hooks these bars provide.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
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
non_negative_float = _checked(float, lambda v: v >= 0, "a number >= 0")
fraction_or_zero = _checked(float, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")


#: what --engine takes (zoo/model/engine.py ENGINES; repeated here: zoo list must not import torch)
ENGINE_CHOICES = ("torch", "onnxruntime", "auto")


def add_engine_arguments(p, what: str = "the forward passes") -> None:
    """``--engine`` and ``--threads``, one wording on every command that runs a model over images."""
    p.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                   help=f"what runs {what}: torch, onnxruntime (an ONNX graph built once per model and kept "
                        "in ZOO_HOME/engines; the fast extra), or auto: ONNX Runtime on the CPU when installed, "
                        "torch on CUDA (default: $ZOO_ENGINE, else auto)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads of the forward passes (default: the cores)")


def apply_threads(threads: int | None) -> None:
    """``--threads`` for torch too (ONNX Runtime takes it per session)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


class ProgressDisplay:
    """Draws the events of :mod:`zoo.util.progress` with rich, on stderr: the receiver every command
    passes as ``progress=``.

    One bar per running task (bytes with size and speed, other units as done/total and a rate);
    when a task ends its bar is replaced by one summary line, and messages (a fine-tune's strategy,
    its epochs) are printed above the bars as they come, so lines and bars never interleave: what
    stays on the screen reads top to bottom in the order it happened. ``bars=False`` (``-q``, or
    output for a script) keeps the messages and drops bars and summaries. Use it as a context
    manager: the bars live inside the block.
    """

    def __init__(self, bars: bool = True):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console(stderr=True)
        self.bars = bars
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), _Amount(), TimeRemainingColumn(),
                                 console=self.console, disable=not bars, transient=True)
        self.tasks: dict[int, _Shown] = {}  # by the event's task id

    def __enter__(self) -> "ProgressDisplay":
        self.live = self.bars and self.console.is_terminal  # into a file or a pipe: the summary lines only
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:  # rich's stop() on a console that is not a terminal would print an empty line
            self.progress.stop()

    def __call__(self, event) -> None:
        kind = event.kind
        if kind == "message":
            self.console.print(event.label)
        elif kind == "start":
            label = event.label  # a bar's label is shortened in the middle; its summary line keeps it whole
            short = label if len(label) <= 64 else label[:40] + "..." + label[-21:]
            bar = self.progress.add_task(short, total=event.total, unit=event.unit)
            self.tasks[event.task] = _Shown(bar, short, label, time.perf_counter())
        elif event.task in self.tasks:
            shown = self.tasks[event.task]
            if kind == "advance":
                shown.done += event.advance
                self.progress.advance(shown.bar, event.advance)
            elif kind == "status":
                self.progress.update(shown.bar, description=f"{shown.short}: {event.label}")
            elif kind == "end":
                self.progress.remove_task(shown.bar)
                del self.tasks[event.task]
                if self.bars and not event.error:
                    seconds = time.perf_counter() - shown.started
                    self.console.print(f"{shown.label}: {_summary(shown.done, event.unit, seconds)}", style="dim")


@dataclass
class _Shown:
    """A task on the screen: its rich bar, its label (shortened for the bar, whole for the summary)."""

    bar: Any
    short: str
    label: str
    started: float
    done: float = 0.0


def _amount(n: float, unit: str) -> str:
    from rich.filesize import decimal

    return decimal(int(n)) if unit == "bytes" else f"{int(n)} {unit}".rstrip()


def _rate(per_second: float, unit: str) -> str:
    if unit == "bytes":
        return f"{_amount(per_second, unit)}/s"
    return f"{per_second:.1f} {unit}/s" if per_second < 10 else f"{per_second:.0f} {unit}/s"


def _summary(done: float, unit: str, seconds: float) -> str:
    rate = f", {_rate(done / seconds, unit)}" if seconds > 0.05 and done and unit in ("bytes", "images") else ""
    return f"{_amount(done, unit)} in {seconds:.1f} s{rate}"


def _Amount():  # noqa: N802 - a rich column, defined once rich is imported
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Amount(ProgressColumn):
        """done/total in the task's unit (bytes as kB/MB/GB), with a rate for bytes and images."""

        def render(self, task):
            unit = task.fields.get("unit", "")
            number = "bytes" if unit == "bytes" else ""  # bytes as kB/MB/GB, other units as counts
            text = _amount(task.completed, number) + (f"/{_amount(task.total, number)}" if task.total else "")
            text += f" {unit}" if unit and unit != "bytes" else ""
            speed = task.finished_speed or task.speed
            if speed and unit in ("bytes", "images"):
                text += f"  {_rate(speed, unit)}"
            return Text(text)

    return Amount()
