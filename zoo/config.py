"""Every environment variable zoo reads, read here and at call time.

Read at call time (not import time) so that tests and long-running processes see changes to the
environment, the way ``HF_HOME`` is honoured by huggingface_hub's helpers. zoo's own (``ZOO_*``),
huggingface_hub's (``HF_*``, read with huggingface_hub's precedence but without importing it: that
costs ~25 ms on the ``zoo list`` path and freezes the values at import), AWS's and torchrun's.

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

    Empty entries are ignored; entries are searched in order, after the shipped cards (and before
    ``ZOO_HOME/cards``, where ``zoo mirror import`` puts cards the machine did not know).
    """
    raw = os.environ.get("ZOO_CARDS_PATH", "")
    return [os.path.expanduser(p.strip()) for p in raw.split(os.pathsep) if p.strip()]


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
    into place (zoo/util/tempfiles.py, docs/internals.md "Temp files and renames"), so two processes fetching one file both download it, and one
    rename wins with the same bytes."""
    return _truthy("ZOO_NO_LOCKS")


def hub_secret() -> str | None:
    """``$ZOO_HUB_SECRET``: the key ``zoo serve`` signs upload links with. Set the same value on
    every server behind one load balancer to keep it out of the store (else servers sharing an
    S3 store keep one in it, and a lone server in a 0600 file in its directory)."""
    return os.environ.get("ZOO_HUB_SECRET") or None


def lock_timeout(default: float) -> float:
    """``$ZOO_LOCK_TIMEOUT``: seconds to wait for another process's fetch lock."""
    raw = os.environ.get("ZOO_LOCK_TIMEOUT", "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def engine() -> str | None:
    """``$ZOO_ENGINE`` (torch, onnxruntime or auto): the engine of every image pass when no
    ``--engine`` is given; None when unset (then ``auto``). The test suite sets ``torch``."""
    return os.environ.get("ZOO_ENGINE", "").strip().lower() or None


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_level() -> str | None:
    """``$ZOO_LOG_LEVEL`` (debug, info, warning, error), lowercase; None when unset or unknown."""
    level = os.environ.get("ZOO_LOG_LEVEL", "").strip().lower()
    return level if level in LOG_LEVELS else None


def terminal_columns_set() -> bool:
    """Whether ``$COLUMNS`` is set (then rich takes the width from it, piped output included)."""
    return "COLUMNS" in os.environ


# --- huggingface_hub's cache: the same precedence as huggingface_hub.constants ------------------


def hf_home() -> str:
    """``$HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")),
                           "huggingface")
    return os.path.expandvars(os.path.expanduser(os.environ.get("HF_HOME", default)))


def hf_hub_cache() -> str:
    """huggingface_hub's cache of repos: ``$HF_HUB_CACHE``, else the legacy ``$HUGGINGFACE_HUB_CACHE``,
    else ``hf_home()/hub``; where stock clients look with ``HF_HUB_OFFLINE=1``."""
    legacy = os.environ.get("HUGGINGFACE_HUB_CACHE", os.path.join(hf_home(), "hub"))
    return os.path.expandvars(os.path.expanduser(os.environ.get("HF_HUB_CACHE", legacy)))


# --- zoo serve ----------------------------------------------------------------------------------

#: how ``zoo serve --workers N`` hands its settings to each worker process
SERVE_SETTINGS_ENV = "ZOO_SERVE_SETTINGS"


def serve_settings() -> str:
    """``$ZOO_SERVE_SETTINGS``: the JSON settings of a ``zoo serve`` worker ("{}" when unset)."""
    return os.environ.get(SERVE_SETTINGS_ENV, "{}")


def set_serve_settings(text: str) -> None:
    """Put the settings where the worker processes uvicorn starts will read them."""
    os.environ[SERVE_SETTINGS_ENV] = text


# --- AWS ----------------------------------------------------------------------------------------


def aws_region() -> str | None:
    """``$AWS_REGION``: what the other AWS SDKs read (botocore reads ``AWS_DEFAULT_REGION`` itself,
    with the endpoint and keys: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``)."""
    return os.environ.get("AWS_REGION") or None


# --- torchrun -----------------------------------------------------------------------------------


def world_size() -> int:
    """``$WORLD_SIZE`` set by torchrun (1 for a plain process, or a value that is not a number)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def launched_by_torchrun() -> bool:
    """torchrun sets ``$RANK`` for every process it starts."""
    return "RANK" in os.environ


# --- child processes ----------------------------------------------------------------------------


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides``, for a child process (``zoo compare``'s timing)."""
    return {**os.environ, **overrides}
