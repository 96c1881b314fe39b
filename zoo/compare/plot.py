"""``zoo compare --plot``: accuracy against latency as a PNG (matplotlib, the ``plot`` extra).

Each model is a numbered marker (its rank), named in the legend: names written beside the points
collide as soon as two models are close, and close models are the ones worth comparing. Vertical
bars are the probe's 95% bootstrap interval, horizontal ones run from the median latency to the
p90; the Pareto front (no model both more accurate and faster) is a dashed line, explained in the
legend. The latency axis is logarithmic with ticks labelled as plain milliseconds (10, 20, 50).
Accuracy is the probe's on the user's data when there is one, else the published ImageNet top-1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from zoo.errors import UsageError
from zoo.util.plots import check_plot, pyplot, save_png

FRONT, OTHER = "#d62728", "#1f77b4"


def log_ticks(lo: float, hi: float) -> list[float]:
    """Round tick values for a log axis over [lo, hi]: 1-2-5 steps per decade, finer ones when the
    span is too narrow to hold four of those."""
    for steps in ((1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in steps if lo <= m * 10 ** e <= hi]
        if len(ticks) >= 4:
            break
    return ticks


def _label(r: dict, key: str) -> str:
    params = f"{r['params'] / 1e6:.1f}M params" if r.get("params") else "params ?"
    accuracy = f"probe {r[key]:.3f}" if key == "probe_accuracy" else f"top-1 {r[key]:.2f}%"
    text = f"{r['label']}  ({params}, {accuracy}, {r['latency_ms']:.1f} ms)"
    return text + ("  timed on a busy machine: latency may be inflated" if r.get("busy") else "")


def plot(result: dict, out: str | os.PathLike, title: str | None = None) -> Path:
    """Write the PNG for a :func:`zoo.compare.compare` result; returns its path."""
    out = check_plot(out)
    plt = pyplot()
    from matplotlib.lines import Line2D

    with_data = result.get("data") is not None
    key = "probe_accuracy" if with_data else "top1"
    rows = [r for r in result["rows"] if r.get(key) is not None and r.get("latency_ms") is not None]
    if not rows:
        raise UsageError("nothing to plot: no model was both measured and scored (see the 'not measured' column)")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    handles = [_draw(ax, r, key, with_data, Line2D) for r in rows]
    front = sorted((r for r in rows if r.get("pareto_front")), key=lambda r: r["latency_ms"])
    if len(front) > 1:
        ax.plot([r["latency_ms"] for r in front], [r[key] for r in front], color=FRONT, lw=1.2, ls="--", zorder=0)
    handles.append(Line2D([], [], color=FRONT, lw=1.2, ls="--", marker="o", markersize=6,
                          label="Pareto front: no other model is both more accurate and faster"))
    if with_data:
        handles.append(Line2D([], [], color="grey", lw=1.2, marker="_", markersize=8,
                              label="vertical bars: 95% bootstrap interval of the accuracy (held-out images)"))
    handles.append(Line2D([], [], color="grey", lw=1, ls=":", label="dotted: from the median latency to its p90"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.17), fontsize=8, frameon=False,
              handletextpad=0.8, borderaxespad=0, ncol=2 if len(handles) > 8 else 1)
    _log_x(ax, [r["latency_ms"] for r in rows], [r["latency_p90_ms"] for r in rows])
    _pad_y(ax, rows, key, with_data)
    ax.set_xlabel("latency at batch 1 (ms, median; log scale)")
    s = result.get("split") or {}
    ax.set_ylabel(f"linear-probe accuracy ({s.get('test', '?')} held-out images)" if with_data
                  else "published ImageNet top-1 (%)")
    machine = rows[0].get("machine") or {}
    ax.set_title(title or f"accuracy against latency on {machine.get('cpu', 'this machine')} "
                          f"({machine.get('threads', '?')} threads, {machine.get('device', 'cpu')})", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out, bbox_inches="tight")


def _draw(ax, r: dict, key: str, with_data: bool, Line2D):  # noqa: N803 - matplotlib's class, imported late
    """One model: its numbered marker, its accuracy interval and its p90; returns its legend entry."""
    x, y = r["latency_ms"], r[key]
    color = FRONT if r.get("pareto_front") else OTHER
    lo, hi = (r.get("probe_interval") or (y, y)) if with_data else (y, y)
    ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], fmt="none", ecolor=color, elinewidth=1.2, capsize=4, alpha=0.8,
                zorder=1)
    ax.plot([x, r["latency_p90_ms"]], [y, y], color=color, lw=1, ls=":", alpha=0.7, zorder=1)
    ax.scatter([x], [y], s=260, color=color, edgecolors="black", linewidths=0.8, zorder=2, alpha=0.9)
    ax.annotate(str(r["rank"]), (x, y), ha="center", va="center", fontsize=8, fontweight="bold", color="white",
                zorder=3)
    return Line2D([], [], ls="none", marker=f"${r['rank']}$", color=color, markersize=7, label=_label(r, key))


def _log_x(ax, medians: list[float], p90s: list[float]) -> None:
    """A log x axis a little wider than the ``medians`` and their p90s, its ticks at round
    milliseconds written plainly. A p90 far out (a busy machine: 1,000 ms where the median is 20)
    runs off the edge rather than squeezing every marker into one corner."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    lo, hi = min(medians) / 1.25, max(medians) * 1.25
    hi = max(hi, min(max(p90s), max(medians) * 3) * 1.1)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = log_ticks(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _pad_y(ax, rows: list[dict], key: str, with_data: bool) -> None:
    """Room above and below the markers and their bars."""
    lows = [(r.get("probe_interval") or [r[key]])[0] if with_data else r[key] for r in rows]
    highs = [(r.get("probe_interval") or [r[key], r[key]])[1] if with_data else r[key] for r in rows]
    lo, hi = min(lows), max(highs)
    pad = max((hi - lo) * 0.12, 0.005 if with_data else 0.5)
    ax.set_ylim(lo - pad, min(hi + pad, 1.0 + pad / 2) if with_data else hi + pad)
