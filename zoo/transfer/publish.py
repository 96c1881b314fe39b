"""Runs on a hub: publish a run directory (or a merged export) as a repo, and fetch one back.

Both directions go through huggingface_hub against any Hugging Face-compatible endpoint
(huggingface.co, or ``zoo serve``): ``HfApi.create_repo`` + ``create_commit`` (one commit) to
publish, ``snapshot_download`` (its content-addressed cache under ``ZOO_HOME/runs``) to fetch. A
published run holds the run's files only, never the base weights: loading resolves the base
through its card and verifies both (``zoo.transfer.runs.load_run``).

The README a run publishes is rendered for the repo it goes to (its id, its hub, the base's
link), or kept as the user edited it with its metadata header refreshed
(:func:`zoo.transfer.model_card.published_readme`). Before committing, each file is compared with what
main already holds (the sha256 of an LFS file, the git blob id of a regular one): only changed
files are committed, and an unchanged run makes no commit at all. huggingface_hub skips unchanged
files only where the hub's preupload answer names their oid, which the Hugging Face Hub does and
``zoo serve`` does not (it commits whatever it is sent, an identical commit included), so the
comparison is made here, the same for every hub.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from zoo import config, home
from zoo.cards.registry import get_registry
from zoo.cards.uri import parse_uri
from zoo.errors import PublishError, RunError, UsageError, UriError
from zoo.store.repos import git_blob_oid
from zoo.transfer.exports import MERGED_FILES, is_merged_export
from zoo.transfer.model_card import published_readme
from zoo.transfer.runs import CARD_FILE, HEAD_FILE, METRICS_FILE, README_FILE, RUN_FILES, is_run, read_run, verify_run
from zoo.util.hashing import sha256_file
from zoo.util.progress import Progress, Task
from zoo.weights.pull import pull


@dataclass(frozen=True)
class Published:
    repo_id: str
    endpoint: str
    commit: str  # the branch after publishing: the new commit, or the one that held these files already
    url: str
    changed: tuple[str, ...] = ()  # the files committed; empty: nothing changed, no commit was made
    revision: str = "main"  # where the files are: the branch, or the pull request's ref (refs/pr/N)
    pr_url: str | None = None  # the pull request opened for review (--create-pr)
    tag: str | None = None

    @property
    def uri(self) -> str:
        """What ``zoo.load`` takes to load what was published (the revision quoted if not main)."""
        from urllib.parse import quote

        return f"hf://{self.repo_id}" + ("" if self.revision == "main" else f"@{quote(self.revision, safe='')}")


def _hub_error(exc: Exception, endpoint: str, repo_id: str) -> PublishError:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError  # lazy: only on a hub's error

    if isinstance(exc, RepositoryNotFoundError):
        return PublishError(f"{endpoint}: no repo {repo_id} (or it is private: pass --token or set HF_TOKEN)")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        hint = "; pass --token or set HF_TOKEN" if status in (401, 403) else ""
        return PublishError(f"{endpoint}: {repo_id}: {str(exc).splitlines()[0]}{hint}")
    return PublishError(f"{endpoint} is unreachable: {type(exc).__name__}: {exc}")


def _files_to_upload(folder: Path, repo_id: str, endpoint: str) -> tuple[dict[str, Path | bytes], str]:
    """What to publish from a run directory (verified) or a merged export: path in the repo ->
    the local file, or the README's rendered bytes; and a description for the commit."""
    if is_run(folder):
        card = verify_run(folder)
        files: dict[str, Path | bytes] = {name: folder / name for name in (CARD_FILE, HEAD_FILE, METRICS_FILE)}
        description = (f"zoo run {card.name}: {len(card.classes)}-class head on {card.base.name} "
                       f"(val accuracy {float(card.metrics['val_accuracy']):.4f})")
    elif is_merged_export(folder):
        card = None
        files = {name: folder / name for name in MERGED_FILES if name != README_FILE}
        description = f"zoo export of {folder.name}: a full timm model"
    else:
        raise UsageError(f"{folder} is neither a run directory (zoo finetune --out) nor a merged export "
                         "(zoo export --merged)")
    readme = published_readme(folder, card, repo_id, endpoint)
    if readme is not None:
        files[README_FILE] = readme.encode("utf-8")
    return files, description


