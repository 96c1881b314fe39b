"""Stage 2, store: keyed objects with compare-and-swap, in a directory or an S3-compatible bucket
(``objects``), the repos, commits and refs kept on them (``repos``: what ``zoo serve`` writes and what
``zoo cache prune`` and ``zoo mirror export --from`` must read), and their discussions and pull
requests (``discussions``).

It sits below ``weights`` because bundles export from a store and prune must know which blobs a served
revision still uses. May import: ``zoo.errors``, ``zoo.config``, ``zoo.home``, ``zoo.util``, ``zoo.cards``.
"""
