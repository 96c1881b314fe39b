"""PNG figures (matplotlib, the ``plot`` extra): where ``--plot`` may write, checked before any
work, and one atomic save. ``zoo compare --plot`` and ``zoo evaluate --plot`` both draw through it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from zoo.errors import MissingExtra, UsageError
from zoo.util.tempfiles import temp_beside


def check_plot(out: str | os.PathLike) -> Path:
    """Where ``--plot`` may write (a .png, matplotlib installed): checked before minutes of work."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG: name it *.png, not {out.name}")
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtra("--plot", "matplotlib", "plot")
    return out


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("--plot", "matplotlib", "plot") from None
    return plt


def save_png(fig, out: Path, **savefig) -> Path:
    """Write ``fig`` to ``out`` through a temp file beside it (never a half-written PNG), and close it."""
    plt = pyplot()
    tmp = temp_beside(out, "tmp.png")
    try:
        fig.savefig(tmp, **savefig)
    finally:
        plt.close(fig)
    os.replace(tmp, out)
    return out
