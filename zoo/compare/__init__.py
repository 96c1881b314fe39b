"""Stage 6, compare: backbones side by side. GMACs and timing, each model in its own process, in
rounds interleaved across the models (``measure``), the linear probe and kNN with bootstrap
intervals (``probe``), the training-free scores LogME, LEEP, NCE and H-score (``scores``), the
comparison table (``report``), the stored measurements (``measurements``, read by ``zoo list
--measured`` without torch) and the plot (``plot``).

May import: every stage before it (``zoo.transfer``, ``zoo.model``, ``zoo.weights``, ``zoo.cards``,
``zoo.util``, ...) and the top modules.
"""