def _remote_files(api, repo_id: str, revision: str = "main") -> tuple[str | None, dict[str, tuple[str | None, str | None]]]:
    """The branch's commit (None for a repo nobody committed to) and its files: path -> (sha256 of
    an LFS file, git blob id)."""
    from huggingface_hub.errors import RevisionNotFoundError  # lazy: huggingface_hub only when publishing

    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        return None, {}
    return info.sha, {s.rfilename: (s.lfs.sha256 if s.lfs else None, s.blob_id) for s in info.siblings or ()}


def _same(local: Path | bytes, remote: tuple[str | None, str | None] | None) -> bool:
    """Whether the repo holds these bytes already (by the id the hub reports for the file)."""
    if remote is None:
        return False
    lfs_sha256, blob_id = remote
    if lfs_sha256:
        return lfs_sha256 == (hashlib.sha256(local).hexdigest() if isinstance(local, bytes) else sha256_file(local))
    return blob_id == git_blob_oid(local if isinstance(local, bytes) else local.read_bytes())


def publish(run: str | os.PathLike, repo_id: str, *, endpoint: str | None = None, private: bool = False,
            token: str | None = None, message: str | None = None, branch: str = "main", create_pr: bool = False,
            tag: str | None = None) -> Published:
    """Upload a run directory (or a merged export) to ``repo_id`` in one commit of the files that
    changed, creating the repo if needed; no commit when none did. Refuses a run whose weights or
    card.toml no longer match what it recorded (an edited README is published as edited).

    ``branch``: commit there (created from main if it does not exist), to try a head without
    touching main. ``create_pr``: open a pull request onto the branch instead, for review (its
    ref, ``refs/pr/N``, loads like a branch). ``tag``: tag the commit published (a release); a tag
    that names another commit already is refused."""
    from huggingface_hub import CommitOperationAdd, HfApi  # lazy: huggingface_hub only when publishing

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"--repo must be ORG/NAME, not {repo_id!r}")
    if tag and create_pr:
        raise UsageError("--tag with --create-pr: tag the release once the pull request is merged")
    endpoint = (endpoint or config.hf_endpoint()).rstrip("/")
    files, description = _files_to_upload(Path(run), repo_id, endpoint)
    if config.offline():
        raise PublishError("offline (ZOO_OFFLINE/HF_HUB_OFFLINE): publishing needs the network")
    api = HfApi(endpoint=endpoint, token=token)
    # files over 10 MB go through Xet when hf_xet is installed, to the Hub and to a zoo hub alike
    # (zoo/hub/xet): a fine-tune then sends only the chunks its base does not already hold
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        head, remote = _remote_files(api, repo_id, branch)
        changed = {path: local for path, local in files.items() if not _same(local, remote.get(path))}
        if not changed:
            done = Published(repo_id, endpoint, head, f"{endpoint}/{repo_id}/commit/{head}", revision=branch)
        else:
            operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=local if isinstance(local, bytes) else str(local))
                          for path, local in sorted(changed.items())]
            info = api.create_commit(repo_id, operations, commit_message=message or description, parent_commit=head,
                                     revision=branch, create_pr=create_pr)
            done = Published(repo_id, endpoint, info.oid, info.commit_url, tuple(sorted(changed)),
                             info.pr_revision or branch, info.pr_url)
        if tag:
            _tag(api, repo_id, tag, done.commit)
            done = Published(**{**done.__dict__, "tag": tag})
    except (PublishError, UsageError):
        raise
    except Exception as exc:  # deliberate: httpx, OSError and huggingface_hub's errors all mean the hub said no
        raise _hub_error(exc, endpoint, repo_id) from exc
    return done


def _tag(api, repo_id: str, tag: str, commit: str) -> None:
    """Tag ``commit``; a tag already there is fine, one on another commit is refused (a release
    name means one set of weights)."""
    existing = {t.name: t.target_commit for t in api.list_repo_refs(repo_id).tags}
    if tag in existing:
        if existing[tag] != commit:
            raise PublishError(f"tag {tag} of {repo_id} names commit {existing[tag][:12]} already; pick another "
                               "tag (a release name means one set of weights)")
        return
    api.create_tag(repo_id, tag=tag, revision=commit)


