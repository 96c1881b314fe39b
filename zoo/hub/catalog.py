"""What the hub's pages say about each repo: one :class:`Summary` per repo a caller may see, with
the figures a person compares models by, and where each figure comes from.

A cached card's repo takes its figures from the card (published top-1/top-5 and their source,
computed params and depth, input resolution, licence) and, where ``zoo compare`` ran on this
server's home, the measured latency and throughput. An uploaded repo takes them from its README's
metadata (licence, library, tags, ``base_model``, the accuracy in ``model-index``) and its
safetensors headers (parameter counts, as the Hub's ``safetensors`` field reports them). Parsed
headers are kept per blob sha256: a blob never changes, so a page never reads one twice.

Lineage is ``base_model``: a head's README names its base repo, so the heads of a base are the
repos whose README names it.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import prod

from zoo.cards.card import Card
from zoo.cards.registry import get_registry
from zoo.hub.cards import card_data
from zoo.hub.served import Repo, RepoFile, ServedRepos

log = logging.getLogger(__name__)

#: the largest safetensors header read (the format allows 100 MB; a model's is a few hundred KB)
HEADER_MAX = 16 << 20
#: blob sha256 -> its safetensors parameter counts per dtype ({} for a file that is not one)
_COUNTS: dict[str, dict[str, int]] = {}
_COUNTS_MAX = 8192


@dataclass
class Summary:
    """One repo as the index lists it and its page opens with."""

    repo: Repo
    card: Card | None = None  # a cached card's repo: the card whose weights it serves
    meta: dict = field(default_factory=dict)  # an uploaded repo: its README's metadata
    params: int | None = None
    params_source: str | None = None
    params_by_dtype: dict[str, int] = field(default_factory=dict)  # from safetensors headers
    measured: dict | None = None

    @property
    def repo_id(self) -> str:
        return self.repo.repo_id

    @property
    def kind(self) -> str:
        return self.repo.kind

    @property
    def url(self) -> str:
        """The repo's page on this hub, as the Hub spells it."""
        return ("/datasets/" if self.kind == "dataset" else "/") + self.repo_id

    @property
    def size(self) -> int:
        return sum(f.size for f in self.repo.files.values())

    @property
    def updated(self) -> float:
        return self.repo.last_modified

    @property
    def top1(self) -> float | None:
        return self.card.top1 if self.card else None

    @property
    def top5(self) -> float | None:
        return self.card.top5 if self.card else None

    @property
    def licences(self) -> list[str]:
        """The repo's licences (a README may list several)."""
        if self.card:
            return [self.card.license] if self.card.license else []
        value = self.meta.get("license")
        return [v for v in ([value] if isinstance(value, str) else value if isinstance(value, list) else []) if isinstance(v, str)]

    @property
    def licence(self) -> str | None:
        return ", ".join(self.licences) or None

    @property
    def library(self) -> str | None:
        if self.card:
            return "timm"
        value = self.meta.get("library_name")
        return value if isinstance(value, str) else None

    @property
    def tags(self) -> list[str]:
        if self.card:
            return ["timm", "image-classification"]
        return [t for t in self.meta.get("tags") or [] if isinstance(t, str)]

    @property
    def base_models(self) -> list[str]:
        value = self.meta.get("base_model")
        return [v for v in ([value] if isinstance(value, str) else value or []) if isinstance(v, str)]

    @property
    def accuracy(self) -> list[dict]:
        """The results the README's ``model-index`` reports: metric, value, dataset, split."""
        out = []
        models = self.meta.get("model-index")
        for model in models if isinstance(models, list) else []:
            results = model.get("results") if isinstance(model, dict) else None
            for result in results if isinstance(results, list) else []:
                if not isinstance(result, dict):
                    continue
                dataset = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
                metrics = result.get("metrics")
                for metric in metrics if isinstance(metrics, list) else []:
                    value = metric.get("value") if isinstance(metric, dict) else None
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        out.append({"metric": str(metric.get("type") or metric.get("name") or "metric"), "value": value,
                                    "dataset": str(dataset.get("name") or dataset.get("type") or ""),
                                    "split": str(dataset.get("split") or "")})
        return out

    @property
    def title(self) -> str:
        """What the index shows under the id: the card's name, or the README's model name."""
        if self.card:
            return self.card.name
        models = self.meta.get("model-index")
        for model in models if isinstance(models, list) else []:
            if isinstance(model, dict) and isinstance(model.get("name"), str):
                return model["name"]
        return self.meta.get("pretty_name") if isinstance(self.meta.get("pretty_name"), str) else ""

    def search_text(self) -> str:
        """What the index's search matches (lower-cased, as its script does): id, title, licence, library, tags."""
        return " ".join([self.repo_id, self.title, self.licence or "", self.library or "", *self.tags]).lower()


def card_of(repo: Repo) -> Card | None:
    """The card whose weights a cached card's repo serves: by the cached name, else by hub repo."""
    if repo.uploaded:
        return None
    registry = get_registry()
    for name in repo.card_names:
        card = registry.find(name)
        if card is not None and card.hub_repo == repo.repo_id:
            return card
    return next((c for c in registry.cards if c.hub_repo == repo.repo_id), None)


def safetensors_info(served: ServedRepos, repo: Repo) -> dict | None:
    """The Hub's ``safetensors`` field of ``repo``: parameters per dtype and their total, read from
    the headers of its ``.safetensors`` files; None when it has none that parse."""
    counts: dict[str, int] = {}
    found = False
    for entry in repo.files.values():
        if not entry.path.endswith(".safetensors"):
            continue
        per_dtype = _counts(served, entry)
        found = found or bool(per_dtype)
        for dtype, n in per_dtype.items():
            counts[dtype] = counts.get(dtype, 0) + n
    return {"parameters": counts, "total": sum(counts.values())} if found else None


