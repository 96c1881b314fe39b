"""Name lookup over the cards: exact name, alias, an architecture's default tag, and 'did you mean'.

Cards come from, in search order: the shipped ``cards/`` directory, each directory of
``$ZOO_CARDS_PATH`` (like ``PATH``: the first card of a name wins), then cards registered in code
with :func:`register`. The registry is rebuilt when a card file is added, removed or changed, so
tests and long-running processes see new cards without a restart.

Resolution order (documented in the README and tested):

1. an exact card name (``resnet50.tv_in1k``);
2. an explicit alias, exact case (``ResNet50``, ``efficientnet_lite0``): an alias wins over an
   architecture of the same name;
3. an architecture's default tag (``resnet50`` -> the card marked ``default = true``, which for
   shipped cards is timm's own default tag; an architecture with a single card needs no mark);
4. the same three, ignoring case (``resnet50v2`` finds the alias ``ResNet50V2``);
5. otherwise :class:`~zoo.errors.UnknownModelError` with close matches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable, Iterable, Mapping

from zoo import __version__, config, home
from zoo.cards.card import CARD_FIELDS, Card, card_from_dict, card_from_record, read_card
from zoo.errors import AmbiguousModelError, CardError, UnknownModelError, UsageError

#: ``zoo list --sort`` keys -> (value getter, best-first is descending).
SORT_KEYS: dict[str, tuple[Callable[[Card], Any], bool]] = {
    "top1": (lambda c: c.top1, True),
    "top5": (lambda c: c.top5, True),
    "params": (lambda c: c.params, False),
    "size": (lambda c: c.size_mb, False),
    "depth": (lambda c: c.depth, False),
    "res": (lambda c: c.resolution, False),
    "name": (lambda c: c.name, False),
}


@dataclass
class Registry:
    """An immutable view over cards in search order, with the lookup indexes built once.

    **Names belong to their first owner.** An owner is where a card comes from: the shipped
    cards, one directory of ``$ZOO_CARDS_PATH``, the cards of imported bundles, or
    :func:`register`. A card from a later owner whose name or alias equals (ignoring case) a name,
    alias or architecture an earlier owner has, or that marks itself the default of an
    architecture an earlier owner has, is refused: it would change what an existing name loads
    (a bundle listing the alias ``resnet50`` would otherwise make ``zoo.load("resnet50")`` load
    it). Refused cards are listed in :attr:`refused` with the reason, logged once, and skipped;
    shipped cards are never refused. A card whose exact name is already taken is shadowed, as a
    later ``PATH`` entry is.
    """

    cards: list[Card]
    shipped_dir: str | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of card files that failed to read
    by_name: dict[str, Card] = field(default_factory=dict)
    by_alias: dict[str, Card] = field(default_factory=dict)
    by_arch: dict[str, list[Card]] = field(default_factory=dict)
    shadowed: list[Card] = field(default_factory=list)
    refused: list[tuple[Card, str]] = field(default_factory=list)

    folded: dict[str, str] = field(default_factory=dict)

    def owner(self, card: Card) -> str:
        """Where ``card`` comes from: the directory of its file, or "register()" for one added in code."""
        return os.path.dirname(os.path.abspath(card.path)) if card.path else "register()"

    def all_problems(self) -> list[tuple[str, str]]:
        """(path, why) of every card file that failed to read and every card refused."""
        return [*self.problems, *((c.path or c.name, f"card {c.name} refused: {why}") for c, why in self.refused)]

    def _shipped(self, card: Card) -> bool:
        return self.shipped_dir is not None and self.owner(card) == os.path.abspath(self.shipped_dir)

    def __post_init__(self) -> None:
        kept = []
        claims: dict[str, Card] = {}  # casefolded name, alias or architecture -> the card that took it first
        self._arch_owner: dict[str, str] = {}
        for card in self.cards:
            if card.name in self.by_name:
                self.shadowed.append(card)  # PATH semantics: the first card of a name wins
                continue
            why = None if self._shipped(card) else self._clash(card, claims)
            if why:
                self.refused.append((card, why))
                continue
            kept.append(card)
            self.by_name[card.name] = card
            self.by_arch.setdefault(card.architecture, []).append(card)
            self._arch_owner.setdefault(card.architecture, self.owner(card))
            for key in (card.name, *card.aliases, card.architecture):
                claims.setdefault(key.casefold(), card)
        self.cards = kept
        for card in kept:
            for alias in card.aliases:
                self.by_alias.setdefault(alias, card)
        for table in (self.by_name, self.by_alias, self.by_arch):  # step 4: the same, ignoring case
            for key in table:
                self.folded.setdefault(key.casefold(), key)

    def _clash(self, card: Card, claims: dict[str, Card]) -> str | None:
        """Why ``card`` may not join (a claim of an earlier owner), or None."""
        mine = self.owner(card)
        for what, key in [("name", card.name), *(("alias", a) for a in card.aliases)]:
            other = claims.get(key.casefold())
            if other is not None and self.owner(other) != mine:
                return (f"its {what} {key!r} belongs to {other.name} ({other.path or 'register()'}); "
                        f"a card may not take a name another card already answers to")
        owner = self._arch_owner.get(card.architecture)
        if card.default and owner is not None and owner != mine:
            first = self.by_arch[card.architecture][0]
            return (f"it marks itself the default of {card.architecture!r}, which {first.name} "
                    f"({first.path or 'register()'}) already answers to")
        return None

    def default_for(self, architecture: str) -> Card | None:
        """The default card of ``architecture``: among the cards of the architecture's first owner,
        the one marked ``default``, or its only card (cards of later owners never change it)."""
        cards = self.by_arch.get(architecture)
        if not cards:
            return None
        owned = [c for c in cards if self.owner(c) == self._arch_owner[architecture]]
        defaults = [c for c in owned if c.default]
        if len(defaults) == 1:
            return defaults[0]
        if len(owned) == 1:
            return owned[0]
        raise AmbiguousModelError(architecture, [c.name for c in (defaults or owned)])

    def _exact(self, name: str) -> Card | None:
        card = self.by_name.get(name) or self.by_alias.get(name)
        return card or self.default_for(name)

    def find(self, name: str) -> Card | None:
        """The card ``name`` resolves to (see the module docstring), or None."""
        card = self._exact(name)
        if card is not None:
            return card
        key = self.folded.get(name.casefold())
        return self._exact(key) if key is not None else None

    def resolve(self, name: str) -> Card:
        """Like :meth:`find`, but an unknown name raises with 'did you mean' suggestions."""
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"a model name must be a non-empty string, got {name!r}")
        card = self.find(name.strip())
        if card is None:
            raise UnknownModelError(name, self.suggest(name))
        return card

    def suggest(self, name: str, n: int = 5) -> list[str]:
        """Close matches among names, aliases and architectures (difflib, case-insensitive)."""
        spellings: dict[str, str] = {}
        for key in (*self.by_name, *self.by_arch, *self.by_alias):  # lowercase spellings first
            spellings.setdefault(key.casefold(), key)
        import difflib  # only on the error path

        hits = difflib.get_close_matches(name.casefold(), list(spellings), n=n, cutoff=0.6)
        return [spellings[h] for h in hits]

    def other_tags(self, card: Card) -> list[Card]:
        """The other cards of ``card``'s architecture (``zoo info`` lists them)."""
        return [c for c in self.by_arch.get(card.architecture, []) if c.name != card.name]


