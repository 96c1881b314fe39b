"""Every exception zoo raises on purpose, in one tree rooted at :class:`ZooError`.

Grouped the way callers catch them::

    ZooError
    +-- UsageError                 a bad name, option or value (exit code 2)
    |   +-- UnknownModelError      no card, alias or architecture matches ("did you mean ...")
    |   +-- AmbiguousModelError    an architecture with several cards and no default
    |   +-- UriError               a source URI that does not parse
    |   +-- InvalidRepoId          not "org/name"
    |   +-- MissingExtra           an optional dependency is not installed (names the extra)
    +-- CardError                  a malformed card file (names the file and the field)
    +-- FieldError                 a malformed field of any zoo document (re-raised with its file)
    +-- ImageError                 an image that cannot be decoded
    +-- WeightsError               a card's bytes could not be had
    |   +-- CacheError             the cache: a lock held too long, no space, a file not cached
    |   |   +-- CorruptBlobError   bytes that do not hash to what they must
    |   +-- SourceError            one source could not deliver
    |   |   +-- SourceNotFound     the source (a hub) does not have that repo, revision or file
    |   |   +-- OfflineError       a network source was needed while offline
    |   +-- ConversionError        a legacy checkpoint does not fit its architecture
    |   +-- PullError              no mirror or source delivered (lists what each said)
    +-- BundleError                an offline bundle is malformed or a file does not match its manifest
    +-- EngineError                a model could not be exported to ONNX, or its graph could not be used
    +-- RunError                   a run directory is incomplete, altered, or does not fit its base
    +-- PublishError               a hub refused a publish or a fetch, or cannot be reached
    +-- StorageError               an object store refused or cannot be reached
    |   +-- ObjectNotFound         the key is not stored
    |   +-- PreconditionFailed     the object changed since it was read (compare-and-swap lost)
    +-- HubError                   a request ``zoo serve`` refuses, with its HTTP status
        +-- MalformedRequest       400: a body that is not what the protocol says
        +-- EntryNotFound          404: no such file in the repo
        +-- RepoNotFound           404: no such repo, or one the caller may not see
        +-- RevisionNotFound       404: no such branch, tag, pull-request ref or commit
        +-- RefExists              409: that branch, tag, repo or pull request exists already
        +-- Forbidden              403: a valid token without the right to do this
        +-- GatedRepo              401: a gated repo's files without a token that may read them
        +-- DiscussionNotFound     404: no such discussion or pull request
        +-- NotOpen                409: a pull request closed or merged, or with nothing to merge
        +-- CommitConflict         409: the parent is not the head any more, or a path clash
        +-- RequestTooLarge        413: a body over the server's limit
        +-- XetObjectError         400: a xorb or shard that is malformed or does not hash to what it claims
        +-- XetTokenError          401: a CAS call without a valid, unexpired Xet token for its repo

Every message says what failed, with the value, and what to do next. The CLI maps ``UsageError`` to
exit code 2 and any other ``ZooError`` to 1, and prints the chained cause with ``-v``; anything else
is a bug and keeps its traceback (the server answers it with 500 and logs it). Built-in exceptions
are never a signal between zoo's own layers; only field validators raise ``ValueError``, as ``int()``
does, and :func:`zoo.cards.validate.check_table` turns it into a :class:`FieldError`.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every expected zoo failure."""


# --- usage ------------------------------------------------------------------------------------


class UsageError(ZooError):
    """The caller asked for something that cannot exist (bad name, bad option): exit code 2."""


#: the distribution's name on PyPI; the import name and the command stay ``zoo`` (``zoo`` on PyPI
#: is an unrelated project)
DISTRIBUTION = "zoo-hub"


class MissingExtra(UsageError):
    """An optional dependency is not installed: names the feature, the module and the extra that brings it."""

    def __init__(self, feature: str, module: str, extra: str):
        self.feature, self.module, self.extra = feature, module, extra
        super().__init__(f"{feature} needs {module}: pip install '{DISTRIBUTION}[{extra}]'")


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


class UriError(UsageError, ValueError):
    """A source URI does not follow the grammar (hf://, https://, file://, pkg://, a path)."""


class InvalidRepoId(UsageError, ValueError):
    """A repo id that is not ``org/name`` (letters, digits, '.', '_', '-'); never a storage key."""


# --- documents ----------------------------------------------------------------------------------


class CardError(ZooError, ValueError):
    """A card file (or dict) is malformed; names the file and the field."""

    def __init__(self, where: str, field: str | None, problem: str):
        self.where = where
        self.field = field
        self.problem = problem
        at = f"{where}: field {field!r}" if field else where
        super().__init__(f"invalid card {at}: {problem}")


