"""``python -m zoo``: the same as the ``zoo`` console script."""

from .cli import main

raise SystemExit(main())
