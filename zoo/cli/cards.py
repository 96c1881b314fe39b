"""``zoo list`` and ``zoo info``: the card table and one card in full. They read cards only."""

from __future__ import annotations

import argparse
import re
from typing import Any, Callable

from zoo.cards.card import Card
from zoo.cards.registry import SORT_KEYS, get_registry, list_models
from zoo.cli.console import console as make_console, print_json


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _size(card: Card) -> str:
    """``Card.size_mb``, with '~' marking the computed estimate until the exact size is pinned."""
    return "" if card.size_mb is None else ("" if card.size_bytes else "~") + f"{card.size_mb:.1f}"


#: ``--columns`` keys -> (header, cell text, right-aligned)
COLUMNS: dict[str, tuple[str, Callable[[Card], str], bool]] = {
    "name": ("name", lambda c: c.name, False),
    "aliases": ("aliases", lambda c: ", ".join(c.aliases), False),
    "arch": ("architecture", lambda c: c.architecture, False),
    "top1": ("top1", lambda c: _num(c.top1, ".2f"), True),
    "top5": ("top5", lambda c: _num(c.top5, ".2f"), True),
    "params": ("params M", lambda c: _num(c.params and c.params / 1e6, ".1f"), True),
    "size": ("size MB", _size, True),
    "depth": ("depth", lambda c: _num(c.depth, "d"), True),
    "res": ("res", lambda c: str(c.resolution), True),
    "interp": ("interp", lambda c: c.interpolation, False),
    "crop": ("crop", lambda c: _num(c.crop_pct, ".3g"), True),
    "license": ("license", lambda c: c.license, False),
    "hub_repo": ("hub repo", lambda c: c.hub_repo, False),
    "keras": ("keras top1", lambda c: _num(c.keras.top1 if c.keras else None, ".1f"), True),
}
DEFAULT_COLUMNS = "name,aliases,top1,top5,params,size,depth,res"


