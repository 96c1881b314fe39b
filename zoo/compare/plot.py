"""``zoo compare --plot``: accuracy against latency as a PNG (matplotlib, the ``plot`` extra).

Marker area follows the parameter count; the Pareto front (no model both more accurate and
faster) is drawn as a line and its models labelled in bold. Accuracy is the probe's on the
user's data when there is one, else the published ImageNet top-1.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import MissingExtra, UsageError
from zoo.util.tempfiles import temp_beside


def plot(result: dict, out: str | os.PathLike, title: str | None = None) -> Path:
    """Write the PNG for a :func:`zoo.compare.compare` result; returns its path."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("--plot", "matplotlib", "plot") from None
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG: name it *.png, not {out.name}")
    with_data = result.get("data") is not None
    key, label = ("probe_accuracy", "linear-probe accuracy on your data") if with_data else ("top1", "published ImageNet top-1 (%)")
    rows = [r for r in result["rows"] if r.get(key) is not None and r.get("latency_ms") is not None]
    if not rows:
        raise UsageError("nothing to plot: no model was both measured and scored (see the 'not measured' column)")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    sizes = [max(30.0, (r["params"] or 1e6) / 1e6 * 12) for r in rows]
    colors = ["#d62728" if r.get("pareto_front") else "#1f77b4" for r in rows]
    ax.scatter([r["latency_ms"] for r in rows], [r[key] for r in rows], s=sizes, c=colors, alpha=0.6,
               edgecolors="black", linewidths=0.6)
    front = sorted((r for r in rows if r.get("pareto_front")), key=lambda r: r["latency_ms"])
    if len(front) > 1:
        ax.plot([r["latency_ms"] for r in front], [r[key] for r in front], color="#d62728", lw=1.2, ls="--",
                label="Pareto front (no model both more accurate and faster)")
        ax.legend(loc="lower right", fontsize=8)
    for r in rows:
        ax.annotate(r["name"], (r["latency_ms"], r[key]), textcoords="offset points", xytext=(6, 4), fontsize=8,
                    fontweight="bold" if r.get("pareto_front") else "normal")
    ax.set_xscale("log")
    ax.set_xlabel("latency at batch 1 (ms, median, log scale)")
    ax.set_ylabel(label)
    machine = rows[0].get("machine") or {}
    ax.set_title(title or f"accuracy vs latency on {machine.get('cpu', 'this machine')} "
                          f"({machine.get('threads', '?')} threads); marker area = parameters", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    tmp = temp_beside(out, "tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out
