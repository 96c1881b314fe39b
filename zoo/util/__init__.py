"""What every stage shares: temp-file names no other writer shares (``tempfiles``), fast sha256 of files
(``hashing``), running under torchrun (``distributed``), the ``zoo`` logger's handler and the
quieting of third-party loggers (``logs``), and the one progress protocol of every long job (``progress``).

May import: the standard library, ``zoo.errors`` and ``zoo.config`` (torch only inside ``distributed``'s
functions, and only under torchrun).
"""
