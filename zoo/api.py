"""``zoo.load``: any model reference to a model, the one call users make.

A card name, alias, architecture or timm tag (``zoo.loader.load``); a run directory made by
``zoo finetune`` or a published run ``hf://ORG/NAME`` (``zoo.runs.load_run``: the base from its
card, verified, then the stored head). It sits at the end of the import chain so that the
loader below it never needs to know about runs.
"""

from __future__ import annotations

import os
from typing import Any

from zoo.errors import UsageError


def resolve_run(name: Any):
    """The local run directory ``name`` refers to (fetching a published run), or None."""
    if not isinstance(name, (str, os.PathLike)):
        return None
    from zoo.transfer.runs import is_run

    text = os.fspath(name)
    if is_run(text):
        return text
    from zoo.transfer.publish import fetch_run, is_published_run_uri

    if is_published_run_uri(text):
        return fetch_run(text)
    return None


def load(name, head=None, **kwargs):
    """A ready model: see :func:`zoo.loader.load` for card names and its options. A run directory
    or ``hf://ORG/NAME`` of a published run gives the fine-tuned model (``device`` is the only
    option it takes: its head, pooling and transform are the run's)."""
    run = resolve_run(name)
    if run is None:
        from zoo.model.load import load as load_card

        return load_card(name, head=head, **kwargs)
    extra = sorted(k for k, v in kwargs.items() if v is not None and k != "device")
    if head is not None or extra:
        raise UsageError(f"{name} is a fine-tuned run: its head and options are fixed "
                         f"(got {', '.join((['head'] if head is not None else []) + extra)}); "
                         f"to train another head, load its base ({_base_name(run)}) instead")
    from zoo.transfer.runs import load_run

    return load_run(run, device=kwargs.get("device"))


def _base_name(run) -> str:
    from zoo.transfer.runs import read_run

    return read_run(run).base.name
