"""Publishing runs to a hub and loading them back (zoo/transfer/publish.py), end to end against `zoo serve`
on loopback with the stock huggingface_hub client (no mocks): the README rendered for the repo, no commit
for an unchanged run, merged exports loaded by zoo and by stock timm."""

import shutil

import pytest
import torch

import zoo
from zoo.transfer.runs import RUN_FILES, read_run

from conftest import TOKEN, hub_client, run_zoo, zoo_cli

LOAD_AND_PREDICT = """
import json, sys, torch, zoo
from zoo.model.images import open_rgb
model = zoo.load({uri!r})
tf = zoo.transforms(model)
with torch.inference_mode():
    logits = model(torch.stack([tf(open_rgb(p)) for p in {files!r}]))
torch.save(logits, {out!r})
print(json.dumps({{"classes": model.class_names, "base": model.weights_sha256}}))
"""


def _files(digits_folder):
    return [str(p) for p in sorted(digits_folder.glob("*/*.png"))[::300]]


@pytest.mark.slow  # publish, then a fresh home pulls run and base (~12 s); the README and no-op publish tests stay quick
def test_publish_then_load_from_an_empty_home_gives_identical_predictions(small_run, digits_folder, hub_rw,
                                                                          tmp_path):
    run, _ = small_run
    r = run_zoo("publish", str(run), "--repo", "zootest/digits", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    from huggingface_hub import HfApi

    files = HfApi(endpoint=hub_rw.url).list_repo_files("zootest/digits")
    assert sorted(files) == sorted(RUN_FILES)  # the run's files only: never the base weights
    # a second machine: empty ZOO_HOME and HF cache, only the hub's address
    out = tmp_path / "logits.pt"
    code = LOAD_AND_PREDICT.format(uri="hf://zootest/digits", files=_files(digits_folder), out=str(out))
    info = hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(tmp_path / "fresh"))
    assert info["classes"] == [str(i) for i in range(10)]
    assert info["base"] == zoo.card("efficientnet_lite0").sha256
    here = zoo.load(run)
    tf = zoo.transforms(here)
    from zoo.model.images import open_rgb

    with torch.inference_mode():
        expected = here(torch.stack([tf(open_rgb(p)) for p in _files(digits_folder)]))
    assert torch.equal(torch.load(out, weights_only=True), expected)
    # and offline from the run cache it filled, with `zoo pull` filling it the same way
    again = hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(tmp_path / "fresh"), ZOO_OFFLINE="1")
    assert again == info
    pulled = run_zoo("pull", "hf://zootest/digits", env={"ZOO_HOME": str(tmp_path / "other"), "HF_ENDPOINT": hub_rw.url})
    assert pulled.returncode == 0 and "base weights" in pulled.stdout, pulled.stderr
    # one protocol: huggingface_hub's own bars are silenced, zoo's summaries say what was fetched
    lines = pulled.stderr.splitlines()
    assert any(l.startswith("fetch hf://zootest/digits: 4 files in") for l in lines), pulled.stderr
    assert any(l.startswith("tf_efficientnet_lite0.bundled_in1k from ") for l in lines), pulled.stderr
    assert "it/s" not in pulled.stderr and "Fetching" not in pulled.stderr, pulled.stderr