_registered: dict[str, Card] = {}
_overrides: set[str] = set()  # registered names that replace a card file of the same name
_cached: tuple[tuple, Registry] | None = None


def _card_files(directory: str) -> list[str]:
    # hidden files (editor swap files, macOS "._x.toml") are not cards
    return sorted(e.path for e in os.scandir(directory)
                  if e.name.endswith(".toml") and not e.name.startswith(".") and e.is_file())


def _dir_cards(files: list[str], problems: list[tuple[str, str]] | None = None) -> list[Card]:
    """Cards of one directory's files (sorted); two files with one card name are an error.

    With ``problems`` (a directory other than the shipped one), a file that does not parse or
    validate is recorded there as (path, why) and skipped instead: one bad user card is one bad
    card, and every other card still works. Without it (the shipped cards) it raises."""
    seen: dict[str, Card] = {}
    for path in files:
        try:
            card = read_card(path)
            if card.name in seen:
                raise CardError(str(path), "name", f"{card.name!r} is also defined in {seen[card.name].path}")
        except CardError as exc:
            if problems is None:
                raise
            problems.append((str(path), f"field {exc.field!r}: {exc.problem}" if exc.field else exc.problem))
            continue
        seen[card.name] = card
    return list(seen.values())


def _dirs() -> list[str]:
    shipped = config.shipped_cards_dir()
    if not os.path.isdir(shipped):
        raise CardError(shipped, None, "the shipped cards directory is missing; reinstall zoo")
    # cards that arrived with an imported bundle come last
    return [shipped, *(d for d in (*config.user_card_dirs(), home.imported_cards()) if os.path.isdir(d))]


