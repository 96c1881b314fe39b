"""Stage 5, transfer: a model on the user's data. Image folders and splits (``datasets``), bottleneck
features and their cache (``features``), which layers to train (``strategy``), the training loops
(``train``), ``finetune`` itself, run directories (``runs``), publishing them to a hub (``publish``)
and carrying them in offline bundles (``mirror``).

May import: every stage before it (``zoo.model``, ``zoo.weights``, ``zoo.store``, ``zoo.cards``,
``zoo.util``) and the top modules.
"""
