"""The manifest of a verified offline bundle (zoo/weights/bundles.py: the layout), and every check
on what it names before any of it becomes a path: model and run records, tar members.

Both sides read it: ``bundle_export`` writes what this module validates, and ``bundles`` (the
import side, and the bundle as a mirror) refuses a bundle whose manifest fails here.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from zoo.cards.card import REPO_ID_RE
from zoo.errors import BundleError
from zoo.util.paths import unsafe_relpath
from zoo.weights.cache import SHA256_RE

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class BundledRun:
    """A directory a bundle carries verbatim (a fine-tuning run, to the stages above) and the model
    it needs: ``base`` (a card name) with the weights ``base_sha256``."""

    name: str  # its directory name in the bundle, runs/<name>
    path: Path
    files: tuple[str, ...]
    base: str
    base_sha256: str



#: a manifest lists models, a few hundred bytes each; a far larger one is not a manifest
MAX_MANIFEST_BYTES = 64 << 20
_REVISION = re.compile(r"[0-9a-f]{40}\Z")


def read_manifest(bundle: str | os.PathLike) -> dict:
    """The manifest of a bundle directory or ``.tar`` (read without extracting blobs), every field
    that becomes a path checked: a name is a card name, sha256 and revision are hex of their
    length, ``filename`` is a safe relative path (zoo.util.paths) and ``hub_repo`` is ORG/NAME."""
    bundle = Path(bundle)
    try:
        if bundle.is_file():
            with tarfile.open(bundle) as tf:
                info = tf.getmember(MANIFEST)
                if not info.isfile() or info.size > MAX_MANIFEST_BYTES:
                    raise BundleError(f"{bundle}: {MANIFEST} is not a file under {MAX_MANIFEST_BYTES >> 20} MiB")
                data = tf.extractfile(info).read()
        else:
            path = bundle / MANIFEST
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{bundle}: {MANIFEST} is over {MAX_MANIFEST_BYTES >> 20} MiB: not a zoo manifest")
            data = path.read_bytes()
        manifest = json.loads(data)
    except RecursionError:
        raise BundleError(f"{bundle}: {MANIFEST} is nested too deeply to be a zoo manifest") from None
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        raise BundleError(f"{bundle} is not a zoo bundle (no readable {MANIFEST}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION or not isinstance(manifest.get("models"), list):
        raise BundleError(f"{bundle}: {MANIFEST} is not a version-{MANIFEST_VERSION} zoo manifest")
    for m in manifest["models"]:
        why = _bad_record(m)
        if why:
            raise BundleError(f"{bundle}: a model entry of {MANIFEST} is refused ({why}): {str(m)[:300]}")
    if not isinstance(manifest.get("runs", []), list):
        raise BundleError(f"{bundle}: runs in {MANIFEST} is not a list")
    for r in manifest.get("runs", []):
        why = _bad_run_record(r, {m["name"]: m["sha256"] for m in manifest["models"]})
        if why:
            raise BundleError(f"{bundle}: a run entry of {MANIFEST} is refused ({why}): {str(r)[:300]}")
    return manifest


def _plain_name(name) -> str | None:
    """Why ``name`` may not be one directory or file name under a directory, or None."""
    why = unsafe_relpath(name)
    if why:
        return why
    return "it has a '/'" if "/" in name else "it starts with '.'" if name.startswith(".") else None


def _bad_run_record(r, models: dict[str, str]) -> str | None:
    """Why a run entry may not be used, or None: its name and file names become paths, each file
    has a sha256 and size, and its base is a model of the same bundle with the recorded sha256."""
    if not isinstance(r, dict):
        return "not a table"
    if _plain_name(r.get("name")):
        return f"name {r.get('name')!r} is not a directory name: {_plain_name(r.get('name'))}"
    files = r.get("files")
    if not isinstance(files, dict) or not files:
        return "files is not a table of file names"
    for name, f in files.items():
        if _plain_name(name):
            return f"file {name!r} is not a file name: {_plain_name(name)}"
        if not isinstance(f, dict) or not isinstance(f.get("sha256"), str) or not SHA256_RE.match(f["sha256"]):
            return f"file {name!r} has no sha256 of 64 lowercase hex digits"
        if not isinstance(f.get("size"), int) or isinstance(f["size"], bool) or f["size"] < 0:
            return f"file {name!r} has no byte count"
    if models.get(r.get("base")) != r.get("base_sha256"):
        return f"its base {r.get('base')!r} (sha256 {r.get('base_sha256')!r}) is not a model of the bundle"
    return None


def _bad_record(m) -> str | None:
    """Why a manifest entry may not be used, or None: every field that becomes a path or a name is checked."""
    if not isinstance(m, dict):
        return "not a table"
    if not isinstance(m.get("name"), str) or unsafe_relpath(m["name"]) or "/" in m["name"]:
        return f"name {m.get('name')!r} is not a card name"
    if not isinstance(m.get("sha256"), str) or not SHA256_RE.match(m["sha256"]):
        return f"sha256 {m.get('sha256')!r} is not 64 lowercase hex digits"
    if not isinstance(m.get("size"), int) or isinstance(m["size"], bool) or m["size"] < 0:
        return f"size {m.get('size')!r} is not a byte count"
    if m.get("revision") not in (None, "") and not (isinstance(m["revision"], str) and _REVISION.match(m["revision"])):
        return f"revision {m['revision']!r} is not a 40-hex commit id"
    if m.get("filename") not in (None, "") and unsafe_relpath(m["filename"]):
        return f"filename {m['filename']!r} is not a safe relative path: {unsafe_relpath(m['filename'])}"
    if m.get("hub_repo") not in (None, "") and not (isinstance(m["hub_repo"], str) and REPO_ID_RE.match(m["hub_repo"])):
        return f"hub_repo {m['hub_repo']!r} is not ORG/NAME"
    return None


def check_members(bundle: Path, tf: tarfile.TarFile) -> int:
    """Every member of a tar bundle is a plain file or directory at a safe relative path under
    ``blobs/``, ``cards/``, ``runs/`` or the manifest (no links, devices, absolute names or ``..``); returns
    their total size. Else a BundleError naming the member."""
    total = 0
    for member in tf.getmembers():
        kind = ("a link" if member.issym() or member.islnk() else "a device or fifo" if not (member.isfile() or member.isdir())
                else None)
        why = unsafe_relpath(member.name) or kind
        top = member.name.split("/", 1)[0]
        if not why and top not in ("blobs", "cards", "runs", MANIFEST, f"{MANIFEST}.sha256"):
            why = "outside blobs/, cards/, runs/ and the manifest"
        if why:
            raise BundleError(f"{bundle}: member {member.name!r} is refused ({why}); nothing was imported")
        total += member.size
    return total
