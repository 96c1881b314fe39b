"""One progress protocol for every long job: pull, verify, extract, train, compare, export, mirror.

Every public function that can take a while has a ``progress=`` parameter taking a *receiver*: any
callable of one :class:`Event` (``None``: nobody listens). The library never prints; the ``zoo``
command passes a receiver that draws rich bars (``zoo.cli.console.ProgressDisplay``), and a Python
caller passes whatever it likes::

    zoo.pull("resnet50", progress=print)                  # every event, as a line
    events = []; zoo.verify(progress=events.append)        # collect them
    def show(e):                                           # or draw your own bar
        if e.kind == "advance": bar.update(e.advance)

A job is made of *tasks* (one per file pulled, one extraction pass, one training loop), each with a
unique ``task`` id, and reports:

- ``start``: a task begins; ``label`` says what it does, ``total`` how many ``unit`` it expects
  (``None``: unknown), ``job`` which kind of work it is;
- ``advance``: ``advance`` more units are done;
- ``status``: what the task is doing now (``label``; it replaces the previous status), e.g.
  ``zoo.compare``'s "resnet50: timing in a fresh process";
- ``end``: the task is over; ``error`` is empty when it succeeded, else why it failed (a pull that
  falls back to its next source ends one task with an error and starts another);
- ``message``: a line meant for a person (``label``: the text), e.g. the strategy a fine-tune
  chose, or one epoch's figures (then ``data`` is the :class:`~zoo.transfer.train.Epoch` record).

Units are ``bytes``, ``images``, ``epochs``, ``models`` or ``files``. Inside the library a job
opens a :class:`Task` with :func:`task` and passes the task (never the receiver) to the helpers
that do the work, so that a helper reports into the bar of the job that called it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Optional

#: the kinds of :class:`Event`
KINDS = ("start", "advance", "status", "end", "message")

_ids = itertools.count(1)


@dataclass(frozen=True)
class Event:
    """One thing a long job reports (see the module docstring for what each kind carries)."""

    kind: str
    task: int
    job: str
    label: str = ""
    total: Optional[float] = None
    advance: float = 0
    unit: str = ""
    error: str = ""
    data: Any = None


#: what every ``progress=`` parameter takes
Progress = Callable[[Event], None]


class Task:
    """One task of a job, reporting to a receiver (or to nobody: then every call costs nothing).

    A context manager: leaving the block ends the task, with the exception's text as its error if
    one is raised."""

    def __init__(self, progress: Progress | None, job: str, label: str, total: float | None = None,
                 unit: str = "", *, start: bool = True):
        self.progress, self.job, self.label, self.unit = progress, job, label, unit
        self.total = total
        self.id = next(_ids)
        self.done = 0.0
        self.ended = False
        if start and progress is not None:
            progress(Event("start", self.id, job, label, total=total, unit=unit))

    def advance(self, n: float = 1) -> None:
        self.done += n
        if self.progress is not None and n:
            self.progress(Event("advance", self.id, self.job, self.label, advance=n, unit=self.unit))

    def status(self, text: str) -> None:
        if self.progress is not None:
            self.progress(Event("status", self.id, self.job, text, unit=self.unit))

    def message(self, text: str, data: Any = None) -> None:
        if self.progress is not None:
            self.progress(Event("message", self.id, self.job, text, data=data))

    def end(self, error: str = "") -> None:
        if self.ended:
            return
        self.ended = True
        if self.progress is not None:
            self.progress(Event("end", self.id, self.job, self.label, total=self.total, unit=self.unit, error=error))

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.end("" if exc is None else (str(exc) or type(exc).__name__))


def task(progress: Progress | None, job: str, label: str, total: float | None = None, unit: str = "") -> Task:
    """Start a task of ``job`` (``with task(progress, "verify", "3 files", total, "bytes") as t: t.advance(n)``)."""
    return Task(progress, job, label, total, unit)


def message(progress: Progress | None, job: str, text: str, data: Any = None) -> None:
    """A line for a person, outside any task (``zoo.finetune``'s chosen strategy)."""
    if progress is not None:
        progress(Event("message", 0, job, text, data=data))

