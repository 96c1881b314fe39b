"""A fine-tuning run directory: what it holds, how it is written, checked and loaded.

``RUN/`` holds ``head.safetensors`` (only the tensors that differ from the base weights: the new
head plus any unfrozen layers, class names in its metadata), ``card.toml`` (the base by name *and*
sha256, its feature size, classes, transform, strategy, hyper-parameters, metrics, versions and the
sha256 of every other file as written), ``README.md`` (a Hugging Face model card) and ``metrics.json``.

What is checked, and why (:func:`verify_run`): the weights and ``card.toml`` are the run; the README
is its prose, for people to edit. So ``card.toml`` records the sha256 of ``head.safetensors`` and
``metrics.json`` (checked), and the head's metadata records the sha256 of ``card.toml`` (its *seal*:
the card's bytes with its own record of the head's sha256 blanked, the one value the card cannot
know before the head is written). An edit to the head, the metrics or the card refuses the run; an
edit to the README does not. ``files.README.md`` records the README as zoo rendered it, which
``zoo publish`` reads to tell a user's edit from zoo's text. Runs of version 1 (before the seal)
stay loadable: their head's metadata (classes, base sha256) is compared with the card instead.

A run never holds the base weights: loading it resolves the base through its card, verifies the
bytes, and refuses a base whose sha256 or feature size differs from the recorded ones, naming both
values, before any tensor is copied (never a half-loaded model). README.md's text is
:mod:`zoo.transfer.model_card`; a merged export (``zoo export --merged``: ``config.json`` +
``model.safetensors``, what stock timm loads) is :mod:`zoo.transfer.exports`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from zoo.cards import validate as v
from zoo.errors import FieldError, RunError, UsageError
from zoo.util.hashing import sha256_file
from zoo.util.tempfiles import temp_beside
from zoo.weights.safetensors_writer import write_safetensors

RUN_FORMAT = "zoo-run"
#: 2: card.toml is sealed by the head's metadata and README.md is not checked; 1: every file checked
RUN_VERSION = 2
CARD_FILE = "card.toml"
HEAD_FILE = "head.safetensors"
README_FILE = "README.md"
METRICS_FILE = "metrics.json"
#: every file a run is made of (card.toml records the sha256 of the others)
RUN_FILES = (CARD_FILE, HEAD_FILE, README_FILE, METRICS_FILE)
#: the files whose recorded sha256 a load checks (card.toml itself is checked through the head's seal)
CHECKED_FILES = (HEAD_FILE, METRICS_FILE)
#: the head's metadata key holding the seal of card.toml (:func:`card_seal`)
SEAL_KEY = "card_sha256"
_BLANK = "0" * 64


@dataclass(frozen=True)
class Base:
    name: str
    architecture: str
    weights_sha256: str
    num_features: int
    license: str = "unknown"
    hub_repo: str = ""


@dataclass(frozen=True)
class RunCard:
    """``card.toml`` of a run, validated."""

    name: str
    base: Base
    classes: tuple[str, ...]
    pool: str
    transform: Mapping[str, Any]
    training: Mapping[str, Any]
    metrics: Mapping[str, Any]
    versions: Mapping[str, str]
    files: Mapping[str, str]
    format: str = RUN_FORMAT
    version: int = RUN_VERSION

    def to_toml_dict(self) -> dict[str, Any]:
        return {"format": self.format, "version": self.version, "name": self.name, "base": vars(self.base),
                "head": {"classes": list(self.classes), "pool": self.pool},
                "transform": dict(self.transform), "training": dict(self.training), "metrics": dict(self.metrics),
                "versions": dict(self.versions), "files": dict(self.files)}


def _scalars(value: Any) -> dict:
    """A table of TOML scalars or lists of scalars (hyper-parameters, metrics, versions)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table, got {value!r}")
    for key, item in value.items():
        items = item if isinstance(item, list) else [item]
        if not all(isinstance(x, (str, int, float, bool)) for x in items):
            raise FieldError(key, f"expected a number, string, boolean or a list of them, got {item!r}")
    return dict(value)


def _sha_table(value: Any) -> dict:
    table = _scalars(value)
    for key, item in table.items():
        if v.sha256_hex(item) is None:
            raise FieldError(key, "expected a sha256 (64 hex digits)")
    return table


