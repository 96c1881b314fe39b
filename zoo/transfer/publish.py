"""Runs on a hub: publish a run directory as a repo, and fetch a published run back.

Both directions go through huggingface_hub against any Hugging Face-compatible endpoint
(huggingface.co, or ``zoo serve``): ``HfApi.create_repo`` + ``upload_folder`` (one commit) to
publish, ``snapshot_download`` (its content-addressed cache under ``ZOO_HOME/runs``) to fetch. A
published repo holds the run's files only, never the base weights: loading resolves the base
through its card and verifies both (``zoo.runs.load_run``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from zoo import config, home
from zoo.cards.registry import get_registry
from zoo.cards.uri import parse_uri
from zoo.errors import PublishError, RunError, UsageError, UriError
from zoo.util.progress import Progress, Task
from zoo.transfer.runs import CARD_FILE, RUN_FILES, is_run, read_run, verify_run
from zoo.weights.pull import pull


@dataclass(frozen=True)
class Published:
    repo_id: str
    endpoint: str
    commit: str
    url: str


def _hub_error(exc: Exception, endpoint: str, repo_id: str) -> PublishError:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError  # lazy: only on a hub's error

    if isinstance(exc, RepositoryNotFoundError):
        return PublishError(f"{endpoint}: no repo {repo_id} (or it is private: pass --token or set HF_TOKEN)")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        hint = "; pass --token or set HF_TOKEN" if status in (401, 403) else ""
        return PublishError(f"{endpoint}: {repo_id}: {str(exc).splitlines()[0]}{hint}")
    return PublishError(f"{endpoint} is unreachable: {type(exc).__name__}: {exc}")


#: the files of a merged export (``zoo export --merged``), which stock timm loads from a hub
MERGED_FILES = ("config.json", "model.safetensors", "README.md")


def _is_zoo_hub(endpoint: str) -> bool:
    """Whether ``endpoint`` is a ``zoo serve`` hub (it answers /api/zoo/stats; the HF Hub does not)."""
    import requests

    try:
        return requests.get(f"{endpoint}/api/zoo/stats", timeout=10).status_code in (200, 401, 403)
    except requests.RequestException:
        return False


def _files_to_upload(folder: Path) -> tuple[list[str], str]:
    """The files to publish from a run directory (verified) or a merged export, and a description."""
    if is_run(folder):
        card = verify_run(folder)
        return list(RUN_FILES), (f"zoo run {card.name}: {len(card.classes)}-class head on {card.base.name} "
                                 f"(val accuracy {float(card.metrics['val_accuracy']):.4f})")
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return list(MERGED_FILES), f"zoo export of {folder.name}: a full timm model"
    raise UsageError(f"{folder} is neither a run directory (zoo finetune --out) nor a merged export "
                     "(zoo export --merged)")


def publish(run: str | os.PathLike, repo_id: str, *, endpoint: str | None = None, private: bool = False,
            token: str | None = None, message: str | None = None) -> Published:
    """Upload a run directory (or a merged export) to ``repo_id`` in one commit, creating the repo
    if needed. Refuses a run whose files no longer match the sha256 its card.toml records."""
    from huggingface_hub import HfApi, constants

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"--repo must be ORG/NAME, not {repo_id!r}")
    files, description = _files_to_upload(Path(run))
    if config.offline():
        raise PublishError("offline (ZOO_OFFLINE/HF_HUB_OFFLINE): publishing needs the network")
    endpoint = (endpoint or config.hf_endpoint()).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    # a zoo hub speaks the LFS basic transfer, not Xet, for files over 10 MB (docs/internals.md,
    # "The Xet trap"); huggingface_hub reads this switch at upload time
    xet_was = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = xet_was or _is_zoo_hub(endpoint)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(run), allow_patterns=files,
                                 commit_message=message or description)
    except Exception as exc:  # deliberate: httpx, OSError and huggingface_hub's errors all mean the hub said no
        raise _hub_error(exc, endpoint, repo_id) from exc
    finally:
        constants.HF_HUB_DISABLE_XET = xet_was
    return Published(repo_id, endpoint, info.oid, info.commit_url)


def is_published_run_uri(text: str) -> bool:
    """``hf://ORG/NAME[@rev]`` naming a whole repo outside the ``timm`` org (those are timm weights)."""
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


def fetch_run(text: str, *, token: str | None = None, progress: Progress | None = None) -> Path:
    """The local directory of the published run ``hf://ORG/NAME[@rev]``, downloaded once (then read
    from ``ZOO_HOME/runs``, also offline) and verified against its card. ``progress``
    (zoo.util.progress) sees a task in files while it downloads."""
    from huggingface_hub import snapshot_download  # lazy: huggingface_hub only when a run is fetched

    uri = parse_uri(text)
    endpoint = config.hf_endpoint()
    cache_dir = str(home.runs())
    try:
        path = Path(snapshot_download(uri.repo_id, revision=uri.revision, endpoint=endpoint, cache_dir=cache_dir,
                                      allow_patterns=list(RUN_FILES), local_files_only=config.offline(), token=token,
                                      tqdm_class=_reporting_tqdm(progress, f"fetch the run {text}")))
    except Exception as exc:  # deliberate: as in publish, any failure of the client means the hub said no
        from huggingface_hub.errors import LocalEntryNotFoundError

        if isinstance(exc, LocalEntryNotFoundError) or config.offline():
            raise PublishError(f"{text} is not in the local run cache and zoo is offline; run `zoo pull {text}` "
                               "on a machine with access to the hub (or unset ZOO_OFFLINE)") from None
        raise _hub_error(exc, endpoint, uri.repo_id) from exc
    if not (path / CARD_FILE).is_file():
        raise RunError(f"{text} holds no zoo run ({CARD_FILE} is missing); for timm weights use hf://timm/<tag>")
    verify_run(path)
    try:  # the repo folder's mtime is when the run was last used: what `zoo cache prune` reads
        os.utime(Path(cache_dir) / ("models--" + uri.repo_id.replace("/", "--")))
    except OSError:
        pass
    return path


def pull_run(text: str, *, progress: Progress | None = None, token: str | None = None) -> tuple[Path, Path]:
    """Fetch a published run and its base weights (through the base's card), both verified:
    (run directory, base weights blob)."""
    path = fetch_run(text, token=token, progress=progress)
    card = read_run(path)  # fetch_run verified the files against it already
    base = pull(get_registry().resolve(card.base.name), progress=progress)
    if base.name != card.base.weights_sha256:
        raise RunError(f"{text} was trained on base weights sha256 {card.base.weights_sha256}, but "
                       f"{card.base.name} gives {base.name} here")
    return path, base
