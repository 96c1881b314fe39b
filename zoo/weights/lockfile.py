"""Lock files: the exact bytes of a set of models, installed again exactly or not at all.

``zoo lock NAME...`` writes a TOML document (version 1, one ``[[model]]`` per card: name, source,
revision, sha256, size); ``zoo pull --lock FILE`` installs exactly those bytes or fails, like pip's
hash-checking mode.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from zoo.cards.registry import get_registry
from zoo.errors import UsageError
from zoo.weights.cache import Cache
from zoo.util.progress import Progress
from zoo.weights.pull import Expected, pull

LOCK_VERSION = 1


def lock_records(names: list[str], cache: Cache | None = None, progress: Progress | None = None) -> list[dict]:
    """What ``zoo lock`` writes: exact bytes (name, source, revision, sha256, size) per model."""
    cache = cache or Cache()
    out = []
    for name in names:
        card = get_registry().resolve(name)
        pull(card, cache=cache, progress=progress)
        entry = cache.entry(card.name)
        out.append({"name": card.name, "source": entry.source, "revision": entry.revision or "",
                    "sha256": entry.sha256, "size": entry.size})
    return out


def dump_lock(records: list[dict]) -> str:
    import tomlkit

    doc = tomlkit.document()
    doc.add(tomlkit.comment("zoo lock file: 'zoo pull --lock FILE' installs exactly these bytes or fails"))
    doc["version"] = LOCK_VERSION
    doc["model"] = records
    return tomlkit.dumps(doc)


def read_lock(path: str) -> list[dict]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read lock file {path}: {exc}") from None
    if data.get("version") != LOCK_VERSION or not isinstance(data.get("model"), list):
        raise UsageError(f"{path} is not a zoo lock file (version {LOCK_VERSION} with [[model]] entries)")
    return data["model"]


def pull_lock(path: str, cache: Cache | None = None, progress: Progress | None = None) -> list[Path]:
    """Install exactly the bytes a lock file names, or fail (like pip's hash-checking mode)."""
    out = []
    for rec in read_lock(path):
        try:
            want = Expected(rec["sha256"], rec.get("size"), "lock")
            out.append(pull(rec["name"], cache=cache, progress=progress, expected=want))
        except KeyError as exc:
            raise UsageError(f"{path}: an entry lacks {exc}") from None
    return out