def parse_count(text: str) -> int:
    """'25M', '1.5e7', '800k', '25000000' -> an int (for ``--max-params``)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgb]?)\s*", text, re.IGNORECASE)
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}[m.group(2).lower()] if m else None
    if value is None or value > 1e18:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (try 25M, 800k or 25000000)")
    return round(value)


def parse_columns(text: str) -> list[str]:
    cols = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown or not cols:
        raise argparse.ArgumentTypeError(f"unknown column {', '.join(unknown) or text!r}; choose from {', '.join(COLUMNS)}")
    return cols


def cmd_list(args: argparse.Namespace) -> int:
    cards = list_models(args.pattern, sort=args.sort, descending=args.descending,
                        min_top1=args.min_top1, max_params=args.max_params, license=args.license)
    columns, keys = COLUMNS, list(args.columns)
    measured = {}
    if args.measured:
        from zoo.compare.measurements import latest_measurements  # JSON files only: no torch

        measured = latest_measurements()
        columns = {**COLUMNS, **_measured_columns(measured)}
        keys += [k for k in _measured_columns(measured) if k not in keys]
    if args.json:
        from zoo.weights.cache import Cache  # the cache's files only: no torch

        cache = Cache()
        return print_json([{**c.to_record(), "trust": cache.trust(c),
                            **({"measured": measured.get(c.name)} if args.measured else {})} for c in cards])
    from rich.table import Table
    from rich.text import Text

    # padding=0 with a space each side of the text looks the same as rich's default padding and halves
    # the render time (no Padding renderable per cell); Text cells skip markup parsing (bench/bench_list.py)
    # (rich's right-justify strips that trailing space, so numbers are right-aligned here with rjust)
    cells = [[columns[key][1](card) for key in keys] for card in cards]
    table = Table(caption=_list_caption(cards) + _measured_caption(measured, args.measured), caption_justify="left",
                  padding=0)
    for i, key in enumerate(keys):
        header, _, right = columns[key]
        if right:
            width = max([len(header), *(len(row[i]) for row in cells)])
            header = header.rjust(width)
            for row in cells:
                row[i] = row[i].rjust(width)
        # numbers never wrap; on a narrow terminal the text columns fold instead
        table.add_column(f" {header} ", no_wrap=right, overflow="fold")
    for row in cells:
        table.add_row(*(Text(f" {cell} ") for cell in row))
    console = make_console()
    if not cards:
        console.print("no model matches these filters; 'zoo list' shows all")
        return 0
    console.print(table)
    return 0


def _measured_columns(measured: dict) -> dict[str, tuple[str, Callable[[Card], str], bool]]:
    """``--measured``: the latest local figures of ``zoo compare`` beside the published ones."""

    def field(key: str, fmt: str) -> Callable[[Card], str]:
        return lambda c: _num(measured.get(c.name, {}).get(key), fmt)

    return {"gmacs": ("GMACs", field("gmacs", ".2f"), True), "lat": ("lat ms", field("latency_ms", ".1f"), True),
            "ips": ("img/s", field("throughput", ".1f"), True), "rss": ("peak MB", field("peak_rss_mb", ".0f"), True)}


def _measured_caption(measured: dict, asked: bool) -> str:
    if not asked:
        return ""
    if not measured:
        return " Measured: nothing yet on this machine; 'zoo compare NAME...' measures."
    latest = max(measured.values(), key=lambda m: m.get("measured_at", ""))
    machine = latest.get("machine") or {}
    return (f" Measured here by 'zoo compare' (latest {latest.get('measured_at', '?')}, {machine.get('cpu', '?')}, "
            f"{machine.get('threads', '?')} threads, torch {machine.get('torch', '?')}): latency at batch 1, "
            "throughput at the largest batch, peak RSS of a fresh process; blank: not measured.")


def _list_caption(cards: list[Card]) -> str:
    return (
        f"{len(cards)} models. top-1/top-5: published ImageNet-1k figures (see 'zoo info NAME' for the source); "
        "params and depth: computed from the timm architecture; size: '~' is the computed float32 size until "
        "the file is downloaded and pinned."
    )


def cmd_info(args: argparse.Namespace) -> int:
    from zoo.weights.cache import Cache  # the cache's files only: no torch

    registry = get_registry()
    card = registry.resolve(args.name)
    trust = Cache().trust(card)
    if args.json:
        return print_json({**card.to_record(), "trust": trust})
    from rich.table import Table

    console = make_console()
    if card.name != args.name:
        console.print(f"{args.name!r} resolves to {card.name}", style="dim")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in _info_rows(card):
        table.add_row(key, value)
    table.add_row("trust", _trust_text(trust))
    console.print(table)
    others = registry.other_tags(card)
    if others:
        console.print(f"\nother tags of {card.architecture}:")
        for other in others:
            top1 = f"top-1 {other.top1:.2f}" if other.top1 is not None else "top-1 unknown"
            mark = " (default)" if other.default else ""
            console.print(f"  {other.name}{mark}  {top1}")
    return 0


def _trust_text(trust: dict) -> str:
    """``zoo info``'s trust line: the state, the sha256, where the pin came from and when, cached or not."""
    parts = [trust["state"]]
    if trust["sha256"]:
        parts.append(f"sha256 {trust['sha256'][:16]}...")
    if trust["source"]:
        parts.append(f"from {trust['source']}")
    if trust["since"]:
        parts.append(f"since {trust['since']}")
    parts.append("cached" if trust["cached"] else "not downloaded")
    return ", ".join(parts)


