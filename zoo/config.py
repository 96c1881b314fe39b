"""Settings that come from the environment, read in one place and at call time.

Read at call time (not import time) so that tests and long-running processes see changes to the
environment, the way ``HF_HOME`` is honoured by huggingface_hub's helpers.

Paths are returned as ``str``: ``zoo list`` reaches this module, and pathlib (with the
urllib.parse it imports) is ~10 ms of start-up it does not otherwise need (bench/bench_list.py).
"""

from __future__ import annotations

import os

#: The package's own directory; shipped cards live beside it (see :func:`shipped_cards_dir`).
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def zoo_home() -> str:
    """Root of zoo's cache: ``$ZOO_HOME``, else ``~/.cache/zoo`` (like ``~/.keras/models``)."""
    env = os.environ.get("ZOO_HOME")
    return os.path.expanduser(env) if env else os.path.join(os.path.expanduser("~"), ".cache", "zoo")


def shipped_cards_dir() -> str:
    """Directory of the cards that ship with zoo.

    A wheel carries them as package data in ``zoo/shipped_cards`` (hatch ``force-include``); an
    editable install or a checkout reads the top-level ``cards/`` directly, so editing a card in a
    checkout takes effect without reinstalling.
    """
    packaged = os.path.join(PACKAGE_DIR, "shipped_cards")
    if os.path.isdir(packaged):
        return packaged
    return os.path.join(os.path.dirname(PACKAGE_DIR), "cards")


def user_card_dirs() -> list[str]:
    """Directories listed in ``$ZOO_CARDS_PATH`` (``os.pathsep``-separated, like ``PATH``).

    Empty entries are ignored; entries are searched in order, after the shipped cards, and
    ``$ZOO_HOME/cards`` (where ``zoo mirror import`` puts cards the machine did not know) comes last.
    """
    raw = os.environ.get("ZOO_CARDS_PATH", "")
    dirs = [os.path.expanduser(p.strip()) for p in raw.split(os.pathsep) if p.strip()]
    return dirs + [os.path.join(zoo_home(), "cards")]  # cards that arrived with an imported bundle


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """``ZOO_OFFLINE=1`` (or huggingface_hub's ``HF_HUB_OFFLINE=1``): never open a socket."""
    return _truthy("ZOO_OFFLINE") or _truthy("HF_HUB_OFFLINE")


def hf_endpoint() -> str:
    """``$HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def mirrors() -> list[str]:
    """``$ZOO_MIRRORS``: comma-separated Hugging Face-compatible endpoints, tried in order before a
    card's own sources."""
    return [m.strip().rstrip("/") for m in os.environ.get("ZOO_MIRRORS", "").split(",") if m.strip()]


def no_locks() -> bool:
    """``ZOO_NO_LOCKS=1``: skip the cache's file locks, for shared file systems whose locks hang or
    fail (some NFS mounts). Safe: every writer has its own temp file and renames verified bytes
    into place (zoo/tempfiles.py), so two processes fetching one file both download it, and one
    rename wins with the same bytes."""
    return _truthy("ZOO_NO_LOCKS")


def hub_secret() -> str | None:
    """``$ZOO_HUB_SECRET``: the key ``zoo serve`` signs upload links with. Set the same value on
    every server behind one load balancer to keep it out of the store (else servers sharing an
    S3 store keep one in it, and a lone server in a 0600 file in its directory)."""
    return os.environ.get("ZOO_HUB_SECRET") or None
