"""What every stage shares: temp-file names no other writer shares (``tempfiles``), fast sha256 of files
(``hashing``), and running under torchrun (``distributed``).

May import: the standard library, ``zoo.errors`` and ``zoo.config`` (torch only inside ``distributed``'s
functions, and only under torchrun).
"""
