"""A fine-tuning run directory: what it holds, how it is written, checked, loaded and exported.

``RUN/`` holds ``head.safetensors`` (only the tensors that differ from the base weights: the new
head plus any unfrozen layers, class names in its metadata), ``card.toml`` (the base by name *and*
sha256, its feature size, classes, transform, strategy, hyper-parameters, metrics, versions and the
sha256 of every other file), ``README.md`` (a Hugging Face model card) and ``metrics.json``.

A run never holds the base weights: loading it resolves the base through its card, verifies the
bytes, and refuses a base whose sha256 or feature size differs from the recorded ones, naming both
values, before any tensor is copied (never a half-loaded model).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from zoo.cards import validate as v
from zoo.errors import FieldError, RunError, UsageError
from zoo.util.hashing import sha256_file
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside
from zoo.weights.safetensors_writer import write_safetensors

RUN_FORMAT = "zoo-run"
RUN_VERSION = 1
CARD_FILE = "card.toml"
HEAD_FILE = "head.safetensors"
README_FILE = "README.md"
METRICS_FILE = "metrics.json"
#: every file a run is made of (card.toml records the sha256 of the others)
RUN_FILES = (CARD_FILE, HEAD_FILE, README_FILE, METRICS_FILE)


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
    """The run's card, after checking every file against the sha256 the card records."""
    path = Path(path)
    card = read_run(path)
    for name in RUN_FILES[1:]:
        recorded = card.files.get(name)
        if recorded is None:
            raise RunError(f"{path / CARD_FILE} records no sha256 for {name}")
        if not (path / name).is_file():
            raise RunError(f"{path} is incomplete: {name} is missing")
        actual = sha256_file(path / name)
        if actual != recorded:
            raise RunError(f"{path / name} was changed after the run was written: sha256 {actual}, "
                           f"card.toml records {recorded}")
    return card


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


def model_card_text(card: RunCard, merged: bool = False) -> str:
    """README.md: the Hugging Face model card (metadata header through huggingface_hub.ModelCard).
    ``merged``: the card of a full exported model, loaded by stock timm."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metrics = card.metrics
    data = ModelCardData(
        base_model=card.base.hub_repo or None, license=card.base.license if card.base.license != "unknown" else None,
        library_name="timm" if merged else "zoo", tags=["image-classification", "transfer-learning", "zoo", card.base.architecture],
        pipeline_tag="image-classification", model_name=card.name,
        eval_results=[EvalResult(task_type="image-classification", dataset_type="imagefolder",
                                 dataset_name=str(card.training.get("data_name", "imagefolder")),
                                 metric_type="accuracy", metric_value=float(metrics["val_accuracy"]),
                                 dataset_split=f"validation ({metrics['val_size']} images)")])
    rows = "\n".join(f"| {k} | {v} |" for k, v in card.training.items())
    # the body is passed as a value, never as template text: class and run names are user data
    body = f"""
# {card.name}

A {len(card.classes)}-class head for `{card.base.name}` (base weights sha256 `{card.base.weights_sha256}`),
fine-tuned with [zoo](https://github.com/) using the **{card.training['strategy']}** strategy.

Validation accuracy **{float(metrics['val_accuracy']):.4f}** on {metrics['val_size']} held-out images
(train accuracy {float(metrics['train_accuracy']):.4f}).

Classes: {', '.join(card.classes)}

## Use

{_USE_MERGED if merged else _USE_RUN}

## Training

{card.training.get('reason', '')}

| hyper-parameter | value |
| --- | --- |
{rows}
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n{{ body }}", body=body).content


_USE_RUN = f"""```python
import zoo
model = zoo.load("hf://ORG/NAME")  # downloads this head, then the base through its card; verifies both
```

This repository holds only the tensors that changed ({HEAD_FILE}); the base weights are fetched and
verified by sha256 from the base model's own sources."""
_USE_MERGED = """```python
import timm
model = timm.create_model("hf-hub:ORG/NAME", pretrained=True)  # the full model: no zoo needed
```"""


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


def _is_export(path: Path) -> bool:
    return {p.name for p in path.iterdir()} <= {"config.json", "model.safetensors", README_FILE}


def write_run(out: str | os.PathLike, card: RunCard, head_tensors: dict, history: list[dict],
              overwrite: bool = False) -> Path:
    """Write the run directory ``out`` whole: files go to a temp directory beside it, which is
    renamed into place once complete (an interrupted run leaves no half-written directory)."""
    from dataclasses import replace

    import tomlkit

    out = check_out(out, overwrite)
    tmp = temp_beside(out, "partial")
    tmp.mkdir(parents=True)
    try:
        files = {}
        files[HEAD_FILE] = write_safetensors(head_tensors, str(tmp / HEAD_FILE), {
            "format": "pt", "zoo_run": str(RUN_VERSION), "classes": json.dumps(list(card.classes)),
            "base_sha256": card.base.weights_sha256})
        (tmp / METRICS_FILE).write_text(json.dumps({**card.metrics, "history": history}, indent=2) + "\n")
        files[METRICS_FILE] = sha256_file(tmp / METRICS_FILE)
        card = replace(card, files=files)
        (tmp / README_FILE).write_text(model_card_text(card), encoding="utf-8")
        files[README_FILE] = sha256_file(tmp / README_FILE)
        card = replace(card, files=dict(sorted(files.items())))
        (tmp / CARD_FILE).write_text(tomlkit.dumps(card.to_toml_dict()), encoding="utf-8")
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


def export_merged(run: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False,
                  progress: Progress | None = None) -> Path:
    """A full model folder stock timm loads without zoo: ``config.json`` (architecture,
    num_classes, label_names, pretrained_cfg) and ``model.safetensors`` (timm's own save_for_hf).
    ``progress`` (zoo.util.progress) sees one task of three steps (load, write, check)."""
    from timm.models import save_for_hf

    out = _replaceable(Path(out), overwrite, "a merged export", _is_export)
    tmp = temp_beside(out, "partial")
    try:
        with Task(progress, "export", f"export {Path(run).name} to {out}", 3, "steps") as task:
            task.status("loading the run and its base")
            model = load_run(run)
            task.advance(1)
            task.status("writing config.json and model.safetensors")
            save_for_hf(model, str(tmp), model_config={"label_names": list(model.run.classes)}, safe_serialization=True)
            task.advance(1)
            config = json.loads((tmp / "config.json").read_text())
            (tmp / README_FILE).write_text(model_card_text(model.run, merged=True), encoding="utf-8")
            if config.get("num_classes") != len(model.run.classes):
                raise RunError(f"timm wrote num_classes {config.get('num_classes')} for {len(model.run.classes)} classes")
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
            task.advance(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
