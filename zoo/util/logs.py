"""The ``zoo`` logger's one handler: what the CLI and each ``zoo serve`` worker process install.

Libraries log (``logging.getLogger(__name__)``, all under ``zoo``) and never configure logging;
a program that uses zoo as a library keeps its own handlers. ``zoo`` itself (``zoo -v``/``-q``,
``$ZOO_LOG_LEVEL``) installs one stderr handler on the ``zoo`` logger with :func:`configure`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from zoo import config

LOGGER = "zoo"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def wanted(level: str | None, default: str) -> bool:
    """Whether :func:`configure` has anything to do: a level was asked for (``-v``, ``-q``,
    ``$ZOO_LOG_LEVEL``) or the default is not logging's own. Otherwise Python's last-resort handler
    already prints warnings and errors to stderr, and the logging module need not even be imported."""
    return level is not None or config.log_level() is not None or default != "warning"


def configure(level: str | int | None = None, default: str = "warning") -> int:
    """Send the ``zoo`` logger's records at ``level`` and above to stderr: ``level`` when given
    (from ``-v``/``-q``), else ``$ZOO_LOG_LEVEL``, else ``default``. Returns the level set; calling
    it again replaces the handler instead of adding a second one."""
    import logging  # lazy: ~10 ms that `zoo list` does not spend (bench/bench_list.py), see wanted()

    chosen = level if level is not None else (config.log_level() or default)
    number = chosen if isinstance(chosen, int) else logging.getLevelName(str(chosen).upper())
    if not isinstance(number, int):
        number = logging.WARNING
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, "_zoo", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._zoo = True  # ours, to replace on the next call
    logger.addHandler(handler)
    logger.setLevel(number)
    logger.propagate = False  # one line per record, whatever the root logger has
    return number



@contextmanager
def third_party_quiet(*loggers: str):
    """Inside the block, what the third-party ``loggers`` say below error level (timm's "Unexpected
    keys ... found while loading pretrained weights", expected when zoo drops a head) and every
    Python warning go to zoo's debug log (``zoo -vv``) instead of the user's terminal."""
    import logging
    import warnings

    debug = logging.getLogger(f"{LOGGER}.third_party")

    def divert(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        debug.debug("%s: %s", record.name, record.getMessage())
        return False

    targets = [logging.getLogger(name) for name in loggers]
    for logger in targets:
        logger.addFilter(divert)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            debug.debug("%s: %s (%s:%s)", w.category.__name__, w.message, w.filename, w.lineno)
    finally:
        for logger in targets:
            logger.removeFilter(divert)
