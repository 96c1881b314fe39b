"""A repo's README metadata, as the Hub reads it: the YAML block at the top of ``README.md``.

``model_info``/``dataset_info`` answer ``cardData`` (that block), ``tags``, ``library_name`` and
``pipeline_tag`` from it, so ``ModelCard.load``, ``push_to_hub`` and ``list_models(filter=...)``
see what the card says. ``POST /api/validate-yaml`` checks a card before a client pushes it
(``RepoCard.validate`` sends no token): the block must parse to a mapping and the fields the Hub
types must have their types. Parsed blocks are kept per README sha256: a blob never changes.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

log = logging.getLogger(__name__)

#: the largest README whose metadata is read (a bigger one is served, its metadata ignored)
README_MAX = 1 << 20
#: fields the Hub types, and the types it takes
TYPED = {"license": (str, list), "tags": (list,), "library_name": (str,), "pipeline_tag": (str,),
         "datasets": (str, list), "language": (str, list), "base_model": (str, list), "model-index": (list,),
         "metrics": (str, list), "thumbnail": (str,), "pretty_name": (str,)}


#: the most YAML aliases a metadata block may use: each one may double what the JSON answer holds
#: (a "billion laughs" block is a few hundred bytes of YAML and gigabytes of JSON)
MAX_ALIASES = 32


def split_card(text: str) -> tuple[str | None, str]:
    """A README's YAML block (between a leading ``---`` line and the next) and the text after it;
    (None, the whole text) when it opens no block or never closes the one it opens."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() == "---":
                return "".join(lines[1:i]), "".join(lines[i + 1:])
    return None, "".join(lines)


def front_matter(text: str):
    """The YAML between a leading ``---`` line and the next one, parsed (safe loader) into plain
    JSON values (dates as ISO text, keys as text); None if the README has no such block. A block
    that does not parse, or that leans on aliases, raises ``ValueError`` saying why."""
    import yaml

    block, _ = split_card(text)
    if block is None:
        first = text.lstrip("\ufeff").splitlines()[:1]
        if first and first[0].strip() == "---":  # opened, never closed
            raise ValueError("the metadata block opened by '---' is never closed by another '---' line")
        return None
    try:
        aliases, depth = 0, 0
        for event in yaml.parse(block, Loader=yaml.SafeLoader):  # events only: no recursion, no values yet
            aliases += isinstance(event, yaml.AliasEvent)
            depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
            if depth > MAX_DEPTH:
                raise ValueError(f"the metadata block nests deeper than {MAX_DEPTH} levels")
        if aliases > MAX_ALIASES:
            raise ValueError(f"the metadata block uses {aliases} YAML aliases; at most {MAX_ALIASES}")
        return _plain(yaml.safe_load(block), [MAX_NODES, MAX_TEXT]) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"the metadata block is not valid YAML: {exc}") from None
    except RecursionError:
        raise ValueError(f"the metadata block nests deeper than {MAX_DEPTH} levels") from None


#: the most values, and characters of text, a metadata block may expand to (aliases expanded),
#: and how deep its lists and mappings may nest
MAX_NODES, MAX_TEXT, MAX_DEPTH = 100_000, 4_000_000, 64


def _plain(value, budget: list[int], depth: int = 0):
    """``value`` as JSON takes it: dates and times as ISO text, mapping keys as text; its expanded
    size is counted against ``budget`` (values, characters), so shared aliases cannot blow it up."""
    budget[0] -= 1
    if isinstance(value, str):
        budget[1] -= len(value)
    if depth > MAX_DEPTH or budget[0] < 0 or budget[1] < 0:
        raise ValueError(f"the metadata block expands to too much (aliases, or nesting over {MAX_DEPTH} levels)")
    if isinstance(value, dict):
        return {_key(k): _plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):  # !!omap and !!pairs are tuples, !!set a set
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_plain(v, budget, depth + 1) for v in items]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2 ** 63:
        return None  # JSON readers lose it anyway, and Python will not print one over 4300 digits
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, bytes):  # !!binary
        return None
    return value


def _key(k) -> str:
    if isinstance(k, (date, datetime)):
        return k.isoformat()
    if isinstance(k, (list, tuple, set, frozenset, dict)) or isinstance(k, int) and abs(k) > 2 ** 63:
        return repr(type(k).__name__)
    return str(k)


def problems(data) -> list[str]:
    """What the Hub would refuse in a parsed metadata block."""
    if not isinstance(data, dict):
        return [f"the metadata must be a mapping of fields, not a {type(data).__name__}"]
    out = []
    for key, types in TYPED.items():
        if key in data and data[key] is not None and not isinstance(data[key], types):
            out.append(f"{key} must be {' or '.join(t.__name__ for t in types)}, not {type(data[key]).__name__}")
    if isinstance(data.get("tags"), list) and not all(isinstance(t, str) for t in data["tags"]):
        out.append("tags must be a list of strings")
    return out


#: README sha256 -> its parsed metadata (a blob never changes; the oldest half goes when full)
_PARSED: dict[str, dict] = {}
_PARSED_MAX = 4096


def _parse(sha256: str, data: bytes) -> dict:
    try:
        block = front_matter(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        log.info("README %s: metadata ignored: %s", sha256[:12], exc)
        block = {}
    block = block if isinstance(block, dict) and not problems(block) else {}
    if len(_PARSED) >= _PARSED_MAX:
        for key in list(_PARSED)[: _PARSED_MAX // 2]:
            del _PARSED[key]
    _PARSED[sha256] = block
    return block


def card_data(served, repo) -> dict:
    """The README's metadata block of ``repo`` ({} if it has none, or one the Hub would refuse)."""
    entry = repo.files.get("README.md")
    if entry is None or entry.size > README_MAX:
        return {}
    if entry.sha256 in _PARSED:
        return _PARSED[entry.sha256]
    data = served.blobs.read(entry.sha256)
    return _parse(entry.sha256, data) if data is not None else {}


def info_fields(card: dict, kind: str) -> dict:
    """``cardData`` and the fields the Hub derives from it: ``tags`` (the card's, then its library,
    pipeline and licence as the Hub lists them), ``library_name`` and ``pipeline_tag``."""
    tags = [t for t in card.get("tags") or [] if isinstance(t, str)]
    out: dict = {"cardData": card}
    if kind == "model":
        for key in ("library_name", "pipeline_tag"):
            if isinstance(card.get(key), str):
                out[key] = card[key]
                tags.append(card[key])
    licences = card.get("license")
    for licence in [licences] if isinstance(licences, str) else licences or []:
        if isinstance(licence, str):
            tags.append(f"license:{licence}")
    out["tags"] = list(dict.fromkeys(tags))
    return out
