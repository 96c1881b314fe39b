"""Validators for typed TOML tables: each takes a raw value and returns the typed one or raises.

Small and stdlib-only, so that a card (or any zoo document read from TOML) is checked field by
field, with errors that name the field (``sources[1].sha256``): :func:`check_table` applies a spec
``{key: (validator, required)}`` and rejects unknown keys, so a typo never drops a field silently.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

from zoo.errors import FieldError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def string(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def opt_string(v: Any) -> str | None:
    if v == "":
        return None
    return string(v)


INT_MAX = 2**63 - 1  # TOML's limit, which tomllib does not enforce


def integer(minimum: int = 0) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= INT_MAX:
            raise ValueError(f"expected an integer in [{minimum}, 2**63-1], got {v!r}")
        return v

    return check


def number(lo: float, hi: float) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        ok = isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and abs(v) <= INT_MAX)
        if not ok or not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}], got {v!r}")
        return float(v)

    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def sha256_hex(v: Any) -> str | None:
    if v in ("", None):
        return None
    if not isinstance(v, str) or not SHA256_RE.match(v):
        raise ValueError(f"expected 64 lowercase hex digits (a sha256), got {v!r}")
    return v


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return v

    return check


def sub_table(cls: type, spec: dict[str, tuple[Callable[[Any], Any], bool]]) -> Callable[[Any], Any]:
    """Validate an inline table into the dataclass ``cls``; errors name the inner key."""

    def check(v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise ValueError(f"expected a table, got {v!r}")
        return cls(**check_table(v, spec))

    return check


def list_of(check_one: Callable[[Any], Any], min_len: int = 0) -> Callable[[Any], tuple]:
    def check(v: Any) -> tuple:
        if not isinstance(v, list) or len(v) < min_len:
            raise ValueError(f"expected a list of at least {min_len} entries, got {v!r}")
        out = []
        for i, item in enumerate(v):
            try:
                out.append(check_one(item))
            except FieldError as exc:
                raise FieldError(f"[{i}].{exc.field}", exc.problem) from None
            except ValueError as exc:
                raise FieldError(f"[{i}]", str(exc)) from None
        return tuple(out)

    return check


def check_table(data: Mapping[str, Any], spec: dict[str, tuple[Callable[[Any], Any], bool]]) -> dict[str, Any]:
    """Apply ``spec`` (key -> (validator, required)); unknown keys are errors."""
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise FieldError(unknown[0], f"unknown field; known fields are: {', '.join(spec)}")
    out: dict[str, Any] = {}
    for key, (check, required) in spec.items():
        if key not in data:
            if required:
                raise FieldError(key, "missing required field")
            continue
        try:
            out[key] = check(data[key])
        except FieldError as exc:
            inner = exc.field if exc.field.startswith("[") else f".{exc.field}"
            raise FieldError(key + inner, exc.problem) from None
        except ValueError as exc:
            raise FieldError(key, str(exc)) from None
    return out