def is_published_uri(text: str) -> bool:
    """``hf://ORG/NAME[@rev]`` naming a whole repo outside the ``timm`` org (those are timm weights):
    a published run or merged export."""
    if not text.startswith("hf://"):
        return False
    try:
        uri = parse_uri(text)
    except UriError:
        return False
    return uri.path is None and uri.repo_id.split("/")[0] != "timm"


def _reporting_tqdm(progress: Progress | None, label: str):
    """A tqdm class for huggingface_hub that draws nothing itself and reports to ``progress``
    (zoo.util.progress) instead: its "Fetching N files" bar becomes a task in files, and each
    file's byte bar a task in bytes named by the file."""
    from tqdm.auto import tqdm  # huggingface_hub's own dependency

    class Reported(tqdm):
        def __init__(self, *args, **kwargs):
            in_bytes = kwargs.get("unit") == "B"
            desc = kwargs.get("desc")
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.task = Task(progress, "pull", f"{label}: {desc}" if in_bytes and desc else label,
                             kwargs.get("total"), "bytes" if in_bytes else "files")

        def update(self, n=1):
            self.task.advance(n or 0)
            return super().update(n)

        def close(self):
            self.task.end()
            super().close()

    return Reported


def fetch_published(text: str, *, token: str | None = None, progress: Progress | None = None) -> Path:
    """The local directory of the published run or merged export ``hf://ORG/NAME[@rev]``,
    downloaded once (then read from ``ZOO_HOME/runs``, also offline); a run is verified against its
    card. ``progress`` (zoo.util.progress) sees a task in files while it downloads."""
    from huggingface_hub import snapshot_download  # lazy: huggingface_hub only when a repo is fetched

    uri = parse_uri(text)
    endpoint = config.hf_endpoint()
    cache_dir = str(home.runs())
    try:
        path = Path(snapshot_download(uri.repo_id, revision=uri.revision, endpoint=endpoint, cache_dir=cache_dir,
                                      allow_patterns=sorted({*RUN_FILES, *MERGED_FILES}),
                                      local_files_only=config.offline(), token=token,
                                      tqdm_class=_reporting_tqdm(progress, f"fetch {text}")))
    except Exception as exc:  # deliberate: as in publish, any failure of the client means the hub said no
        from huggingface_hub.errors import LocalEntryNotFoundError

        if isinstance(exc, LocalEntryNotFoundError) or config.offline():
            raise PublishError(f"{text} is not in the local run cache and zoo is offline; run `zoo pull {text}` "
                               "on a machine with access to the hub (or unset ZOO_OFFLINE)") from None
        raise _hub_error(exc, endpoint, uri.repo_id) from exc
    if is_run(path):
        verify_run(path)
    elif not is_merged_export(path):
        raise RunError(f"{text} holds neither a zoo run ({CARD_FILE}) nor a merged export (config.json + "
                       "model.safetensors); for timm weights use hf://timm/<tag>")
    try:  # the repo folder's mtime is when it was last used: what `zoo cache prune` reads
        os.utime(Path(cache_dir) / ("models--" + uri.repo_id.replace("/", "--")))
    except OSError:
        pass
    return path


def pull_published(text: str, *, progress: Progress | None = None, token: str | None = None) -> tuple[Path, Path | None]:
    """Fetch a published run and its base weights (through the base's card), both verified, or a
    merged export (whole already): (its directory, the base weights blob or None)."""
    path = fetch_published(text, token=token, progress=progress)
    if not is_run(path):
        return path, None
    card = read_run(path)  # fetch_published verified the files against it already
    base = pull(get_registry().resolve(card.base.name), progress=progress)
    if base.name != card.base.weights_sha256:
        raise RunError(f"{text} was trained on base weights sha256 {card.base.weights_sha256}, but "
                       f"{card.base.name} gives {base.name} here")
    return path, base
