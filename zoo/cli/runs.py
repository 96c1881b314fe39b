"""``zoo finetune`` (a new head on an ImageFolder), ``zoo export`` (a full timm model folder) and
``zoo publish`` (a run to a hub repo)."""

from __future__ import annotations

import argparse

from zoo.cli.console import (ProgressDisplay, add_engine_arguments, apply_threads, console, fraction, fraction_or_zero,
                             non_negative_float, non_negative_int, positive_float, positive_int, print_json)
from zoo.transfer.strategy import MONITORS, SCHEDULES, STRATEGIES
from zoo.util import distributed


def cmd_finetune(args: argparse.Namespace) -> int:
    from zoo.transfer.finetune import finetune

    out = console()
    apply_threads(args.threads)
    with ProgressDisplay() as progress:  # the epochs are messages: printed above the bars, in order
        result = finetune(args.name, args.data, args.out, val_split=args.val_split, val=args.val,
                          strategy=args.strategy, epochs=args.epochs, freeze=args.freeze, unfreeze=args.unfreeze,
                          lr=args.lr, backbone_lr=args.backbone_lr, batch_size=args.batch_size, augment=args.augment,
                          monitor=args.monitor, patience=args.patience, schedule=args.schedule, warmup=args.warmup,
                          label_smoothing=args.label_smoothing, class_weight=args.class_weight,
                          stage2_epochs=args.stage2_epochs, seed=args.seed, workers=args.workers,
                          overwrite=args.overwrite, progress=progress, engine=args.engine, threads=args.threads)
    m = result.card.metrics
    if args.json:
        if not distributed.is_main():
            return 0
        return print_json({"run": str(result.run), "strategy": result.plan.strategy, "reason": result.plan.reason,
                           "metrics": dict(m), "seconds": round(result.seconds, 2),
                           "extracted_per_rank": result.extracted_per_rank})
    best = f"stage {m['best_stage']} epoch {m['best_epoch']}" if result.plan.stages == 2 else f"epoch {m['best_epoch']}"
    out.print(f"{result.run}: val accuracy {float(m['val_accuracy']):.4f} on {m['val_size']} images "
              f"(kept {best} of {m['epochs']}, by {m['monitor']}), strategy {result.plan.strategy}, "
              f"{result.seconds:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.onnx:
        from zoo.api import load
        from zoo.transfer.exports import export_onnx

        model = load(args.run_dir)
        with ProgressDisplay() as progress:
            path = export_onnx(model, args.onnx, overwrite=args.overwrite, progress=progress)
        console().print(f"{path}: logits graph ({path.stat().st_size / 1e6:.1f} MB), preprocessing and class names "
                        f"in its metadata; stock onnxruntime runs it: "
                        f"onnxruntime.InferenceSession({str(path)!r}).run(None, {{'images': batch}})")
        return 0
    from zoo.transfer.exports import export_merged

    with ProgressDisplay() as progress:
        path = export_merged(args.run_dir, args.merged, overwrite=args.overwrite, progress=progress)
    console().print(f"{path}: config.json + model.safetensors; zoo.load({str(path)!r}) and stock timm "
                    f"(timm.create_model('local-dir:{path}', pretrained=True)) load it, and once published "
                    f"(zoo publish {path} --repo ORG/NAME) so do zoo.load('hf://ORG/NAME') and "
                    f"timm.create_model('hf-hub:ORG/NAME', pretrained=True)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from zoo.transfer.publish import publish

    done = publish(args.run_dir, args.repo, endpoint=args.endpoint, private=args.private, token=args.token,
                   branch=args.branch, create_pr=args.create_pr, tag=args.tag)
    what = (f"commit {done.commit[:12]}: {', '.join(done.changed)}" if done.changed
            else f"unchanged since commit {done.commit[:12]}: no new commit")
    where = f"{done.endpoint}/{done.repo_id}" + ("" if done.revision == "main" else f" ({done.revision})")
    console().print(f"published {args.run_dir} to {where} ({what}); load it with zoo.load('{done.uri}')")
    if done.pr_url:
        console().print(f"pull request for review: {done.pr_url}")
    if done.tag:
        console().print(f"tagged {done.tag}: zoo.load('hf://{done.repo_id}@{done.tag}')")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("finetune", help="train a new head (and optionally top blocks) on an ImageFolder; writes a run directory")
    p.add_argument("name", help="base model name (efficientnet_lite0, ...)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="an ImageFolder (one sub-folder per class), or DIR/train + DIR/validation")
    p.add_argument("--out", required=True, metavar="RUN", help="the run directory to write")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-split", type=fraction, default=0.2, help="fraction of each class held out (default 0.2)")
    val.add_argument("--val", metavar="DIR", help="a validation ImageFolder with the same classes")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto picks by dataset size and measured similarity to ImageNet (printed); two-stage: the "
                        "head on cached features, then the last --unfreeze blocks at a lower rate")
    p.add_argument("--epochs", type=positive_int, default=10, metavar="N",
                   help="passes over the training images (two-stage: of stage 1)")
    p.add_argument("--stage2-epochs", type=positive_int, default=None, metavar="N",
                   help="two-stage: epochs of stage 2 (default: --epochs)")
    p.add_argument("--freeze", type=non_negative_int, default=None, metavar="N",
                   help="keep the first N parameter-owning modules frozen, train the rest (the partial strategy)")
    p.add_argument("--unfreeze", type=positive_int, default=None, metavar="K",
                   help="partial and two-stage: open the last K blocks (default: the top quarter)")
    p.add_argument("--monitor", choices=MONITORS, default="val_loss",
                   help="the validation figure that picks the epoch kept (its weights are restored at the end)")
    p.add_argument("--patience", type=positive_int, default=None, metavar="N",
                   help="stop after N epochs without improvement of --monitor (default: run every epoch)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="learning-rate schedule, stepped every batch: constant, or cosine decay to 0")
    p.add_argument("--warmup", type=non_negative_float, default=0.0, metavar="EPOCHS",
                   help="linear learning-rate warm-up over this many epochs (fractions allowed)")
    p.add_argument("--label-smoothing", type=fraction_or_zero, default=0.0, metavar="F",
                   help="label smoothing of the training loss (the validation loss stays plain cross-entropy)")
    p.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                   help="balanced: weight the training loss by n / (classes x class count), for imbalanced folders")
    p.add_argument("--lr", type=positive_float, default=None, help="the new head's learning rate (default 1e-2 "
                   "for a head on features, 1e-3 beside unfrozen layers)")
    p.add_argument("--backbone-lr", type=positive_float, default=None, help="learning rate of unfrozen reused layers (default lr/10)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per training step")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crops and flips (default: off for the head, so features are extracted once; on otherwise)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the head's initialisation and the shuffles")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="image-decoding processes (default: one per core, up to 4; 0: in this process)")
    add_engine_arguments(p, "the feature pass (training runs on torch)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--json", action="store_true", help="print the result (run, strategy, metrics) as JSON")
    p.set_defaults(run=cmd_finetune)

    p = sub.add_parser("export", help="a run as a full model folder stock timm loads (--merged), or a run or model "
                       "as one ONNX graph stock onnxruntime runs (--onnx)")
    p.add_argument("run_dir", metavar="RUN|NAME", help="a run directory (zoo finetune --out), hf://ORG/NAME of a "
                   "published run, or (--onnx) a model name")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--merged", metavar="OUT", help="the folder to write: config.json + model.safetensors")
    what.add_argument("--onnx", metavar="OUT.onnx", help="the ONNX file to write: the base and head as one graph, "
                      "logits out, preprocessing and class names in its metadata")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("publish", help="upload a run (or a merged export) to a Hugging Face-compatible hub: one commit of the files that "
                       "changed, none if nothing did")
    p.add_argument("run_dir", metavar="RUN", help="a run directory (zoo finetune --out) or a merged export (zoo export --merged)")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the hub repo to create or commit to")
    p.add_argument("--endpoint", default=None, help="hub URL (default $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", default=None, help="access token (default: HF_TOKEN / huggingface_hub's stored token)")
    p.add_argument("--branch", default="main", metavar="B",
                   help="commit to branch B (created from main if missing) to try a head without touching main")
    p.add_argument("--create-pr", action="store_true",
                   help="open a pull request onto the branch instead of committing to it, for review")
    p.add_argument("--tag", metavar="T", help="tag the published commit (a release); refused if T names another commit")
    p.set_defaults(run=cmd_publish)
