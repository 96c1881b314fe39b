"""The exceptions zoo raises for expected failures.

Every message says what failed, with the offending value, and what to do next. The CLI maps
``UsageError`` (and its subclasses) to exit code 2 and any other ``ZooError`` to exit code 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every expected zoo failure."""


class UsageError(ZooError):
    """The caller asked for something that cannot exist (bad name, bad option): exit code 2."""


class UnknownModelError(UsageError, LookupError):
    """No card, alias or architecture matches a name; carries close matches for 'did you mean'."""

    def __init__(self, name: str, suggestions: list[str] | tuple[str, ...] = ()):
        self.name = name
        self.suggestions = tuple(suggestions)
        msg = f"unknown model {name!r}"
        if self.suggestions:
            msg += f"; did you mean {', '.join(self.suggestions)}?"
        else:
            msg += "; run 'zoo list' to see the known models"
        super().__init__(msg)


class AmbiguousModelError(UsageError, LookupError):
    """A bare architecture name matches several cards and none is marked as its default."""

    def __init__(self, name: str, candidates: list[str]):
        self.name = name
        self.candidates = tuple(candidates)
        super().__init__(
            f"{name!r} names architecture {name!r}, which has several cards and no default; "
            f"pick one of: {', '.join(candidates)}"
        )


class CardError(ZooError, ValueError):
    """A card file (or dict) is malformed; names the file and the field."""

    def __init__(self, where: str, field: str | None, problem: str):
        self.where = where
        self.field = field
        self.problem = problem
        at = f"{where}: field {field!r}" if field else where
        super().__init__(f"invalid card {at}: {problem}")


class UriError(UsageError, ValueError):
    """A source URI does not follow the grammar (hf://, https://, file://, pkg://, a path)."""
