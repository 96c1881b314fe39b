"""The ``zoo`` command: parse arguments, call the library, render with rich, map errors to exit codes.

Exit codes: 0 ok, 1 an operation failed (:class:`~zoo.errors.ZooError`), 2 bad usage or an unknown
name (:class:`~zoo.errors.UsageError`, argparse errors). ``-v`` also prints each error's chain of
causes and shows the library's info log, ``-vv`` its debug log, ``-q`` only errors
(``$ZOO_LOG_LEVEL`` sets the default; ``zoo serve`` logs at info by default: its address, then one
line per request).

One module per group of commands (``console`` holds what they share). Each command imports the
library code it calls inside its function: that is the rule here, not an exception, so that
``zoo list`` and ``zoo info`` parse their arguments and read cards without loading torch, timm or
huggingface_hub (tests/test_layout.py).

May import: every package of zoo.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from zoo import __version__, config
from zoo.cli import cards, compare, evaluate, mirror, predict, runs, weights
from zoo.cli.console import console
from zoo.errors import DISTRIBUTION, UsageError, ZooError
from zoo.util import distributed, logs


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default when it has one (not for flags, and not when the
    help already says "default")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or "default" in text.lower()
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._CountAction))):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """zoo's parsers, sub-commands included: :class:`HelpFormatter` for every one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="zoo", description="A model-zoo hub for transfer learning.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__} ({DISTRIBUTION})")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="count", default=0,
                       help="show the library's log (-vv: debug) and, for an error, its causes")
    noise.add_argument("-q", "--quiet", dest="log_quiet", action="store_true", help="log errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cards.add_parsers(sub)
    weights.add_parsers(sub)
    predict.add_parsers(sub)
    evaluate.add_parsers(sub)
    mirror.add_parsers(sub)
    runs.add_parsers(sub)
    compare.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script and ``python -m zoo``."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # names after a flag (zoo mirror export OUT --tar a b): argparse leaves them over when the
    # command's last positional takes any number; such a command says where they go
    rest = getattr(args, "rest", None)
    unknown = [x for x in extra if rest is None or x.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        getattr(args, rest).extend(extra)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    default = "info" if args.command == "serve" else "warning"  # a server logs its address and requests
    level = "error" if args.log_quiet else {0: None, 1: "info"}.get(args.verbose, "debug")
    args.log_level = level or config.log_level() or default
    if logs.wanted(level, default):
        logs.configure(level, default)
    try:
        return args.run(args)
    except UsageError as exc:
        _report(exc, args.verbose)
        return 2
    except ZooError as exc:
        _report(exc, args.verbose)
        return 1
    except OSError as exc:  # the file system said no (permissions, no space, missing directory)
        _report(exc, args.verbose)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zoo list | head`
        return 0
    finally:
        distributed.shutdown()


def _report(exc: BaseException, verbose: int) -> None:
    """``error: <message>``; with ``-v`` each cause after it (``raise ... from``), outermost first."""
    err = console(stderr=True)
    err.print(f"error: {exc}", style="red")
    seen = {id(exc)}
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while verbose and cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        err.print(f"  caused by {type(cause).__module__}.{type(cause).__qualname__}: {cause}", style="red")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
