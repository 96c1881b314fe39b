"""Stage 6, compare: backbones side by side. GMACs and timing in a fresh process (``measure``), probes
and transferability scores (``probe``), the comparison table (``report``), the stored measurements
(``measurements``, read by ``zoo list --measured`` without torch) and the plot (``plot``).

May import: every stage before it (``zoo.transfer``, ``zoo.model``, ``zoo.weights``, ``zoo.cards``,
``zoo.util``, ...) and the top modules.
"""
