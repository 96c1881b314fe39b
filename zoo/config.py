"""Settings that come from the environment, read in one place and at call time.

Read at call time (not import time) so that tests and long-running processes see changes to the
environment, the way ``HF_HOME`` is honoured by huggingface_hub's helpers.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The package's own directory; shipped cards live beside it (see :func:`shipped_cards_dir`).
PACKAGE_DIR = Path(__file__).resolve().parent


def zoo_home() -> Path:
    """Root of zoo's cache: ``$ZOO_HOME``, else ``~/.cache/zoo`` (like ``~/.keras/models``)."""
    env = os.environ.get("ZOO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zoo"


def shipped_cards_dir() -> Path:
    """Directory of the cards that ship with zoo.

    A wheel carries them as package data in ``zoo/shipped_cards`` (hatch ``force-include``); an
    editable install or a checkout reads the top-level ``cards/`` directly, so editing a card in a
    checkout takes effect without reinstalling.
    """
    packaged = PACKAGE_DIR / "shipped_cards"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / "cards"


def user_card_dirs() -> list[Path]:
    """Directories listed in ``$ZOO_CARDS_PATH`` (``os.pathsep``-separated, like ``PATH``).

    Empty entries are ignored; entries are searched in order, after the shipped cards.
    """
    raw = os.environ.get("ZOO_CARDS_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