def _counts(served: ServedRepos, entry: RepoFile) -> dict[str, int]:
    if entry.sha256 in _COUNTS:
        return _COUNTS[entry.sha256]
    try:
        head = _read(served, entry, 0, 8)
        (length,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
        if length is None or not 2 <= length <= min(HEADER_MAX, entry.size - 8):
            raise ValueError(f"header length {length} out of range")
        header = json.loads(_read(served, entry, 8, length))
        counts: dict[str, int] = {}
        for name, tensor in header.items() if isinstance(header, dict) else ():
            if name == "__metadata__" or not isinstance(tensor, dict):
                continue
            shape, dtype = tensor.get("shape"), tensor.get("dtype")
            if isinstance(dtype, str) and isinstance(shape, list) \
                    and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                counts[dtype] = counts.get(dtype, 0) + prod(shape)
    except (OSError, ValueError, RecursionError) as exc:  # not a safetensors file (one nesting [[[...), or gone
        log.info("%s (%s): no safetensors header: %s", entry.path, entry.sha256[:12], exc)
        counts = {}
    if len(_COUNTS) >= _COUNTS_MAX:
        for key in list(_COUNTS)[: _COUNTS_MAX // 2]:
            del _COUNTS[key]
    _COUNTS[entry.sha256] = counts
    return counts


def _read(served: ServedRepos, entry: RepoFile, start: int, n: int) -> bytes:
    if entry.in_store:
        return b"".join(served.blobs.stream(entry.sha256, start, start + n - 1))
    with open(entry.blob, "rb") as fh:
        fh.seek(start)
        return fh.read(n)


def summarize(served: ServedRepos, repo: Repo, measured: dict[str, dict] | None = None) -> Summary:
    card = card_of(repo)
    if card is not None:
        source = "computed from the architecture (card)" if card.params else None
        return Summary(repo, card, {}, card.params, card.provenance.get("params", source),
                       measured=(measured or {}).get(card.name))
    st = safetensors_info(served, repo)
    return Summary(repo, None, card_data(served, repo) if repo.uploaded else {},
                   st["total"] if st else None, "counted from the safetensors headers" if st else None,
                   params_by_dtype=st["parameters"] if st else {})


def repos_at_main(served: ServedRepos, wanted: list[tuple[str, str]]) -> list[Repo | None]:
    """The repos ``wanted`` ((kind, repo id) pairs) at main, in order (None: gone); on S3, where
    each is a few round trips, 16 at a time."""
    if served.shared and len(wanted) > 1:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda k: served.get(k[1], k[0]), wanted))
    return [served.get(repo_id, kind) for kind, repo_id in wanted]


def visible_repos(served: ServedRepos, identity, kinds=("model", "dataset")) -> list[Repo]:
    """Every repo at main the caller may see (public ones, and private ones its token reads),
    models first."""
    repos = repos_at_main(served, [(kind, repo_id) for kind in kinds for repo_id in served.repo_ids(kind)])
    return [r for r in repos if r is not None and (not r.private or identity is not None and identity.can_read(r.repo_id))]


def catalog(served: ServedRepos, identity, measured: dict[str, dict] | None = None) -> list[Summary]:
    """A :class:`Summary` of every repo the caller may see."""
    return [summarize(served, repo, measured) for repo in visible_repos(served, identity)]


#: seconds after which a server rebuilds its map of heads per base model (every repo read once),
#: in the background: a base's page lists its heads without a scan of the hub per view, and a new
#: head shows on it within this (or the scan's own time, on a large hub on S3)
LINEAGE_SECONDS = 10.0
_LINEAGE_LOCK = threading.Lock()


def _lineage_map(served: ServedRepos) -> dict[str, list[Summary]]:
    heads: dict[str, list[Summary]] = {}
    for s in (summarize(served, repo) for repo in visible_repos(served, ALL, ("model",))):
        for base in s.base_models:
            if base != s.repo_id:
                heads.setdefault(base, []).append(s)
    return heads


def _refresh_lineage(served: ServedRepos) -> None:
    try:
        served.lineage = (time.monotonic(), _lineage_map(served))
    except Exception:  # deliberate: a background refresh that fails keeps the last map, and says why
        log.exception("rebuilding the lineage map failed; the last one stays")
    finally:
        served.lineage_refreshing = False


def heads_of(served: ServedRepos, repo_id: str, identity) -> list[Summary]:
    """The repos whose README names ``repo_id`` as their ``base_model`` (the heads published on
    it) that the caller may see. The first call builds the map of the hub; later ones use it and,
    when it is older than :data:`LINEAGE_SECONDS`, rebuild it in a background thread."""
    if served.lineage is None:
        served.lineage = (time.monotonic(), _lineage_map(served))
    taken, heads = served.lineage
    if time.monotonic() - taken > LINEAGE_SECONDS:
        with _LINEAGE_LOCK:
            start = not served.lineage_refreshing
            served.lineage_refreshing = True
        if start:
            threading.Thread(target=_refresh_lineage, args=(served,), name="zoo-lineage", daemon=True).start()
    out = []
    for s in heads.get(repo_id, ()):  # each head's record read now: one made private or deleted since is not listed
        record = served.record(s.repo_id)
        if record is not None and (not record.get("private") or identity is not None and identity.can_read(s.repo_id)):
            out.append(s)
    return out


class _Everyone:
    """The identity that reads every repo: the lineage map is built once for all callers, then filtered."""

    @staticmethod
    def can_read(repo_id: str) -> bool:
        return True


ALL = _Everyone()
