"""The measurements ``zoo compare`` keeps: the latest figures of each card on this machine.

One JSON document per card under ``ZOO_HOME/measurements`` (version 1: latency, throughput, peak
memory, GMACs and the machine they were taken on; since the interleaved timing also the runs and
rounds behind the latency and ``busy``, why the machine was too busy to trust it, or null),
written atomically. Torch-free: ``zoo list
--measured`` reads them beside the published figures.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from zoo import home
from zoo.util.tempfiles import temp_beside

MEASUREMENTS_VERSION = 1


def measurements_dir(base: str | os.PathLike | None = None) -> Path:
    return Path(home.measurements(base))


def save_measurement(name: str, row: dict) -> None:
    """Keep the latest measurement of ``name`` (with its machine), atomically."""
    keep = {k: row.get(k) for k in ("latency_ms", "latency_p90_ms", "runs", "rounds", "busy", "others_cpu",
                                    "throughput", "throughput_batch", "peak_rss_mb", "gmacs", "machine")}
    doc = {"version": MEASUREMENTS_VERSION, "name": name, "measured_at": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), **keep}
    folder = measurements_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(folder / f"{name}.json")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, folder / f"{name}.json")


def latest_measurements(base: str | os.PathLike | None = None) -> dict[str, dict]:
    """Card name -> its latest local measurement (torch-free: ``zoo list --measured`` and the hub's
    pages read this); ``base``: another zoo directory than ``ZOO_HOME`` (a ``zoo serve --cache``)."""
    out = {}
    folder = measurements_dir(base)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged file costs its row, not the listing
        if isinstance(doc, dict) and doc.get("version") == MEASUREMENTS_VERSION and isinstance(doc.get("name"), str):
            out[doc["name"]] = doc
    return out
