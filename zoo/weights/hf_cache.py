"""The Hugging Face cache layout over zoo's blobs, so stock clients find cached weights offline.

``link_hf_cache`` writes ``models--org--name/blobs/<sha256>`` (a hard link to zoo's verified blob where
the file system allows, else a copy), ``snapshots/<commit>/<file>`` (a relative symlink to it) and
``refs/main`` under huggingface_hub's own cache directory (:func:`zoo.config.hf_hub_cache`, with its
precedence: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``), so
``timm.create_model(..., pretrained=True)`` works with ``HF_HUB_OFFLINE=1``. The commit is the one
``zoo serve`` reports for the same repo (:func:`zoo.store.repos.derived_commit_id`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from zoo import config
from zoo.cards.card import REPO_ID_RE
from zoo.cards.registry import get_registry
from zoo.errors import CacheError, UsageError
from zoo.store.repos import derived_commit_id
from zoo.util.paths import unsafe_relpath
from zoo.util.tempfiles import temp_beside
from zoo.weights.cache import Cache, Entry


def link_hf_cache(names: list[str], cache: Cache | None = None) -> list[Path]:
    """Write the Hugging Face cache layout for cached models (``models--org--name/blobs``,
    ``snapshots/<commit>/<file>``, ``refs/main``), linking to zoo's blobs where the file system
    allows; returns the snapshot paths."""
    cache = cache or Cache()
    entries = {e.name: e for e in cache.entries()}
    repos: dict[str, dict[str, Entry]] = {}
    for name in names:
        card = get_registry().find(name)
        entry = entries.get(card.name if card else name)
        if entry is None:
            raise CacheError(f"{name} is not cached; run 'zoo pull {name}' first")
        if not entry.hub_repo:
            raise UsageError(f"{entry.name} names no hub repo, so stock clients could not ask for it")
        # both become paths under the HF cache: never one that leaves it (zoo.util.paths)
        if not REPO_ID_RE.match(entry.hub_repo) or unsafe_relpath(entry.filename):
            raise CacheError(f"{entry.name}: hub repo {entry.hub_repo!r} / file {entry.filename!r} cannot be "
                             f"laid out in the Hugging Face cache ({unsafe_relpath(entry.filename) or 'not ORG/NAME'})")
        repos.setdefault(entry.hub_repo, {})[entry.filename] = entry
    out = []
    root = Path(config.hf_hub_cache())  # where huggingface_hub itself looks
    for repo_id, files in repos.items():
        commit = derived_commit_id(repo_id, {path: e.sha256 for path, e in files.items()})
        base = root / ("models--" + repo_id.replace("/", "--"))
        for sub in ("blobs", "refs", f"snapshots/{commit}"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for path, entry in files.items():
            blob = base / "blobs" / entry.sha256  # the client names LFS blobs by their sha256 etag
            if not blob.exists():
                try:
                    os.link(cache.open_verified(entry.sha256), blob)
                except OSError:
                    shutil.copyfile(cache.open_verified(entry.sha256), blob)
            snap = base / "snapshots" / commit / path
            snap.parent.mkdir(parents=True, exist_ok=True)
            if os.path.realpath(snap) != os.path.realpath(blob):  # missing, or re-pointed since: made again
                tmp = temp_beside(snap, "link")
                os.symlink(os.path.relpath(blob, snap.parent), tmp)
                os.replace(tmp, snap)
            out.append(snap)
        (base / "refs" / "main").write_text(commit)
    return out