def _file_stamps(files: list[list[str]]) -> list:
    """(path, mtime, ctime, size, inode) of every card file: a stat costs microseconds, a parse
    milliseconds. ctime catches an in-place edit that kept size and mtime (``cp -p``, ``tar -x``)."""
    stats = []
    for group in files:
        for path in group:
            try:
                st = os.stat(path)
                stats.append([path, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino])
            except OSError:
                stats.append([path, None, None, None, None])
    return stats


INDEX_VERSION = 1


def _index_path() -> str:
    return home.card_index()


def _read_cards(files: list[list[str]], stamps: list) -> tuple[list[Card], list[tuple[str, str]]]:
    """All cards of ``files``, from the JSON index in ``ZOO_HOME`` when it matches the files' stamps.

    tomllib is pure Python: parsing 60 cards costs ~40 ms, more than the rest of ``zoo list``
    together (bench/bench_list.py); the index is C-parsed JSON of already validated records. A
    missing, stale, corrupt or unwritable index only costs the parse.
    """
    index = _index_path()
    key = {"version": INDEX_VERSION, "zoo": __version__, "schema": sorted(CARD_FIELDS), "stamps": stamps}
    try:
        with open(index, "rb") as fh:
            data = json.loads(fh.read())
        if isinstance(data, dict) and {k: data.get(k) for k in key} == key:
            return [card_from_record(r) for r in data["cards"]], [tuple(p) for p in data.get("problems", [])]
    except Exception:  # any unreadable, foreign or corrupt index only costs the parse below
        pass
    problems: list[tuple[str, str]] = []
    # files[0] is the shipped directory: a broken shipped card is a broken install, and raises
    cards = [card for i, group in enumerate(files) for card in _dir_cards(group, problems if i else None)]
    try:
        os.makedirs(os.path.dirname(index), exist_ok=True)
        from zoo.util.tempfiles import temp_beside  # lazy: pathlib, socket and uuid only when the index is rewritten

        tmp = temp_beside(index)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({**key, "cards": [c.to_record() for c in cards], "problems": problems}, fh)
        os.replace(tmp, index)
    except OSError:
        pass
    return cards, problems


def get_registry() -> Registry:
    """The registry over shipped, ``$ZOO_CARDS_PATH`` and registered cards, rebuilt when they change."""
    global _cached
    files = [_card_files(d) for d in _dirs()]
    stamps = _file_stamps(files)
    key = (repr(stamps), tuple((name, id(card), name in _overrides) for name, card in _registered.items()))
    if _cached is None or _cached[0] != key:
        cards, problems = _read_cards(files, stamps)
        first = [c for n, c in _registered.items() if n in _overrides]
        last = [c for n, c in _registered.items() if n not in _overrides]
        registry = Registry([*first, *cards, *last], shipped_dir=config.shipped_cards_dir(), problems=problems)
        _warn_once(registry)
        _cached = (key, registry)
    return _cached[1]


_warned: set[tuple[str, str]] = set()


def _warn_once(registry: Registry) -> None:
    """Each unreadable or refused card, once per process: a warning naming the file and why."""
    import logging  # lazy, as in zoo.util.logs: only when there is something to say

    for path, why in registry.all_problems():
        if (path, why) not in _warned:
            _warned.add((path, why))
            logging.getLogger(__name__).warning("skipped %s: %s ('zoo cards check' lists every problem)", path, why)