def _info_rows(card: Card) -> list[tuple[str, str]]:
    def fmt(v: Any) -> str:
        if v is None:
            return "unknown"
        if isinstance(v, (tuple, list)):
            return ", ".join(str(x) for x in v) if v else "none"
        return str(v)

    rows = [
        ("name", card.name + (" (default tag)" if card.default else "")),
        ("aliases", fmt(card.aliases)),
        ("architecture", card.architecture),
        ("tag", card.tag),
        ("hub repo", card.hub_repo),
        ("license", card.license),
        ("paper", fmt(card.paper)),
        ("top-1 / top-5", f"{fmt(card.top1)} / {fmt(card.top5)} at {fmt(card.metrics_img_size)} px"),
        ("metrics source", fmt(card.metrics_source)),
    ]
    rows += [(f"  at {m.img_size} px", f"{m.top1} / {fmt(m.top5)} (crop {fmt(m.crop_pct)})") for m in card.extra_metrics]
    rows += [
        ("params", f"{card.params:,}" if card.params else "unknown"),
        ("depth", fmt(card.depth)),
        ("input size", "x".join(map(str, card.input_size))
         + (f" (tested at {'x'.join(map(str, card.test_input_size))})" if card.test_input_size else "")),
        ("preprocessing", f"{card.interpolation}, crop {card.crop_pct} ({card.crop_mode}), mean {fmt(card.mean)}, std {fmt(card.std)}"),
        ("classes", str(card.num_classes)),
        ("weights sha256", card.sha256 or "not pinned yet (pinned on first verified download)"),
        ("weights size", f"{card.size_bytes:,} bytes" if card.size_bytes else f"~{fmt(card.weights_mb)} MB ({fmt(card.weights_mb_source)})"),
    ]
    for i, src in enumerate(card.sources, 1):
        extra = f" (converter {src.converter}, raw sha256 {src.sha256 or 'unpublished'})" if src.converter else ""
        rows.append((f"source {i}", src.uri + extra))
    if card.keras:
        k = card.keras
        rows.append(("keras figures", f"{k.name}: top-1 {fmt(k.top1)}, top-5 {fmt(k.top5)}, params {fmt(k.params)}, "
                                      f"depth {fmt(k.depth)}, size {fmt(k.size_mb)} MB ({k.source})"))
    rows += [(f"provenance: {k}", v) for k, v in card.provenance.items()]
    if card.notes:
        rows.append(("notes", card.notes))
    if card.path:
        rows.append(("card file", card.path))
    return rows




def cmd_cards_check(args: argparse.Namespace) -> int:
    from zoo.cards.registry import check_cards

    good, problems = check_cards(args.directory)
    out = make_console()
    for path, why in problems:
        out.print(f"{path}: {why}", style="red")
    out.print(f"{good} cards ok, {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    return 1 if problems else 0


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="table of pretrained models, sorted and filtered")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern over names, aliases and architectures ('efficientnet*')")
    p.add_argument("--sort", choices=list(SORT_KEYS), default="top1", help="sort key (default top1)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="descending", action="store_false", default=None, help="ascending order")
    order.add_argument("--desc", dest="descending", action="store_true", help="descending order")
    p.add_argument("--min-top1", type=float, metavar="X", help="only models with top-1 >= X (%%)")
    p.add_argument("--max-params", type=parse_count, metavar="N", help="only models with at most N parameters (25M, 800k)")
    p.add_argument("--license", metavar="L", help="only models under license L (apache-2.0, bsd-3-clause, ...)")
    p.add_argument("--columns", type=parse_columns, default=parse_columns(DEFAULT_COLUMNS),
                   metavar="COLS", help=f"comma-separated, from: {', '.join(COLUMNS)} (default {DEFAULT_COLUMNS})")
    p.add_argument("--json", action="store_true", help="JSON records with every card field instead of a table")
    p.add_argument("--measured", action="store_true",
                   help="add this machine's latest measurements (zoo compare): GMACs, latency, img/s, peak memory")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("info", help="one model card in full, with the other tags of its architecture")
    p.add_argument("name", help="card name, alias (ResNet50) or architecture (resnet50)")
    p.add_argument("--json", action="store_true", help="the card as a JSON record")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("cards", help="check card files (for CI): ones that do not parse, validate, or take another card's name")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="every problem of the cards zoo reads now, or of DIR's card files; exit 1 if any")
    check.add_argument("directory", nargs="?", metavar="DIR",
                       help="a directory of card files, checked as if searched after every card zoo reads now "
                            "(default: the cards zoo reads now)")
    p.set_defaults(run=cmd_cards_check)
