"""A run's Hugging Face model card, ``README.md``: its text, rendered from ``card.toml`` alone, and
the README a run or a merged export publishes to a repo: rendered again for that repo, or, where
the user edited it, the user's text with its metadata header refreshed from ``card.toml``. The
README is the run's prose, for people to edit: a run's load does not check it (zoo.transfer.runs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from zoo.errors import UsageError
from zoo.transfer.runs import HEAD_FILE, README_FILE, RunCard
from zoo.util.hashing import sha256_file

#: where a README's links point when no other hub is named
HF_HUB = "https://huggingface.co"
#: the repo id a README names before it is published; ``zoo publish`` puts the real one in its place
PLACEHOLDER_URIS = ("hf://ORG/NAME", "hf-hub:ORG/NAME")


def card_data(card: RunCard, merged: bool = False):
    """The README's metadata header (huggingface_hub.ModelCardData), from card.toml alone: what
    ``zoo publish`` refreshes in a README the user edited."""
    from huggingface_hub import EvalResult, ModelCardData  # lazy: only when a model card is written

    metrics = card.metrics
    return ModelCardData(
        base_model=card.base.hub_repo or None, license=card.base.license if card.base.license != "unknown" else None,
        library_name="timm" if merged else "zoo", tags=["image-classification", "transfer-learning", "zoo", card.base.architecture],
        pipeline_tag="image-classification", model_name=card.name,
        eval_results=[EvalResult(task_type="image-classification", dataset_type="imagefolder",
                                 dataset_name=str(card.training.get("data_name", "imagefolder")),
                                 metric_type="accuracy", metric_value=float(metrics["val_accuracy"]),
                                 dataset_split=f"validation ({metrics['val_size']} images)")])


def model_card_text(card: RunCard, merged: bool = False, repo_id: str | None = None,
                    endpoint: str | None = None) -> str:
    """README.md: the Hugging Face model card (metadata header through huggingface_hub.ModelCard).
    ``merged``: the card of a full exported model, loaded by stock timm. ``repo_id`` and
    ``endpoint``: where it is published (``zoo publish`` renders it again with them); without them
    the usage names ``ORG/NAME`` and links point to the Hugging Face Hub."""
    from huggingface_hub import ModelCard  # lazy: only when a model card is written

    metrics = card.metrics
    hub = (endpoint or HF_HUB).rstrip("/")
    base = f"[`{card.base.name}`]({hub}/{card.base.hub_repo})" if card.base.hub_repo else f"`{card.base.name}`"
    repo = repo_id or "ORG/NAME"
    where = "" if hub == HF_HUB else (f"\n\nThis repository is on `{hub}`, not the Hugging Face Hub: set "
                                      f"`HF_ENDPOINT={hub}` before loading it.")
    rows = "\n".join(f"| {k} | {v} |" for k, v in card.training.items())
    # the body is passed as a value, never as template text: class and run names are user data
    body = f"""
# {card.name}

A {len(card.classes)}-class head for {base} (base weights sha256 `{card.base.weights_sha256}`),
fine-tuned with [zoo](https://pypi.org/project/zoo-hub/) using the **{card.training['strategy']}** strategy.

Validation accuracy **{float(metrics['val_accuracy']):.4f}** on {metrics['val_size']} held-out images
(train accuracy {float(metrics['train_accuracy']):.4f}).

Classes: {', '.join(card.classes)}

## Use

{(_USE_MERGED if merged else _USE_RUN).format(repo=repo)}{where}

## Training

{card.training.get('reason', '')}

| hyper-parameter | value |
| --- | --- |
{rows}
"""
    return ModelCard.from_template(card_data(card, merged), template_str="---\n{{ card_data }}\n---\n{{ body }}",
                                   body=body).content


_USE_RUN = f"""```python
import zoo
model = zoo.load("hf://{{repo}}")  # downloads this head, then the base through its card; verifies both
```

This repository holds only the tensors that changed ({HEAD_FILE}); the base weights are fetched and
verified by sha256 from the base model's own sources."""
_USE_MERGED = """```python
import timm
model = timm.create_model("hf-hub:{repo}", pretrained=True)  # the full model: no zoo needed
```

`zoo.load("hf://{repo}")` loads it too, with its class names."""


def published_readme(path: str | os.PathLike, card: RunCard | None, repo_id: str,
                     endpoint: str | None = None) -> str | None:
    """The README.md to publish from the run (or, with ``card`` None, the merged export) at
    ``path`` to ``repo_id``: None when there is none to publish.

    A README as zoo wrote it (its sha256 is the one card.toml records) is rendered again with the
    real repo id, links and hub. One the user edited keeps the user's text: only its metadata header
    is refreshed from card.toml (zoo's facts win, the user's other keys, tags and license stay) and the
    ``hf://ORG/NAME`` placeholders name the repo. A merged export has no card.toml: its README gets
    the placeholders replaced."""
    readme = Path(path) / README_FILE
    if card is not None and (not readme.is_file() or sha256_file(readme) == card.files.get(README_FILE)):
        return model_card_text(card, repo_id=repo_id, endpoint=endpoint)
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8")
    if card is not None:
        text = _refresh_header(readme, text, card_data(card).to_dict())
    for placeholder in PLACEHOLDER_URIS:
        text = text.replace(placeholder, placeholder.replace("ORG/NAME", repo_id))
    return text


_YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")


#: header keys zoo fills in only where the user set none: the base's license is a default for a
#: derivative, not a fact about it (the base model, the metrics, the library and tags are facts)
_USER_MAY_SET = ("license",)


def _refresh_header(readme: Path, text: str, fresh: dict) -> str:
    """``text`` with its YAML metadata header replaced by the user's keys updated with ``fresh``
    (tags: the user's, then zoo's that are missing; :data:`_USER_MAY_SET`: the user's if set); the
    body is left as it is."""
    import yaml  # lazy: huggingface_hub's own dependency, only when an edited README is published
    from huggingface_hub import ModelCardData

    match = _YAML_BLOCK.search(text)
    body = text[match.end():] if match else text
    try:
        user = (yaml.safe_load(match.group(2)) if match else None) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{readme}: its metadata header is not YAML ({str(exc).splitlines()[0]}); fix it, "
                         "or delete README.md and zoo renders one from card.toml") from None
    if not isinstance(user, dict):
        raise UsageError(f"{readme}: its metadata header is not a table of keys; fix it, or delete README.md")
    tags = [*(user.get("tags") or []), *(t for t in fresh.get("tags", []) if t not in (user.get("tags") or []))]
    defaults = {k: fresh.pop(k) for k in _USER_MAY_SET if k in fresh}
    header = ModelCardData(**{**defaults, **user, **fresh, "tags": tags}).to_yaml()
    return f"---\n{header}\n---\n{body}" if match else f"---\n{header}\n---\n\n{body}"

