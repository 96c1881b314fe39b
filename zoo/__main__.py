"""``python -m zoo``: the same as the ``zoo`` console script."""

from zoo.cli import main

raise SystemExit(main())
