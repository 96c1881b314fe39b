"""Stage 4, model: where a card meets its verified weights. ``load`` builds the timm model with the
card's weights and a new head (``heads``: replacing and freezing, one place for every architecture),
``transforms`` and ``decode`` are the card's preprocessing and labels, ``images`` reads image files.

May import: ``zoo.errors``, ``zoo.config``, ``zoo.home``, ``zoo.util``, ``zoo.cards``, ``zoo.store``,
``zoo.weights``; torch and timm.
"""
