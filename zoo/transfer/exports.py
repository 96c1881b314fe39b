"""Exports. Merged (``zoo export --merged``): a run's base and head as one model folder,
``config.json`` + ``model.safetensors`` (timm's own save_for_hf) + ``README.md``, which stock timm
loads without zoo, from a folder or a hub; :func:`load_export` loads one back with what zoo.load
gives every model. ONNX (``zoo export --onnx``, :func:`export_onnx`): any model as one graph with
its preprocessing and class names in its metadata, for stock ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from zoo.cards.card import Card, Source
from zoo.errors import EngineError, RunError, UsageError
from zoo.transfer.model_card import model_card_text
from zoo.transfer.runs import README_FILE, RunCard, _replaceable, load_run
from zoo.util import logs
from zoo.util.hashing import sha256_file
from zoo.util.progress import Progress, Task
from zoo.util.tempfiles import temp_beside

#: the files of a merged export (``zoo export --merged``), which stock timm loads from a folder or a hub
MERGED_FILES = ("config.json", "model.safetensors", README_FILE)


def _is_export(path: Path) -> bool:
    return {p.name for p in path.iterdir()} <= set(MERGED_FILES)


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
            save_for_hf(model, str(tmp), model_config={"label_names": list(model.run.classes),
                                                       "zoo": _export_record(model.run)}, safe_serialization=True)
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


def _export_record(card: RunCard) -> dict:
    """What config.json of a merged export says about its run (stock timm ignores the key):
    the name :func:`load_export` gives the model, and where it came from."""
    return {"format": "zoo-export", "run": card.name, "base": card.base.name,
            "base_weights_sha256": card.base.weights_sha256, "license": card.base.license}


def is_merged_export(path: str | os.PathLike) -> bool:
    """A folder stock timm loads: ``config.json`` beside ``model.safetensors`` (``zoo export --merged``)."""
    return (Path(path) / "config.json").is_file() and (Path(path) / "model.safetensors").is_file()


def load_export(path: str | os.PathLike, device=None, reference: str | None = None, repo_id: str | None = None):
    """The model of a merged export folder, built by stock timm (``local-dir:``, as
    ``timm.create_model`` loads it anywhere), with what zoo.load gives every model: ``class_names``
    (config.json ``label_names``), ``data_config`` (its pretrained_cfg), ``weights_sha256`` (of
    model.safetensors) and ``card`` (a card of the export itself, named after its run).
    ``reference`` is what the caller wrote (``hf://ORG/NAME``) and ``repo_id`` its hub repo."""
    import timm  # lazy: timm and torch only when a model is built (zoo publish needs neither)

    from zoo.model.decode import tag_output  # lazy: torch and timm, as above
    from zoo.model.load import TIMM_LOGGERS

    path = Path(path)
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        arch, num_classes = config["architecture"], config["num_classes"]
        cfg = config.get("pretrained_cfg") or {}
        if not isinstance(arch, str) or not isinstance(num_classes, int) or not isinstance(cfg, dict):
            raise TypeError("architecture, num_classes or pretrained_cfg has the wrong type")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{config_path} is not the config.json of a timm model ({type(exc).__name__}: {exc})") from None
    names = config.get("label_names")
    if names is not None and (not isinstance(names, list) or len(names) != num_classes
                              or not all(isinstance(n, str) for n in names)):
        raise RunError(f"{config_path}: label_names must list {num_classes} class names, got {str(names)[:200]}")
    if not timm.is_model(arch):
        raise RunError(f"{config_path}: timm {timm.__version__} has no architecture {arch!r}; upgrade timm")
    with logs.third_party_quiet(*TIMM_LOGGERS):
        try:
            model = timm.create_model(f"local-dir:{path}", pretrained=True)
        except (RuntimeError, ValueError, KeyError) as exc:  # what timm raises for weights that do not fit
            raise RunError(f"{path / 'model.safetensors'} does not load into {arch}: {str(exc).splitlines()[0]}") from None
    record = config.get("zoo") if isinstance(config.get("zoo"), dict) else {}
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in model.pretrained_cfg.items()}
    model.data_config = {"input_size": data["input_size"], "interpolation": data.get("interpolation") or "bicubic",
                         "mean": data["mean"], "std": data["std"], "crop_pct": data.get("crop_pct") or 0.875,
                         "crop_mode": data.get("crop_mode") or "center"}
    name = str(record.get("run") or (repo_id.split("/")[1] if repo_id else path.name))
    model.card = Card(name=name, architecture=arch, tag="export", hub_repo=repo_id or "",
                      sources=(Source(reference or str(path)),), num_classes=num_classes,
                      license=str(record.get("license") or "unknown"), path=str(config_path),
                      notes=f"merged export of the run {name} on {record.get('base') or arch}", **model.data_config)
    model.weights_sha256 = sha256_file(path / "model.safetensors")
    model.class_names = list(names) if names is not None else None
    model.export = path
    model.class_names_hook = model.register_forward_hook(tag_output)  # as zoo.load's (zoo/model/load.py)
    if device is not None:
        model.to(device)
    return model.eval()


