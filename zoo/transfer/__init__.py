"""Stage 5, transfer: a model on the user's data. Image folders and splits (``datasets``), bottleneck
features: their extraction (``features``), the per-image cache of their rows (``feature_cache``) and
their export to .h5/.safetensors files (``feature_files``); which layers to train (``strategy``), the
training loops (``train``), ``finetune`` itself, run directories (``runs``), their Hugging Face model
card (``model_card``), merged exports stock timm loads (``exports``), publishing them to a hub
(``publish``) and carrying them in offline bundles (``mirror``).

May import: every stage before it (``zoo.model``, ``zoo.weights``, ``zoo.store``, ``zoo.cards``,
``zoo.util``) and the top modules.
"""
