"""``zoo finetune`` (a new head on an ImageFolder), ``zoo export`` (a full timm model folder) and
``zoo publish`` (a run to a hub repo)."""

from __future__ import annotations

import argparse

from zoo.cli.console import (ProgressDisplay, console, fraction, non_negative_int, positive_float, positive_int,
                             print_json)
from zoo.util import distributed


def cmd_finetune(args: argparse.Namespace) -> int:
    from zoo.transfer.finetune import finetune

    out = console()
    with ProgressDisplay() as progress:  # the epochs are messages: printed above the bars, in order
        result = finetune(args.name, args.data, args.out, val_split=args.val_split, val=args.val,
                          strategy=args.strategy, epochs=args.epochs, freeze=args.freeze, lr=args.lr,
                          backbone_lr=args.backbone_lr, batch_size=args.batch_size, augment=args.augment,
                          seed=args.seed, workers=args.workers, overwrite=args.overwrite, progress=progress)
    m = result.card.metrics
    if args.json:
        if not distributed.is_main():
            return 0
        return print_json({"run": str(result.run), "strategy": result.plan.strategy, "reason": result.plan.reason,
                           "metrics": dict(m), "seconds": round(result.seconds, 2),
                           "extracted_per_rank": result.extracted_per_rank})
    out.print(f"{result.run}: val accuracy {float(m['val_accuracy']):.4f} on {m['val_size']} images, "
              f"strategy {result.plan.strategy}, {result.seconds:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from zoo.transfer.runs import export_merged

    with ProgressDisplay() as progress:
        path = export_merged(args.run_dir, args.merged, overwrite=args.overwrite, progress=progress)
    console().print(f"{path}: config.json + model.safetensors; stock timm loads it "
                    f"(timm.create_model('hf-hub:ORG/NAME', pretrained=True) once uploaded)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from zoo.transfer.publish import publish

    done = publish(args.run_dir, args.repo, endpoint=args.endpoint, private=args.private, token=args.token)
    console().print(f"published {args.run_dir} to {done.endpoint}/{done.repo_id} (commit {done.commit[:12]}); "
                    f"load it with zoo.load('hf://{done.repo_id}')")
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
    p.add_argument("--strategy", choices=("auto", "head", "partial", "full"), default="auto",
                   help="auto picks by dataset size and measured similarity to ImageNet (printed)")
    p.add_argument("--epochs", type=positive_int, default=10, metavar="N", help="passes over the training images")
    p.add_argument("--freeze", type=non_negative_int, default=None, metavar="N",
                   help="keep the first N parameter-owning modules frozen, train the rest (the partial strategy)")
    p.add_argument("--lr", type=positive_float, default=None, help="the new head's learning rate (default 1e-2 "
                   "for a head on features, 1e-3 beside unfrozen layers)")
    p.add_argument("--backbone-lr", type=positive_float, default=None, help="learning rate of unfrozen reused layers (default lr/10)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="images per training step")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crops and flips (default: off for the head, so features are extracted once; on otherwise)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the head's initialisation and the shuffles")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="image-decoding processes (default: one per core, up to 4; 0: in this process)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--json", action="store_true", help="print the result (run, strategy, metrics) as JSON")
    p.set_defaults(run=cmd_finetune)

    p = sub.add_parser("export", help="a run as a full model folder stock timm loads (config.json + model.safetensors)")
    p.add_argument("run_dir", metavar="RUN", help="a run directory (zoo finetune --out)")
    p.add_argument("--merged", required=True, metavar="OUT", help="the folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("publish", help="upload a run (or a merged export) to a Hugging Face-compatible hub, one commit")
    p.add_argument("run_dir", metavar="RUN", help="a run directory (zoo finetune --out) or a merged export (zoo export --merged)")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the hub repo to create or commit to")
    p.add_argument("--endpoint", default=None, help="hub URL (default $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", default=None, help="access token (default: HF_TOKEN / huggingface_hub's stored token)")
    p.set_defaults(run=cmd_publish)