def _run_format(value: Any) -> str:
    if value != RUN_FORMAT:
        raise ValueError(f"expected {RUN_FORMAT!r}: this card.toml is not a zoo run")
    return value


def _run_version(value: Any) -> int:
    version = v.integer(1)(value)
    if version > RUN_VERSION:
        raise ValueError(f"version {version} is newer than this zoo reads ({RUN_VERSION}); upgrade zoo")
    return version


def _size(value: Any) -> tuple:
    size = v.list_of(v.integer(1), min_len=3)(value)
    if len(size) != 3 or max(size) > 8192:
        raise ValueError(f"expected [channels, height, width] up to 8192, got {value!r}")
    return size


def _triple(value: Any) -> tuple:
    out = v.list_of(v.number(-1e3, 1e3), min_len=1)(value)
    if len(out) not in (1, 3):
        raise ValueError(f"expected 1 or 3 numbers, got {value!r}")
    return out


# what create_transform receives: checked key by key, since a published card is someone else's file
_TRANSFORM_SPEC = {
    "input_size": (_size, True), "interpolation": (v.choice(("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")), True),
    "mean": (_triple, True), "std": (_triple, True), "crop_pct": (v.number(0.05, 2.0), True),
    "crop_mode": (v.choice(("center", "squash", "border")), True),
}
_TRAINING_REQUIRED = ("strategy",)
_METRICS_REQUIRED = ("val_accuracy", "val_size", "train_accuracy")

_BASE_SPEC = {"name": (v.string, True), "architecture": (v.string, True), "weights_sha256": (v.sha256_hex, True),
              "num_features": (v.integer(1), True), "license": (v.string, False), "hub_repo": (v.string, False)}
_HEAD_SPEC = {"classes": (v.list_of(v.string, min_len=2), True), "pool": (v.string, True)}
_RUN_SPEC = {
    "format": (_run_format, True), "version": (_run_version, True), "name": (v.string, True),
    "base": (v.sub_table(Base, _BASE_SPEC), True), "head": (v.sub_table(dict, _HEAD_SPEC), True),
    "transform": (lambda t: v.check_table(t, _TRANSFORM_SPEC) if isinstance(t, Mapping) else _scalars(t), True),
    "training": (_scalars, True), "metrics": (_scalars, True),
    "versions": (_scalars, True), "files": (_sha_table, True),
}


