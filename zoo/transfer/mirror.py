"""Runs in offline bundles: ``zoo mirror export`` of run directories, ``zoo mirror import`` of them.

The weights stage writes and verifies bundles (zoo/weights/bundles.py) and may not know what a run
is, so the run knowledge is here: a run directory goes into a bundle verified (:func:`verify_run`),
as its files and the base model it needs (a :class:`~zoo.weights.bundle_manifest.BundledRun`), and the
bundle carries that base as an ordinary model (weights, card). On import each run is verified
again, staged, before anything enters the cache, then written to ``runs_to/<name>``: a plain run
directory whose base is in the cache, which ``zoo.load`` loads offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import BundleError, RunError
from zoo.transfer.runs import RUN_FILES, verify_run
from zoo.util.progress import Progress
from zoo.weights import bundle_export, bundles
from zoo.weights.bundle_export import Exported
from zoo.weights.bundle_manifest import BundledRun, read_manifest


def bundled_run(path: str | os.PathLike) -> BundledRun:
    """A run directory as a bundle carries it: verified now, its files, its base by card name and sha256."""
    path = Path(os.path.abspath(path))
    card = verify_run(path)
    files = tuple(name for name in RUN_FILES if (path / name).is_file())
    return BundledRun(path.name, path, files, card.base.name, card.base.weights_sha256)


def export_bundle(out: str | os.PathLike, names: list[str] | None = None, *, runs: list[str | os.PathLike] = (),
                  progress: Progress | None = None, **options) -> Exported:
    """:func:`zoo.weights.bundle_export.export_bundle` of the models ``names`` (and ``options``: pattern,
    all_cached, tar, link, source), plus the run directories ``runs`` with their base models."""
    return bundle_export.export_bundle(out, names, runs=[bundled_run(r) for r in runs], progress=progress, **options)


def import_bundle(bundle: str | os.PathLike, *, runs_to: str | os.PathLike | None = None, hf_cache: bool = False,
                  progress: Progress | None = None) -> tuple[list[dict], list[Path]]:
    """:func:`zoo.weights.bundles.import_bundle`, the bundle's runs written to ``runs_to/<name>``,
    each verified as a run first (``runs_to`` is required when the bundle holds runs): (the models
    imported, the run directories)."""
    bundle = Path(bundle)

    def check(run: Path) -> None:
        try:
            verify_run(run)
        except RunError as exc:
            raise BundleError(f"{bundle}: runs/{run.name} is refused ({exc}); nothing was imported") from None

    models = bundles.import_bundle(bundle, hf_cache=hf_cache, runs_to=runs_to, check_run=check, progress=progress)
    runs = [Path(os.path.abspath(Path(runs_to or ".") / r["name"])) for r in read_manifest(bundle).get("runs", [])]
    return models, runs
