"""Check cached weights again: re-hash them (``zoo verify``), and pin what was downloaded.

``verify`` re-hashes every cached file (or those of some cards) against the sha256 its card pins or
the cache recorded, on all cores; ``repair`` fetches a bad one again through :func:`zoo.weights.pull.pull`.
``pin`` records a downloaded sha256 for good: in the card file of a checkout, else in ``ZOO_HOME/pins``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


from zoo.cards.card import Card, write_card
from zoo.cards.registry import get_registry
from zoo.errors import CacheError, CorruptBlobError
from zoo.util.hashing import sha256_files
from zoo.util.progress import Progress, Task
from zoo.weights.cache import Cache, Entry
from zoo.weights.pull import expected_for, pull


@dataclass
class VerifyResult:
    name: str
    sha256: str
    actual: str | None  # None: the file is missing
    view: str | None = None  # why the safetensors view loads hand to timm is wrong, if it is

    @property
    def ok(self) -> bool:
        return self.actual == self.sha256 and self.view is None


def verify(names: list[str] | None = None, *, cache: Cache | None = None, repair: bool = False,
           progress: Progress | None = None) -> list[VerifyResult]:
    """Re-hash cached weights (all, or those of ``names``) against their pinned or recorded sha256,
    in parallel across cores; with ``repair``, fetch each bad one again. ``progress``
    (zoo.util.progress) sees one task in bytes for the hashing, then a pull's tasks per repair."""
    cache = cache or Cache()
    entries: list[Entry] = cache.entries()
    if names:
        wanted = {get_registry().resolve(n).name for n in names}
        missing = wanted - {e.name for e in entries}
        if missing:
            raise CacheError(f"not in the cache: {', '.join(sorted(missing))}; run 'zoo pull NAME' first")
        entries = [e for e in entries if e.name in wanted]
    by_sha: dict[str, list[Entry]] = {}
    cards = {e.name: get_registry().find(e.name) for e in entries}
    for e in entries:
        card = cards[e.name]
        sha = (expected_for(card, cache).sha256 if card else None) or e.sha256
        by_sha.setdefault(sha, []).append(e)
    present = [s for s in by_sha if cache.has_blob(s)]
    paths = [str(cache.blob_path(s)) for s in present]
    with Task(progress, "verify", f"verify {len(paths)} files", sum(os.path.getsize(p) for p in paths), "bytes") as task:
        actual = dict(zip(present, sha256_files(paths, task)))
    results = []
    for sha, group in by_sha.items():
        got = actual.get(sha)
        if got == sha:
            cache.stamp(sha)
        view = cache.view_problem(sha) if got == sha else None  # derived files are checked too
        for e in group:
            results.append(VerifyResult(e.name, sha, got, view))
    if repair:
        for r in [r for r in results if not r.ok]:
            if r.actual != r.sha256:
                pull(cards[r.name] or r.name, cache=cache, force=True, progress=progress)
                r.actual = cache.verify_blob(r.sha256)
            cache.safetensors_view(r.sha256)  # made again from the verified blob
            r.view = cache.view_problem(r.sha256)
    return sorted(results, key=lambda r: r.name)


def pin(name: str | Card, cache: Cache | None = None) -> tuple[str, str]:
    """Record a card's downloaded sha256 for good: into the card file when it is a writable file
    in a checkout, else into ``pins/<name>.json`` in ``ZOO_HOME``. Returns (sha256, where)."""
    card = name if isinstance(name, Card) else get_registry().resolve(name)
    cache = cache or Cache()
    entry = cache.entry(card.name)
    if entry is None:
        raise CacheError(f"{card.name} has not been downloaded; run 'zoo pull {card.name}' first")
    if card.sha256 and card.sha256 != entry.sha256:
        raise CorruptBlobError(f"{card.name} pins {card.sha256}, the cache holds {entry.sha256}; run 'zoo verify --repair'")
    installed = os.path.basename(os.path.dirname(card.path or "")) == "shipped_cards"  # inside a wheel
    if card.path and not installed and os.access(card.path, os.W_OK):
        with open(card.path, encoding="utf-8") as fh:
            header = "\n".join(line[2:].rstrip() for line in fh if line.startswith("# "))
        write_card(dataclasses.replace(card, sha256=entry.sha256, size_bytes=entry.size), card.path, header or None)
        return entry.sha256, card.path
    cache.pin(card.name, entry.sha256, entry.size, entry.source)
    return entry.sha256, str(cache.pin_path(card.name))