def read_run(path: str | os.PathLike) -> RunCard:
    """The validated ``card.toml`` of the run directory ``path``; errors name the file and field."""
    import tomllib

    card_path = Path(path) / CARD_FILE
    if not card_path.is_file():
        raise RunError(f"{path} is not a run directory: no {CARD_FILE} (made by `zoo finetune`)")
    try:
        data = tomllib.loads(card_path.read_text(encoding="utf-8"))
        fields = v.check_table(data, _RUN_SPEC)
    except tomllib.TOMLDecodeError as exc:
        raise RunError(f"{card_path}: not valid TOML: {exc}") from None
    except FieldError as exc:
        raise RunError(f"{card_path}: {exc.field}: {exc.problem}") from None
    head = fields.pop("head")
    if head["classes"] and len(set(head["classes"])) != len(head["classes"]):
        raise RunError(f"{card_path}: head.classes: duplicate class names")
    for section, keys in (("training", _TRAINING_REQUIRED), ("metrics", _METRICS_REQUIRED)):
        missing = [k for k in keys if k not in fields[section]]
        if missing:
            raise RunError(f"{card_path}: {section}.{missing[0]}: missing required field")
    for key in ("val_accuracy", "train_accuracy"):
        value = fields["metrics"][key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise RunError(f"{card_path}: metrics.{key}: expected a number between 0 and 1, got {value!r}")
    fields["transform"] = {k: list(x) if isinstance(x, tuple) else x for k, x in fields["transform"].items()}
    return RunCard(classes=tuple(head["classes"]), pool=head["pool"], **fields)


def is_run(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / CARD_FILE).is_file()


def verify_run(path: str | os.PathLike) -> RunCard:
    """The run's card, after checking the weights and metrics against the sha256 the card records
    and the card against the head's seal (see the module docstring: the README is not checked)."""
    path = Path(path)
    card = read_run(path)
    for name in CHECKED_FILES:
        recorded = card.files.get(name)
        if recorded is None:
            raise RunError(f"{path / CARD_FILE} records no sha256 for {name}")
        if not (path / name).is_file():
            raise RunError(f"{path} is incomplete: {name} is missing")
        actual = sha256_file(path / name)
        if actual != recorded:
            raise RunError(f"{path / name} was changed after the run was written: sha256 {actual}, "
                           f"card.toml records {recorded}")
    _check_card_against_head(path, card, head_metadata(path / HEAD_FILE))
    return card


def card_seal(card_text: str, head_sha256: str) -> str:
    """The seal of ``card.toml`` that the head's metadata records: the sha256 of the card's text
    with the head's sha256 (recorded in the card) blanked, the one value the card cannot know
    before the head is written."""
    return hashlib.sha256(card_text.replace(head_sha256, _BLANK).encode("utf-8")).hexdigest()


def head_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its header alone (no torch)."""
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100 << 20:
                raise ValueError(f"a header of {size} bytes")
            header = json.loads(fh.read(size))
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a table")
    except (OSError, struct.error, ValueError, AttributeError) as exc:
        raise RunError(f"{path} is not a safetensors file ({exc})") from None
    return meta


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _check_card_against_head(path: Path, card: RunCard, meta: Mapping[str, str]) -> None:
    """card.toml is the one the head was written with: by its seal (version 2), and for every
    version by the classes and base sha256 the head's metadata repeats."""
    card_path = path / CARD_FILE
    if card.version >= 2:
        seal = meta.get(SEAL_KEY)
        if seal is None:
            raise RunError(f"{path / HEAD_FILE} carries no seal of {CARD_FILE} (metadata {SEAL_KEY}): "
                           f"a version-{card.version} run is written with one; fine-tune again")
        actual = card_seal(card_path.read_text(encoding="utf-8"), card.files[HEAD_FILE])
        if actual != seal:
            raise RunError(f"{card_path} was changed after the run was written: its seal is {actual}, "
                           f"{HEAD_FILE} records {seal}; restore it (README.md is the file to edit)")
    if "classes" in meta and _json_or_none(meta["classes"]) != list(card.classes):
        raise RunError(f"{card_path}: head.classes {list(card.classes)} are not the classes {HEAD_FILE} was "
                       f"trained with ({meta['classes']}); restore card.toml")
    if "base_sha256" in meta and meta["base_sha256"] != card.base.weights_sha256:
        raise RunError(f"{card_path}: base.weights_sha256 {card.base.weights_sha256} is not the base "
                       f"{HEAD_FILE} was trained on ({meta['base_sha256']}); restore card.toml")


def changed_tensors(model, base_file: str | os.PathLike) -> dict:
    """The tensors of ``model`` that differ from the base weights file (new head, unfrozen layers,
    their BN statistics): all a run has to store."""
    import torch
    from safetensors import safe_open

    out = {}
    with safe_open(str(base_file), "pt") as base:
        keys = set(base.keys())
        for name, tensor in model.state_dict().items():
            if name in keys:
                ref = base.get_tensor(name)
                if ref.shape == tensor.shape and torch.equal(ref, tensor.detach().cpu()):
                    continue
            out[name] = tensor.detach().cpu().contiguous()
    return out


def _replaceable(out: Path, overwrite: bool, what: str, is_ours) -> Path:
    out = Path(os.path.abspath(out))
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    if not out.is_dir():
        raise UsageError(f"{out} is a file; {what} is a directory: choose another path")
    if not is_ours(out):
        raise UsageError(f"{out} is a directory that does not hold {what}; zoo replaces only its own: "
                         "choose another path")
    if not overwrite:
        raise UsageError(f"{out} holds {what} already; choose another path or pass --overwrite")
    return out


def check_out(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Where a new run may be written: a new or empty directory, or (with ``overwrite``) an
    earlier run. Checked before any training, so a bad ``--out`` costs nothing."""
    return _replaceable(Path(out), overwrite, "a run", is_run)


def write_run(out: str | os.PathLike, card: RunCard, head_tensors: dict, history: list[dict], readme: str,
              overwrite: bool = False) -> Path:
    """Write the run directory ``out`` whole: files go to a temp directory beside it, which is
    renamed into place once complete (an interrupted run leaves no half-written directory).
    ``readme`` is README.md's text (zoo.transfer.model_card.model_card_text of ``card``), rendered
    by the caller: the model card is made from the run's card, so the format does not import it."""
    from dataclasses import replace

    import tomlkit

    out = check_out(out, overwrite)
    tmp = temp_beside(out, "partial")
    tmp.mkdir(parents=True)
    try:
        (tmp / METRICS_FILE).write_text(json.dumps({**card.metrics, "history": history}, indent=2) + "\n")
        (tmp / README_FILE).write_text(readme, encoding="utf-8")
        files = {HEAD_FILE: _BLANK, METRICS_FILE: sha256_file(tmp / METRICS_FILE),
                 README_FILE: sha256_file(tmp / README_FILE)}
        card = replace(card, version=RUN_VERSION, files=dict(sorted(files.items())))
        # the card first, with the head's sha256 blank: its seal goes into the head's metadata,
        # then the head's sha256 into the card (see the module docstring)
        draft = tomlkit.dumps(card.to_toml_dict())
        head_sha = write_safetensors(head_tensors, str(tmp / HEAD_FILE), {
            "format": "pt", "zoo_run": str(RUN_VERSION), "classes": json.dumps(list(card.classes)),
            "base_sha256": card.base.weights_sha256, SEAL_KEY: card_seal(draft, _BLANK)})
        text = tomlkit.dumps(replace(card, files={**card.files, HEAD_FILE: head_sha}).to_toml_dict())
        if card_seal(text, head_sha) != card_seal(draft, _BLANK):  # the seal's definition, kept honest
            raise RunError(f"card.toml of {out} does not differ from its draft by the head's sha256 alone")
        (tmp / CARD_FILE).write_text(text, encoding="utf-8")
        if out.exists():
            trash = temp_beside(out, "old")
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_run(path: str | os.PathLike, device=None):
    """The fine-tuned model of a run directory: the base from the cache (verified by sha256), then
    the stored tensors. Sets ``model.run`` (the RunCard) and ``model.class_names``. The base name is
    resolved once, here, into its card; the base loads through the same function as any card."""
    from safetensors.torch import load_file  # lazy: torch, only when a model is built (zoo publish needs none)

    from zoo.model.heads import classifier_names  # lazy: torch and timm, as above
    from zoo.model.load import load
    from zoo.model.resolve import card_for

    path = Path(path)
    card = verify_run(path)
    model = load(card_for(card.base.name), head=list(card.classes), pool=card.pool or None)
    if tuple(card.transform["input_size"]) != tuple(model.data_config["input_size"]):
        raise RunError(f"{path} was trained at input size {tuple(card.transform['input_size'])}, but "
                       f"{card.base.name} takes {tuple(model.data_config['input_size'])}")
    if model.weights_sha256 != card.base.weights_sha256:
        raise RunError(f"{path} was trained on base weights sha256 {card.base.weights_sha256}, but "
                       f"{card.base.name} resolves to {model.weights_sha256} here; pull the recorded weights "
                       f"(zoo pull {card.base.name} after restoring its card) or fine-tune again")
    if model.num_features != card.base.num_features:
        raise RunError(f"{path} holds a head for {card.base.num_features} features, but {card.base.name} "
                       f"gives {model.num_features} here")
    tensors = load_file(str(path / HEAD_FILE))
    state = model.state_dict()
    if card.training["strategy"] == "head":  # a head run replaces the classifier and nothing else
        heads = classifier_names(model)
        foreign = sorted(n for n in tensors if not any(n == h or n.startswith(h + ".") for h in heads))
        if foreign:
            raise RunError(f"{path / HEAD_FILE}: a head-strategy run holds backbone tensors ({', '.join(foreign[:3])})")
    for name, tensor in tensors.items():
        if name not in state:
            raise RunError(f"{path / HEAD_FILE}: tensor {name!r} is not in {card.base.architecture}")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise RunError(f"{path / HEAD_FILE}: {name} has shape {tuple(tensor.shape)}, "
                           f"{card.base.architecture} expects {tuple(state[name].shape)}")
    model.load_state_dict(tensors, strict=False)
    if device is not None:
        model.to(device)
    model.run = card
    model.data_config = {**model.data_config, **{k: tuple(x) if isinstance(x, list) else x
                                                 for k, x in card.transform.items()}}
    return model