def register(card: Card | Mapping[str, Any] | str | os.PathLike, *, overwrite: bool = False) -> Card:
    """Add a card in code (a :class:`Card`, a dict in card-file form, or a path to a card file).

    Registered cards are searched after the shipped and ``$ZOO_CARDS_PATH`` ones. Registering a
    name that is already known raises unless ``overwrite=True`` (then the new card is used for
    that name in this process).
    """
    if isinstance(card, Mapping):
        card = card_from_dict(card)
    elif isinstance(card, (str, os.PathLike)):
        card = read_card(card)
    elif not isinstance(card, Card):
        raise UsageError(f"register() takes a Card, a dict in card-file form or a path, not {type(card).__name__}")
    registry = get_registry()
    if not overwrite and (card.name in _registered or card.name in registry.by_name):
        raise UsageError(f"a card named {card.name!r} already exists; pass overwrite=True to replace it")
    for alias in card.aliases:
        owner = registry.by_alias.get(alias) or registry.by_name.get(alias)
        if owner is not None and owner.name != card.name:
            raise UsageError(f"alias {alias!r} of {card.name!r} is already taken by {owner.name!r}")
    _registered[card.name] = card
    _overrides.discard(card.name)
    if overwrite:
        _overrides.add(card.name)  # searched before the card files, so it wins for its name
    refused = [why for c, why in get_registry().refused if c is card]
    if refused:  # the same rule as for card files: names belong to their first owner
        unregister(card.name)
        raise UsageError(f"card {card.name!r} cannot be registered: {refused[0]}")
    return card


def unregister(name: str) -> None:
    """Remove a card added with :func:`register` (no effect on card files)."""
    _registered.pop(name, None)
    _overrides.discard(name)


def card(name: str) -> Card:
    """The card ``name`` resolves to (name, alias, or architecture default); see the module docstring."""
    return get_registry().resolve(name)


def list_models(
    pattern: str | None = None,
    sort: str = "top1",
    descending: bool | None = None,
    min_top1: float | None = None,
    max_params: int | None = None,
    license: str | None = None,
    cards: Iterable[Card] | None = None,
) -> list[Card]:
    """Cards matching the filters, sorted; what ``zoo list`` shows.

    ``pattern`` is fnmatch-style and case-insensitive over names, aliases and architectures.
    ``descending=None`` takes the useful direction (accuracy best first, sizes smallest first).
    Cards missing the sort value come last in either direction.
    """
    if sort not in SORT_KEYS:
        raise UsageError(f"unknown sort key {sort!r}; use one of: {', '.join(SORT_KEYS)}")
    getter, best_desc = SORT_KEYS[sort]
    desc = best_desc if descending is None else descending
    pool = list(cards) if cards is not None else list(get_registry().cards)
    if pattern:
        folded = pattern.casefold()
        pool = [c for c in pool if any(fnmatchcase(s.casefold(), folded) for s in (c.name, c.architecture, *c.aliases))]
    if min_top1 is not None:
        pool = [c for c in pool if c.top1 is not None and c.top1 >= min_top1]
    if max_params is not None:
        pool = [c for c in pool if c.params is not None and c.params <= max_params]
    if license:
        pool = [c for c in pool if c.license.casefold() == license.casefold()]
    known = sorted((c for c in pool if getter(c) is not None), key=lambda c: c.name)
    known.sort(key=getter, reverse=desc)
    return known + sorted((c for c in pool if getter(c) is None), key=lambda c: c.name)


def trial_registry(cards: list[Card], replacing: str | None = None) -> Registry:
    """Every card zoo reads now (less those of the directory ``replacing``) followed by ``cards``:
    what adding ``cards`` would refuse (``refused``) or shadow, without adding them."""
    registry = get_registry()
    base = [c for c in registry.cards if replacing is None or registry.owner(c) != replacing]
    return Registry([*base, *cards], shipped_dir=config.shipped_cards_dir())


def check_cards(directory: str | os.PathLike | None = None) -> tuple[int, list[tuple[str, str]]]:
    """``zoo cards check [DIR]``: (cards that are fine, [(path, why)] of every problem).

    Without ``directory``: every card zoo would read now (shipped, ``$ZOO_CARDS_PATH``, imported).
    With it: that directory's card files, as if it came after everything zoo reads now (files
    that do not parse or validate, names already taken, names and defaults another card owns)."""
    if directory is None:
        registry = get_registry()
        return len(registry.cards), registry.all_problems()
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise UsageError(f"{directory} is not a directory of card files")
    problems: list[tuple[str, str]] = []
    cards = _dir_cards(_card_files(directory), problems)
    trial = trial_registry(cards, replacing=directory)
    mine = {id(c) for c in cards}
    problems += [(c.path, f"card {c.name} refused: {why}") for c, why in trial.refused if id(c) in mine]
    problems += [(c.path, f"card {c.name} is shadowed: {trial.by_name[c.name].path} already has that name")
                 for c in trial.shadowed if id(c) in mine]
    bad = {id(c) for c, _ in trial.refused} | {id(c) for c in trial.shadowed}
    return sum(1 for c in cards if id(c) not in bad), problems
