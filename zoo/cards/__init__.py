"""Stage 1, cards: what a model is, as data. ``Card`` and its TOML validation (``card``, ``validate``),
the registry that resolves names, aliases and architecture defaults with "did you mean" (``registry``),
and the source-URI grammar (``uri``).

Everything ``zoo list`` and ``zoo info`` need, and nothing more: the standard library only (tomlkit
only when a card is written). May import: ``zoo.errors``, ``zoo.config``, ``zoo.home``, ``zoo.util``.
"""

from zoo.cards.card import Card, KerasFigures, Metric, Source, card_from_dict, dump_card, read_card, write_card

__all__ = ["Card", "KerasFigures", "Metric", "Source", "card_from_dict", "dump_card", "read_card", "write_card"]