class FieldError(ZooError, ValueError):
    """One field of a TOML or JSON document is wrong (``sources[1].sha256``): raised by
    :func:`zoo.cards.validate.check_table` and re-raised with the document's path by its reader."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(problem)


class ImageError(ZooError, ValueError):
    """An image file that cannot be decoded (missing, not an image, truncated, a decompression bomb)."""


# --- weights ------------------------------------------------------------------------------------


class WeightsError(ZooError):
    """A card's weights could not be had, or are not what they must be."""


class CacheError(WeightsError):
    """A cache operation failed (a lock timed out, the disk is full, a file is not in the cache)."""


class CorruptBlobError(CacheError):
    """Bytes that do not hash to the sha256 they were stored or declared under."""


class SourceError(WeightsError):
    """A source could not deliver its bytes (offline, not found, network failure)."""


class SourceNotFound(SourceError):
    """The source answered, and it does not have that repo, revision or file."""


class OfflineError(SourceError):
    """A network source was needed while ``ZOO_OFFLINE``/``HF_HUB_OFFLINE`` is set."""


class ConversionError(WeightsError):
    """A checkpoint does not map onto the architecture it claims to be."""


class PullError(WeightsError):
    """No mirror or source delivered the right bytes; lists what each one said."""


class BundleError(ZooError):
    """A bundle is malformed or one of its files does not match its manifest."""


# --- runs ---------------------------------------------------------------------------------------


class EngineError(ZooError):
    """A model could not be exported to an ONNX graph, or an exported graph could not be used."""


class RunError(ZooError):
    """A run directory is incomplete, altered, or does not fit the base it names."""


class PublishError(ZooError):
    """The hub refused or could not be reached."""


# --- object storage -----------------------------------------------------------------------------


class StorageError(ZooError):
    """The store refused or could not be reached."""


class ObjectNotFound(StorageError, LookupError):
    """The key is not stored (S3's NoSuchKey, a missing file)."""


class PreconditionFailed(StorageError):
    """The object changed (or exists, or vanished) since it was read: re-read and retry."""


# --- the hub's answers --------------------------------------------------------------------------


class HubError(ZooError):
    """A request the hub refuses on purpose; ``status`` is the HTTP status it answers with and
    ``code`` the ``X-Error-Code`` huggingface_hub turns into a typed error (None: no code)."""

    status = 400
    code: str | None = None


class MalformedRequest(HubError):
    """A request body that is not what the protocol says (not JSON, a field of the wrong type)."""

    status = 400


class EntryNotFound(HubError, LookupError):
    """A file that is not in the repo (at that revision)."""

    status = 404
    code = "EntryNotFound"


class CommitConflict(HubError):
    """A commit that cannot apply: its parent is not the head any more, or a file would also be a folder."""

    status = 409


class RepoNotFound(HubError, LookupError):
    """A repo that does not exist, or that the caller may not see (private): the same answer for
    both, as on the Hub, so a private repo's existence does not leak."""

    status = 404
    code = "RepoNotFound"


class RevisionNotFound(HubError, LookupError):
    """A branch, tag, pull-request ref or commit the repo does not have."""

    status = 404
    code = "RevisionNotFound"


class RefExists(HubError):
    """A branch, tag, repo or pull request that exists already (the client's ``exist_ok`` reads the 409)."""

    status = 409


class Forbidden(HubError):
    """A valid token without the right to do this (read-only, or another namespace's repo)."""

    status = 403


class GatedRepo(HubError):
    """A gated repo's files (or a copy of them) asked for without a token that may read it."""

    status = 401
    code = "GatedRepo"


class DiscussionNotFound(HubError, LookupError):
    """Discussion or pull request ``n`` does not exist in the repo."""

    status = 404


class NotOpen(HubError):
    """A change a closed or merged pull request cannot take (a commit, a merge, a status change)."""

    status = 409


class RequestTooLarge(HubError):
    """A body over the server's limit (``--max-upload-mb``, or a JSON body over 10 MB)."""

    status = 413


class XetObjectError(HubError):
    """A xorb or shard a Xet client sent that is truncated or malformed, or whose chunk, xorb, file
    or sha256 hashes do not match what it claims (or that names xorbs the store does not hold)."""

    status = 400


class XetTokenError(HubError):
    """A CAS call without a valid, unexpired Xet access token, or with one for another repo or
    for reading where it writes."""

    status = 401