def test_a_modified_run_or_a_wrong_token_is_refused(small_run, hub_rw, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(small_run[0], run)
    r = zoo_cli(capsys, "publish", str(run), "--repo", "zootest/x", "--endpoint", hub_rw.url, "--token", "wrong")
    assert r.returncode == 1 and "--token" in r.stderr and "Traceback" not in r.stderr
    card = (run / "card.toml").read_text()
    (run / "card.toml").write_text(card.replace('strategy = "head"', 'strategy = "full"', 1))
    r = zoo_cli(capsys, "publish", str(run), "--repo", "zootest/x", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 1 and "card.toml was changed after the run was written" in r.stderr
    (run / "card.toml").write_text(card)
    data = bytearray((run / "metrics.json").read_bytes())
    (run / "metrics.json").write_bytes(bytes(data.replace(b'"val_accuracy": 0.', b'"val_accuracy": 1.', 1)))
    r = zoo_cli(capsys, "publish", str(run), "--repo", "zootest/x", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 1 and "metrics.json was changed after the run was written" in r.stderr
    assert "zootest/x" not in hub_rw.stats_full()["repos"]  # refused before the hub was asked anything
    monkeypatch.setenv("HF_ENDPOINT", hub_rw.url)
    r = zoo_cli(capsys, "predict", "hf://zootest/nothing-here", str(run / "card.toml"))
    assert r.returncode == 1 and "zootest/nothing-here" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # ~8 s; the publish round trip above stays quick
def test_merged_export_loads_in_stock_timm_from_the_hub(small_run, digits_folder, hub_rw, tmp_path):
    run, _ = small_run
    merged = tmp_path / "merged"
    assert run_zoo("export", str(run), "--merged", str(merged)).returncode == 0
    # 18 MB: over the 10 MB of an inline upload, so this goes through Xet to the zoo hub, with stock defaults
    r = run_zoo("publish", str(merged), "--repo", "zootest/digits-merged", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "timm.pt"
    code = f"""
import json, timm, torch
from PIL import Image
model = timm.create_model("hf-hub:zootest/digits-merged", pretrained=True).eval()
cfg = timm.data.resolve_data_config({{}}, model=model)
tf = timm.data.create_transform(**cfg)
with torch.inference_mode():
    logits = model(torch.stack([tf(Image.open(p).convert("RGB")) for p in {_files(digits_folder)!r}]))
torch.save(logits, {str(out)!r})
print(json.dumps({{"labels": model.pretrained_cfg.get("label_names"), "zoo": "zoo" in __import__("sys").modules}}))
"""
    info = hub_client(hub_rw, code, tmp_path)
    assert info["zoo"] is False
    model = zoo.load(run)
    tf = zoo.transforms(model)
    from zoo.model.images import open_rgb

    with torch.inference_mode():
        expected = model(torch.stack([tf(open_rgb(p)) for p in _files(digits_folder)]))
    assert torch.allclose(torch.load(out, weights_only=True), expected, atol=1e-5)
    # and zoo.load of the published export, from an empty home: the run's logits exactly, with its class names
    code = LOAD_AND_PREDICT.format(uri="hf://zootest/digits-merged", files=_files(digits_folder),
                                   out=str(tmp_path / "zoo.pt"))
    info = hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(tmp_path / "fresh"))
    assert info["classes"] == [str(i) for i in range(10)]
    from zoo.util.hashing import sha256_file

    assert info["base"] == sha256_file(merged / "model.safetensors")
    assert torch.equal(torch.load(tmp_path / "zoo.pt", weights_only=True), expected)
    again = hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(tmp_path / "fresh"), ZOO_OFFLINE="1")
    assert again == info  # offline, from the run cache it filled


def _commits(hub, repo_id):
    from huggingface_hub import HfApi

    return [c.commit_id for c in HfApi(endpoint=hub.url).list_repo_commits(repo_id)]


def test_the_readme_is_rendered_for_its_repo_and_an_unchanged_run_makes_no_commit(small_run, hub_rw, tmp_path):
    from huggingface_hub import HfApi

    from zoo.transfer.publish import publish

    run = tmp_path / "run"
    shutil.copytree(small_run[0], run)
    assert 'zoo.load("hf://ORG/NAME")' in (run / "README.md").read_text()  # no repo yet: the placeholder
    first = publish(run, "zootest/cards", endpoint=hub_rw.url, token=TOKEN)
    assert first.changed == ("README.md", "card.toml", "head.safetensors", "metrics.json")
    HfApi(endpoint=hub_rw.url).hf_hub_download("zootest/cards", "README.md", local_dir=tmp_path / "dl")
    readme = (tmp_path / "dl" / "README.md").read_text()
    assert 'zoo.load("hf://zootest/cards")' in readme and "ORG/NAME" not in readme
    assert f"[`tf_efficientnet_lite0.bundled_in1k`]({hub_rw.url}/timm/tf_efficientnet_lite0.in1k)" in readme
    assert f"set `HF_ENDPOINT={hub_rw.url}` before loading it" in readme
    assert (run / "README.md").read_text() != readme  # the run's own README is left as it was
    # the same run again: the hub holds every file already, so no commit (zoo serve would make an empty one)
    history = _commits(hub_rw, "zootest/cards")
    assert history[0] == first.commit
    again = publish(run, "zootest/cards", endpoint=hub_rw.url, token=TOKEN)
    assert again.changed == () and again.commit == first.commit
    assert _commits(hub_rw, "zootest/cards") == history
    r = run_zoo("publish", str(run), "--repo", "zootest/cards", "--endpoint", hub_rw.url, "--token", TOKEN)
    assert r.returncode == 0 and f"unchanged since commit {first.commit[:12]}: no new commit" in " ".join(r.stdout.split())
    assert _commits(hub_rw, "zootest/cards") == history
    # the user's prose is published as written; the header is refreshed from card.toml
    (run / "README.md").write_text("---\ntags:\n- handwriting\nlicense: mit\n---\n# Digits\n\nMy own words. "
                                   'Load it: `zoo.load("hf://ORG/NAME")`.\n')
    assert zoo.load(run).class_names == [str(i) for i in range(10)]  # an edited README keeps the run loadable
    edited = publish(run, "zootest/cards", endpoint=hub_rw.url, token=TOKEN)
    assert edited.changed == ("README.md",) and _commits(hub_rw, "zootest/cards") == [edited.commit, *history]
    HfApi(endpoint=hub_rw.url).hf_hub_download("zootest/cards", "README.md", local_dir=tmp_path / "dl2")
    text = (tmp_path / "dl2" / "README.md").read_text()
    assert text.endswith('# Digits\n\nMy own words. Load it: `zoo.load("hf://zootest/cards")`.\n')
    from huggingface_hub import ModelCard

    header = ModelCard(text).data
    assert header.tags[0] == "handwriting" and "transfer-learning" in header.tags
    assert header.base_model == "timm/tf_efficientnet_lite0.in1k" and header.license == "mit"  # the user's choice
    assert header.eval_results[0].metric_value == read_run(run).metrics["val_accuracy"]


def test_a_head_tried_on_a_branch_reviewed_as_a_pull_request_merged_and_tagged(small_run, small_home, hub_rw, tmp_path):
    """The team workflow on a self-hosted hub: publish to a branch (main untouched), open a pull
    request, merge it with the stock client, tag the release; each revision loads by its URI."""
    from huggingface_hub import HfApi

    from zoo.errors import PublishError
    from zoo.transfer.publish import publish

    api = HfApi(endpoint=hub_rw.url, token=TOKEN)
    api.create_repo("zootest/team")
    api.upload_file(path_or_fileobj=b"# team heads\n", path_in_repo="NOTES.md", repo_id="zootest/team")
    trial = publish(small_run[0], "zootest/team", endpoint=hub_rw.url, token=TOKEN, branch="try/digits")
    assert trial.revision == "try/digits" and trial.uri == "hf://zootest/team@try%2Fdigits"
    assert api.list_repo_files("zootest/team") == ["NOTES.md"]  # main untouched
    assert sorted(api.list_repo_files("zootest/team", revision="try/digits")) == sorted(["NOTES.md", *RUN_FILES])
    r = run_zoo("publish", str(small_run[0]), "--repo", "zootest/team", "--endpoint", hub_rw.url, "--token", TOKEN,
                "--create-pr")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "(refs/pr/1)" in out and "zoo.load('hf://zootest/team@refs%2Fpr%2F1')" in out
    assert f"pull request for review: {hub_rw.url}/zootest/team/discussions/1" in out
    assert api.get_discussion_details("zootest/team", 1).status == "open"
    assert api.list_repo_files("zootest/team") == ["NOTES.md"]  # still: the pull request waits for review
    api.merge_pull_request("zootest/team", 1)
    release = publish(small_run[0], "zootest/team", endpoint=hub_rw.url, token=TOKEN, tag="v1")
    assert release.changed == () and release.tag == "v1"  # merged already: nothing to commit, the tag is set
    refs = api.list_repo_refs("zootest/team")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", release.commit)]
    with pytest.raises(PublishError, match="tag v1 of zootest/team names commit"):
        api.upload_file(path_or_fileobj=b"# more\n", path_in_repo="NOTES.md", repo_id="zootest/team")
        publish(small_run[0], "zootest/team", endpoint=hub_rw.url, token=TOKEN, tag="v1")
    with pytest.raises(zoo.UsageError, match="tag the release once the pull request is merged"):
        publish(small_run[0], "zootest/team", endpoint=hub_rw.url, token=TOKEN, tag="v2", create_pr=True)
    code = ("import json, zoo\n"
            "print(json.dumps([zoo.load(u).class_names for u in ['hf://zootest/team@v1', 'hf://zootest/team@refs%2Fpr%2F1']]))")
    # the base is in small_home already: this fetches the two revisions of the run only
    assert hub_client(hub_rw, code, tmp_path, ZOO_HOME=str(small_home)) == [[str(i) for i in range(10)]] * 2
