"""``zoo mirror export|import|ls`` and ``zoo hf-cache link``: weights and runs for machines without internet."""

from __future__ import annotations

import argparse

from zoo.cli.console import ProgressDisplay, console, print_json


def cmd_mirror(args: argparse.Namespace) -> int:
    from zoo.transfer import mirror  # bundles (zoo.weights.bundles) with the runs they carry
    from zoo.transfer.runs import is_run

    out = console()
    if args.action == "export":
        runs = [n for n in args.names if is_run(n)]
        names = [n for n in args.names if n not in runs]
        with ProgressDisplay() as progress:
            result = mirror.export_bundle(args.out, names, runs=runs, pattern=args.pattern, all_cached=args.all_cached,
                                          tar=args.tar, link=args.link, source=args.source, progress=progress)
        runs_text = f" and {len(runs)} runs ({', '.join(r['name'] for r in result.runs)})" if runs else ""
        out.print(f"exported {len(result.models)} models{runs_text} to {result.path}")
        out.print(f"manifest sha256 {result.manifest_sha256} (check it on the receiving side)")
    elif args.action == "import":
        with ProgressDisplay() as progress:
            models, runs = mirror.import_bundle(args.path, runs_to=args.runs_to, hf_cache=args.hf_cache,
                                                progress=progress)
        out.print(f"imported {len(models)} models, every file verified: {', '.join(m['name'] for m in models)}")
        for run in runs:
            out.print(f"run {run}: zoo.load({str(run)!r})")
    elif args.action == "ls":
        from zoo.weights.bundle_manifest import read_manifest

        manifest = read_manifest(args.path)
        if args.json:
            return print_json(manifest)
        from rich.table import Table

        table = Table("name", "size MB", "sha256", "hub repo", "source")
        for m in manifest["models"]:
            table.add_row(m["name"], f"{m['size'] / 1e6:.1f}", m["sha256"][:12], m.get("hub_repo") or "", m.get("source") or "")
        for r in manifest.get("runs", []):
            size = sum(f["size"] for f in r["files"].values())
            table.add_row(f"run {r['name']}", f"{size / 1e6:.1f}", r["files"].get("head.safetensors", {}).get("sha256", "")[:12],
                          "", f"on {r['base']}")
        out.print(table)
    return 0


def cmd_hf_cache(args: argparse.Namespace) -> int:
    from zoo.weights.hf_cache import link_hf_cache

    for path in link_hf_cache(args.names):
        console().print(str(path))
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("mirror", help="verified offline bundles: export, import, ls")
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = msub.add_parser("export", help="write cached models, runs, their cards and a manifest to a directory or .tar")
    e.add_argument("out", metavar="OUT", help="the bundle to write: a new directory, or a .tar file with --tar")
    e.add_argument("names", nargs="*", metavar="NAME",
                   help="models or run directories to export (before or after the options); a run brings its base")
    e.set_defaults(rest="names")
    e.add_argument("--from", dest="source", metavar="STORE",
                   help="export from a hub store instead of the local cache: s3://BUCKET/PREFIX (what "
                        "'zoo serve --storage' uses; AWS_* environment) or a directory (another ZOO_HOME "
                        "or a zoo serve root); every blob is verified as it is read")
    e.add_argument("--all-cached", action="store_true", help="every model the cache (or --from) holds")
    e.add_argument("--pattern", help="the cached models 'zoo list PATTERN' lists: fnmatch over names, aliases and "
                                     "architectures ('efficientnet*')")
    e.add_argument("--tar", action="store_true", help="write one .tar file instead of a directory")
    e.add_argument("--link", action="store_true",
                   help="hard-link blobs instead of copying where possible: the bundle then shares the cache's "
                        "files, and a change to the bundle is a change to the cache")
    i = msub.add_parser("import", help="verify every file of a bundle, then add it to the cache (all or nothing)")
    i.add_argument("path", metavar="BUNDLE", help="a bundle directory or .tar (zoo mirror export)")
    i.add_argument("--runs-to", default=".", metavar="DIR",
                   help="where the bundle's runs are written, one directory each (default: the current directory)")
    i.add_argument("--hf-cache", action="store_true",
                   help="also write the Hugging Face cache layout, for HF_HUB_OFFLINE=1 stock clients")
    ls = msub.add_parser("ls", help="which models and runs a bundle holds, with sizes")
    ls.add_argument("path", metavar="BUNDLE", help="a bundle directory or .tar")
    ls.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(run=cmd_mirror)

    p = sub.add_parser("hf-cache", help="expose cached models in the Hugging Face cache layout")
    hsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    link = hsub.add_parser("link", help="link cached models into $HF_HUB_CACHE (for HF_HUB_OFFLINE=1)")
    link.add_argument("names", nargs="+", metavar="NAME", help="cached models to link")
    p.set_defaults(run=cmd_hf_cache)
