"""Model cards: one TOML file per pretrained weight set, validated into a frozen dataclass.

A card is plain data (stdlib only, never torch): the registry, ``zoo list`` and ``zoo info`` read
cards without importing any ML library. Every number on a card says where it comes from:
``metrics_source`` for top-1/top-5, ``weights_mb_source`` for the published size, and
``provenance`` for the rest (``params``/``depth`` are computed from the built timm model).

Validation is strict: unknown keys are errors (a typo must not silently drop a field), and every
error names the file and the field (:class:`~zoo.errors.CardError`).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from zoo.cards.validate import (boolean, check_table, choice, integer, list_of, number, opt_string, sha256_hex,
                                string, sub_table)
from zoo.errors import CardError, FieldError, UriError

#: Card names follow timm's ``arch.tag`` scheme, lowercase.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*\.[a-z0-9][a-z0-9_]*$")
#: A Hugging Face repo id ``org/name``: a card's ``hub_repo``, and the only repo names the hub and
#: its store accept (so a repo id can never be a path or a key outside ``repos/``).
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")  # the Hub's 96
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
CROP_MODES = ("center", "squash", "border")


@dataclass(frozen=True)
class Source:
    """One place the weights can come from, tried in card order (the first that works wins).

    ``sha256`` and ``converter`` are set when the bytes at ``uri`` are not the card's safetensors
    file but a legacy checkpoint that a named converter turns into it: ``sha256`` then pins the raw
    file (None where no published hash exists yet).
    """

    uri: str
    sha256: str | None = None
    converter: str | None = None


@dataclass(frozen=True)
class Metric:
    """An extra published accuracy figure at another evaluation resolution."""

    img_size: int
    top1: float
    top5: float | None = None
    crop_pct: float | None = None
    source: str | None = None


@dataclass(frozen=True)
class KerasFigures:
    """The Keras Applications table row for the model this card stands in for.

    Kept beside our own figures because Keras' port differs (other weights, or a different layer
    count: Xception, NASNetLarge and EfficientNet are counted differently by Keras).
    """

    name: str
    source: str
    top1: float | None = None
    top5: float | None = None
    params: int | None = None
    depth: int | None = None
    size_mb: float | None = None


@dataclass(frozen=True)
class Card:
    """A pretrained weight set: what to build (timm architecture), where its bytes are, what it scores."""

    name: str
    architecture: str
    tag: str
    hub_repo: str
    sources: tuple[Source, ...]
    input_size: tuple[int, int, int]
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    license: str
    aliases: tuple[str, ...] = ()
    default: bool = False
    paper: str | None = None
    notes: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    params: int | None = None
    depth: int | None = None
    test_input_size: tuple[int, int, int] | None = None
    crop_mode: str = "center"
    top1: float | None = None
    top5: float | None = None
    metrics_source: str | None = None
    metrics_img_size: int | None = None
    metrics_crop_pct: float | None = None
    extra_metrics: tuple[Metric, ...] = ()
    weights_mb: float | None = None
    weights_mb_source: str | None = None
    keras: KerasFigures | None = None
    provenance: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: Where the card was read from (None for cards built in code); not part of its identity.
    path: str | None = field(default=None, compare=False)

    @property
    def resolution(self) -> int:
        """Input side in pixels (the ``res`` column)."""
        return self.input_size[-1]

    @property
    def size_mb(self) -> float | None:
        """Weights size in MB: the exact safetensors size when known, else the published figure."""
        if self.size_bytes:
            return self.size_bytes / 1e6
        return self.weights_mb

    def to_record(self) -> dict[str, Any]:
        """Every field as JSON-ready data (None stays None), plus the derived ``size_mb``."""
        record = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        record["size_mb"] = self.size_mb
        return record

    def to_toml_dict(self) -> dict[str, Any]:
        """The card as it is written to a file: None fields omitted, except an empty ``sha256``
        slot, kept visible so a maintainer sees it waits to be pinned."""
        out: dict[str, Any] = {}
        for key in CARD_SPEC:  # the spec's order reads best: identity, weights, preprocessing, metrics
            value = _plain(getattr(self, key), drop_none=True)
            if key == "sha256" and value is None:
                value = ""
            if value is None or (value in ([], {}) and key != "aliases"):
                continue
            out[key] = value
        return out


def _plain(value: Any, drop_none: bool = False) -> Any:
    """Dataclasses/tuples/mappings -> dicts/lists, for JSON and TOML."""
    if hasattr(value, "__dataclass_fields__"):
        items = ((f.name, getattr(value, f.name)) for f in fields(value))
        return {k: _plain(v, drop_none) for k, v in items if not (drop_none and v is None)}
    if isinstance(value, (tuple, list)):
        return [_plain(v, drop_none) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v, drop_none) for k, v in value.items()}
    return value


def _name(v: Any) -> str:
    v = string(v)
    if not NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a lowercase timm-style 'architecture.tag' name")
    return v


def _repo_id(v: Any) -> str:
    v = string(v)
    if not REPO_ID_RE.match(v):
        raise ValueError(f"{v!r} is not a Hugging Face repo id 'org/name'")
    return v


def _aliases(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(a, str) and a.strip() and a == a.strip() for a in v):
        raise ValueError(f"expected a list of non-empty strings, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"duplicate aliases in {v!r}")
    return tuple(v)


def _size3(v: Any) -> tuple[int, int, int]:
    if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
        raise ValueError(f"expected [channels, height, width] as positive integers, got {v!r}")
    return tuple(v)  # type: ignore[return-value]


def _rgb(v: Any) -> tuple[float, float, float]:
    ok = isinstance(v, list) and len(v) == 3
    ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    if not ok:
        raise ValueError(f"expected three numbers (one per RGB channel), got {v!r}")
    return tuple(float(x) for x in v)  # type: ignore[return-value]


def _source_uri(v: Any) -> str:
    from zoo.cards.uri import parse_uri  # lazy: urllib.parse, not needed when the registry reads its index

    v = string(v)
    try:
        parse_uri(v)
    except UriError as exc:
        raise ValueError(str(exc)) from None
    return v


def _provenance(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(t, str) and t for k, t in v.items()):
        raise ValueError(f"expected a table of field = \"where the number comes from\", got {v!r}")
    return dict(v)


_SOURCE_SPEC = {"uri": (_source_uri, True), "sha256": (sha256_hex, False), "converter": (opt_string, False)}
_METRIC_SPEC = {
    "img_size": (integer(1), True),
    "top1": (number(0, 100), True),
    "top5": (number(0, 100), False),
    "crop_pct": (number(0.01, 1.0), False),
    "source": (opt_string, False),
}
_KERAS_SPEC = {
    "name": (string, True),
    "source": (string, True),
    "top1": (number(0, 100), False),
    "top5": (number(0, 100), False),
    "params": (integer(1), False),
    "depth": (integer(1), False),
    "size_mb": (number(0, 1e6), False),
}
CARD_SPEC: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "name": (_name, True),
    "aliases": (_aliases, False),
    "architecture": (string, True),
    "tag": (string, True),
    "default": (boolean, False),
    "hub_repo": (_repo_id, True),
    "license": (string, True),
    "paper": (opt_string, False),
    "notes": (opt_string, False),
    "sources": (list_of(sub_table(Source, _SOURCE_SPEC), min_len=1), True),
    "sha256": (sha256_hex, False),
    "size_bytes": (integer(1), False),
    "params": (integer(1), False),
    "depth": (integer(1), False),
    "input_size": (_size3, True),
    "test_input_size": (_size3, False),
    "interpolation": (choice(INTERPOLATIONS), True),
    "crop_pct": (number(0.01, 1.0), True),
    "crop_mode": (choice(CROP_MODES), False),
    "mean": (_rgb, True),
    "std": (_rgb, True),
    "num_classes": (integer(0), True),
    "top1": (number(0, 100), False),
    "top5": (number(0, 100), False),
    "metrics_source": (opt_string, False),
    "metrics_img_size": (integer(1), False),
    "metrics_crop_pct": (number(0.01, 1.0), False),
    "extra_metrics": (list_of(sub_table(Metric, _METRIC_SPEC)), False),
    "weights_mb": (number(0, 1e7), False),
    "weights_mb_source": (opt_string, False),
    "keras": (sub_table(KerasFigures, _KERAS_SPEC), False),
    "provenance": (_provenance, False),
}


#: the file a repo holds when a card names no hf:// file of its own
DEFAULT_FILENAME = "model.safetensors"


def hub_filename(card: Card) -> str:
    """The file of the card's weights under ``hub_repo``: the path of its hf:// source (one that
    needs no converter), else ``model.safetensors``. What mirrors are asked for, and what the cache
    records for stock clients."""
    from zoo.cards.uri import parse_uri  # lazy: urllib.parse, not needed when the registry reads its index

    for src in card.sources:
        uri = parse_uri(src.uri)
        if uri.scheme == "hf" and uri.path and not src.converter:
            return uri.path
    return DEFAULT_FILENAME


def card_from_dict(data: Mapping[str, Any], where: str = "<card>") -> Card:
    """Validate ``data`` (a parsed card file) into a :class:`Card`; errors name ``where`` and the field."""
    if not isinstance(data, Mapping):
        raise CardError(where, None, f"expected a table of fields, got {type(data).__name__}")
    try:
        values = check_table(data, CARD_SPEC)
    except FieldError as exc:
        raise CardError(where, exc.field, exc.problem) from None
    expected = f"{values['architecture']}.{values['tag']}"
    if values["name"] != expected:
        raise CardError(where, "name", f"{values['name']!r} must be architecture.tag = {expected!r}")
    if ("top1" in values or "top5" in values) and values.get("metrics_source") is None:
        raise CardError(where, "metrics_source", "top1/top5 are set, so say which published table they come from")
    if "weights_mb" in values and values.get("weights_mb_source") is None:
        raise CardError(where, "weights_mb_source", "weights_mb is set, so say where the figure comes from")
    std = values["std"]
    if any(s <= 0 for s in std):
        raise CardError(where, "std", f"every std must be > 0, got {list(std)}")
    return Card(**values, path=where if where != "<card>" else None)


#: the Card field names: part of the registry index's key, so an index from another schema is ignored
CARD_FIELDS = frozenset(f.name for f in fields(Card))


def card_from_record(record: Mapping[str, Any]) -> Card:
    """Rebuild a card from :meth:`Card.to_record` output without validating it again.

    Only for records zoo itself wrote after validation (the registry's index cache), where
    re-validating would cost as much as the cache saves.
    """
    r = dict(record)
    r.pop("size_mb", None)
    if set(r) != CARD_FIELDS:
        raise ValueError("record does not have exactly the Card fields")
    r["sources"] = tuple(Source(**s) for s in r["sources"])
    r["extra_metrics"] = tuple(Metric(**m) for m in r["extra_metrics"])
    r["keras"] = KerasFigures(**r["keras"]) if r["keras"] else None
    for key in ("aliases", "input_size", "test_input_size", "mean", "std"):
        if r[key] is not None:
            r[key] = tuple(r[key])
    return Card(**r)


#: a card is a few KiB; a file far larger is not one (and would cost its parse on every index rebuild)
MAX_CARD_BYTES = 256 * 1024


def read_card(path: str | os.PathLike) -> Card:
    """Read and validate one card file; a malformed file raises :class:`CardError` naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CARD_BYTES + 1)
        if len(raw) > MAX_CARD_BYTES:
            raise CardError(path, None, f"over {MAX_CARD_BYTES // 1024} KiB: not a card")
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CardError(path, None, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise CardError(path, None, "nested too deeply to be a card") from None
    except UnicodeDecodeError:
        raise CardError(path, None, "not UTF-8 text (TOML files must be UTF-8)") from None
    except OSError as exc:
        raise CardError(path, None, f"cannot read: {exc.strerror or exc}") from None
    return card_from_dict(data, path)


def dump_card(card: Card, header: str | None = None) -> str:
    """The card as TOML text (tomlkit, imported only here: writing cards is rare, reading is hot)."""
    import tomlkit

    doc = tomlkit.document()
    if header:
        for line in header.strip().splitlines():
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    for key, value in card.to_toml_dict().items():
        doc[key] = value
    return tomlkit.dumps(doc)


def write_card(card: Card, path: str | os.PathLike, header: str | None = None) -> str:
    """Write ``card`` to ``path`` atomically (temp file in the same directory, then rename)."""
    path = os.fspath(path)
    text = dump_card(card, header)
    from zoo.util.tempfiles import temp_beside  # lazy: pathlib, socket and uuid are off the zoo list path

    tmp = temp_beside(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path