#: the metadata_props keys of an ONNX export (``zoo export --onnx``), read by any ONNX runtime
ONNX_META_PREPROCESSING, ONNX_META_CLASSES = "preprocessing", "class_names"
#: largest logit difference allowed between the exported graph and the torch model (relative to the largest logit)
ONNX_EXPORT_RTOL = 1e-4


def preprocessing(model) -> dict:
    """What an image goes through before the model, in plain figures a user's own code applies
    without timm: resize the shorter side to ``resize`` pixels (``interpolation``), center-crop
    ``crop`` (H, W), scale to [0, 1], subtract ``mean``, divide by ``std``, NCHW float32."""
    config = model.data_config
    _, h, w = config["input_size"]
    crop_pct = config.get("crop_pct") or 1.0
    return {"input_size": list(config["input_size"]), "resize": int(min(h, w) / crop_pct), "crop": [h, w],
            "interpolation": config.get("interpolation") or "bicubic", "crop_pct": crop_pct,
            "crop_mode": config.get("crop_mode") or "center", "mean": list(config["mean"]),
            "std": list(config["std"]), "layout": "NCHW", "dtype": "float32", "range": "0-1 before mean/std"}


def export_onnx(model, out: str | os.PathLike, overwrite: bool = False, progress: Progress | None = None) -> Path:
    """``zoo export --onnx``: ``model`` (a zoo.load model: a card's, a run's, a merged export's)
    as one ONNX file, logits out, with its preprocessing (:func:`preprocessing`) and class names
    as JSON in the model's metadata_props, which stock ``onnxruntime`` loads without zoo. The graph
    is zoo's cached logits graph (zoo/model/engine.py: built once) with the metadata added; the
    file is written beside ``out``, checked in ONNX Runtime against the torch model on a probe
    batch (relative difference <= :data:`ONNX_EXPORT_RTOL`), then renamed into place."""
    import onnx
    import torch

    from zoo.model.decode import output_names  # lazy: torch and timm, as in load_export
    from zoo.model.engine import OnnxForward, build, parity

    out = Path(os.path.abspath(out))
    if out.suffix != ".onnx":
        raise UsageError(f"--onnx writes an .onnx file, not {out.name}: name it like {out.stem}.onnx")
    if out.is_dir():
        raise UsageError(f"{out} is a directory; --onnx writes a file")
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; choose another path or pass --overwrite")
    names = output_names(model)
    name = getattr(getattr(model, "run", None), "name", None) or model.card.name
    size = tuple(model.data_config["input_size"])
    data, _ = build(model, "logits", model.forward, size, progress)
    proto = onnx.load_model_from_string(data)
    meta = {ONNX_META_PREPROCESSING: json.dumps(preprocessing(model)), "model": name,
            "base": model.card.name if getattr(model, "run", None) else "", "weights_sha256": model.weights_sha256,
            "producer": "zoo export --onnx", "license": str(getattr(model.card, "license", "") or "")}
    if names is not None:
        meta[ONNX_META_CLASSES] = json.dumps(names)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"{name}: logits of {len(names) if names else '?'} classes; preprocessing in metadata_props"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out, "partial")
    try:
        onnx.save_model(proto, str(tmp))
        written = tmp.read_bytes()
        probe = torch.randn(2, *size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            reference = model.eval().forward(probe).float()
        diff, rel, _ = parity(reference, OnnxForward(written, {})(probe), logits=True)
        if not rel <= ONNX_EXPORT_RTOL:
            raise EngineError(f"the ONNX graph of {name} gives logits {rel:.3g} (relative) from torch's "
                              f"(max abs {diff:.3g}); not written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
