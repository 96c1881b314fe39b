"""The whole hub API through the stock huggingface_hub client in a subprocess, on the local store and
on ``--storage s3://`` (SeaweedFS): refs, commits, pull requests, repo admin, datasets and cards
(zoo/hub/read.py, write.py, admin.py, threads.py, cards.py over zoo/store/repos.py, discussions.py).

Every refusal is checked as the typed error the client raises for it."""

import json
import uuid

import pytest

from conftest import TOKEN, HubServer, hub_client

ALICE, READER = "alice-token", "reader-token"

#: a helper every client script starts with: the name of the error a call raises (and its status)
PRELUDE = f"""
import json, os, hashlib
from huggingface_hub import (HfApi, HfFileSystem, hf_hub_download, CommitOperationAdd, CommitOperationCopy,
                             CommitOperationDelete, ModelCard, DatasetCard)
api = HfApi(token={TOKEN!r})
anon = HfApi(token=False)

def err(fn, *a, **k):
    try:
        fn(*a, **k)
    except Exception as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        return type(e).__name__ + (f":{{status}}" if status else "")
    return None
"""


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def api_hub(request, tmp_path_factory):
    """One server per store for the module (each test uses its own repo names): TOKEN writes
    everything, ALICE writes alice/* only, READER reads private repos and writes nothing."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n{ALICE} user=alice repos=alice/*\n{READER} user=ci role=read\n")
    extra, env = [], None
    if request.param == "s3":
        seaweed = request.getfixturevalue("seaweed")
        extra, env = ["--storage", f"s3://{seaweed.bucket()}/api-{uuid.uuid4().hex[:8]}"], seaweed.env
    server = HubServer(tmp_path_factory.mktemp("api"), "--token-file", str(tokens), *extra, env=env)
    yield server
    server.stop()


def run(hub, code: str, tmp_path, **env):
    return hub_client(hub, PRELUDE + code, tmp_path, HF_HUB_DISABLE_XET="1", **env)


def test_branches_tags_and_every_read_at_any_revision(api_hub, tmp_path):
    got = run(api_hub, """
r = "acme/refs"
api.create_repo(r)
c1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="w.txt", repo_id=r).oid
api.create_branch(r, branch="dev")
api.create_branch(r, branch="old", revision=c1)
c2 = api.upload_file(path_or_fileobj=b"dev", path_in_repo="sub/w.txt", repo_id=r, revision="dev").oid
api.create_tag(r, tag="v1.0", revision="dev", tag_message="release")
api.create_branch(r, branch="feature/x", revision="v1.0")
refs = api.list_repo_refs(r)
out = {
    "branches": sorted((b.name, b.target_commit) for b in refs.branches),
    "tags": [(t.name, t.ref, t.target_commit) for t in refs.tags],
    "dev_file": open(hf_hub_download(r, "sub/w.txt", revision="dev"), "rb").read().decode(),
    "tag_file": open(hf_hub_download(r, "sub/w.txt", revision="v1.0"), "rb").read().decode(),
    "slash_branch": open(hf_hub_download(r, "sub/w.txt", revision="feature/x"), "rb").read().decode(),
    "short_sha": api.model_info(r, revision=c2[:7]).sha,
    "info_dev": api.model_info(r, revision="dev").sha,
    "files_old": api.list_repo_files(r, revision="old"),
    "tree_tag": sorted(e.path for e in api.list_repo_tree(r, revision="v1.0", recursive=True)),
    "commits_dev": [c.title for c in api.list_repo_commits(r, revision="dev")],
    "fs_dev": HfFileSystem(token=False).cat(f"{r}@dev/sub/w.txt").decode(),
    "main_untouched": api.list_repo_files(r),
    "branch_twice": err(api.create_branch, r, branch="dev"),
    "branch_twice_ok": err(api.create_branch, r, branch="dev", exist_ok=True),
    "tag_twice": err(api.create_tag, r, tag="v1.0"),
    "bad_branch": err(api.create_branch, r, branch="bad..name"),
    "unknown_start": err(api.create_branch, r, branch="x", revision="nope"),
    "commit_to_tag": err(api.upload_file, path_or_fileobj=b"x", path_in_repo="t", repo_id=r, revision="v1.0"),
    "commit_to_missing_branch": err(api.upload_file, path_or_fileobj=b"x", path_in_repo="t", repo_id=r, revision="nope"),
    "delete_main": err(api.delete_branch, r, branch="main"),
    "exists": [api.repo_exists(r), api.repo_exists("acme/nope"), api.revision_exists(r, "dev"),
               api.revision_exists(r, "nope"), api.file_exists(r, "sub/w.txt", revision="v1.0"),
               api.file_exists(r, "sub/w.txt"), api.file_exists(r, "w.txt", revision=c1)],
    "tree_expanded": sorted(e.path for e in api.list_repo_tree(r, revision="dev", expand=True)),
}
api.delete_tag(r, tag="v1.0")
api.delete_branch(r, branch="old")
out["after_delete"] = [[b.name for b in api.list_repo_refs(r).branches], [t.name for t in api.list_repo_refs(r).tags]]
out["gone_tag"] = err(api.model_info, r, revision="v1.0")
out["gone_branch_download"] = err(hf_hub_download, r, "w.txt", revision="old", cache_dir=os.path.join(os.environ["HF_HOME"], "c2"))
out["delete_gone_tag"] = err(api.delete_tag, r, tag="v1.0")
import subprocess, sys
hf = os.path.join(os.path.dirname(sys.executable), "hf")  # the hf CLI creates the branch it uploads to
local = os.path.join(os.environ["HF_HOME"], "cli.txt")
open(local, "w").write("from the cli")
subprocess.run([hf, "upload", r, local, "cli.txt", "--revision", "cli/branch", "--token", api.token], check=True,
               capture_output=True)
out["cli"] = open(hf_hub_download(r, "cli.txt", revision="cli/branch"), "rb").read().decode()
out["c1"], out["c2"] = c1, c2
print(json.dumps(out))
""", tmp_path)
    c1, c2 = got["c1"], got["c2"]
    assert got["branches"] == [["dev", c2], ["feature/x", c2], ["main", c1], ["old", c1]]
    assert got["tags"] == [["v1.0", "refs/tags/v1.0", c2]]
    assert got["dev_file"] == got["tag_file"] == got["slash_branch"] == got["fs_dev"] == "dev"
    assert got["short_sha"] == got["info_dev"] == c2
    assert got["files_old"] == got["main_untouched"] == ["w.txt"] and got["tree_tag"] == ["sub", "sub/w.txt", "w.txt"]
    assert got["commits_dev"][0] == "Upload sub/w.txt with huggingface_hub" and len(got["commits_dev"]) == 3
    assert got["branch_twice"] == got["tag_twice"] == "HfHubHTTPError:409" and got["branch_twice_ok"] is None
    assert got["bad_branch"] == "BadRequestError:400" and got["commit_to_tag"] == "BadRequestError:400"
    assert got["unknown_start"] == got["commit_to_missing_branch"] == "RevisionNotFoundError:404"
    assert got["delete_main"] == "BadRequestError:400"
    assert got["exists"] == [True, False, True, False, True, False, True]
    assert got["tree_expanded"] == ["sub", "w.txt"]
    assert got["after_delete"] == [["dev", "feature/x", "main"], []]
    assert got["cli"] == "from the cli"
    assert got["gone_tag"] == got["gone_branch_download"] == got["delete_gone_tag"] == "RevisionNotFoundError:404"


def test_paths_info_copies_conflicts_and_super_squash(api_hub, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(uuid.uuid4().bytes * (11 * 1024 * 1024 // 16))  # over 10 MB: an LFS file
    got = run(api_hub, f"""
r = "acme/ops"
api.create_repo(r)
api.create_commit(r, operations=[CommitOperationAdd("weights/big.bin", {str(big)!r}),
                                 CommitOperationAdd("cfg/a.json", b'{{"a": 1}}'),
                                 CommitOperationAdd("cfg/deep/b.json", b'{{}}')], commit_message="first")
head = api.model_info(r).sha
nested = [e.path for e in api.list_repo_tree(r, path_in_repo="cfg/deep")]  # the client quotes it whole: cfg%2Fdeep
info = api.get_paths_info(r, ["cfg", "cfg/a.json", "weights/big.bin", "missing.txt"])
c = api.create_commit(r, operations=[CommitOperationCopy("weights/big.bin", "copy/big.bin"),
                                     CommitOperationCopy("cfg/a.json", "copy/a.json"),
                                     CommitOperationDelete("cfg/")], commit_message="copies")
fs = HfFileSystem(token={TOKEN!r})
fs.cp(f"{{r}}/copy/a.json", f"{{r}}/fs/a.json")
files = api.list_repo_files(r)
infos = {{s.rfilename: (s.size, s.lfs.sha256 if s.lfs else None) for s in api.model_info(r, files_metadata=True).siblings}}
stale = err(api.create_commit, r, operations=[CommitOperationAdd("x", b"x")], commit_message="late", parent_commit=head)
before = [x.commit_id for x in api.list_repo_commits(r)]
api.super_squash_history(r, commit_message="squashed")
after = api.list_repo_commits(r)
print(json.dumps({{"nested": nested, "info": [(type(i).__name__, i.path, getattr(i, "size", None), bool(getattr(i, "lfs", None))) for i in info],
                  "files": files, "infos": infos, "stale": stale, "before": len(before),
                  "after": [(x.title, x.commit_id) for x in after], "files_after": api.list_repo_files(r),
                  "old_commit": open(hf_hub_download(r, "cfg/a.json", revision=head), "rb").read().decode(),
                  "copy_bytes": hashlib.sha256(open(hf_hub_download(r, "copy/big.bin"), "rb").read()).hexdigest()}}))
""", tmp_path)
    sha = __import__("hashlib").sha256(big.read_bytes()).hexdigest()
    assert got["nested"] == ["cfg/deep/b.json"]
    assert got["info"] == [["RepoFolder", "cfg", None, False], ["RepoFile", "cfg/a.json", 8, False],
                           ["RepoFile", "weights/big.bin", big.stat().st_size, True]]
    assert got["files"] == ["copy/a.json", "copy/big.bin", "fs/a.json", "weights/big.bin"]
    assert got["infos"]["copy/big.bin"] == got["infos"]["weights/big.bin"] == [big.stat().st_size, sha]
    assert got["copy_bytes"] == sha
    assert got["stale"] == "HfHubHTTPError:409"
    assert got["before"] == 4 and len(got["after"]) == 1 and got["after"][0][0] == "squashed"
    assert got["files_after"] == got["files"]
    assert got["old_commit"] == '{"a": 1}'  # a squashed-away commit still resolves by id


def test_pull_requests_review_merge_and_conflicts(api_hub, tmp_path):
    got = run(api_hub, """
r = "acme/prs"
api.create_repo(r)
base = api.upload_file(path_or_fileobj=b'{"lr": 0.1}', path_in_repo="config.json", repo_id=r).oid
pr = api.create_commit(r, operations=[CommitOperationAdd("head.safetensors", b"new head")],
                       commit_message="A new head", commit_description="trained on digits", create_pr=True)
main_during = api.list_repo_files(r)
pr_file = open(hf_hub_download(r, "head.safetensors", revision=pr.pr_revision), "rb").read().decode()
second = api.create_commit(r, operations=[CommitOperationAdd("notes.md", b"more\\n")], commit_message="notes",
                           revision=pr.pr_revision)
api.upload_file(path_or_fileobj=b"main moved", path_in_repo="other.txt", repo_id=r)  # main moves meanwhile
said = api.comment_discussion(r, pr.pr_num, "looks god")
fixed = api.edit_discussion_comment(r, pr.pr_num, said.id, "looks good")
noise = api.comment_discussion(r, pr.pr_num, "spam")
hidden = api.hide_discussion_comment(r, pr.pr_num, noise.id)
edit_hidden = err(api.edit_discussion_comment, r, pr.pr_num, noise.id, "sneaky")
details = api.get_discussion_details(r, pr.pr_num)
comments = [(e.content, e.edited, e.hidden) for e in details.events if e.type == "comment"][1:]
refs = api.list_repo_refs(r, include_pull_requests=True)
api.merge_pull_request(r, pr.pr_num, comment="merging")
merged = api.get_discussion_details(r, pr.pr_num)
merge_sha = api.model_info(r).sha
history = [x.title for x in api.list_repo_commits(r)][:3]
after_merge = api.list_repo_files(r)
push_merged = err(api.create_commit, r, operations=[CommitOperationAdd("late", b"x")], commit_message="late",
                  revision=pr.pr_revision)
# a conflict: the pull request and main both change config.json
c = api.create_commit(r, operations=[CommitOperationAdd("config.json", b'{"lr": 0.01}')], commit_message="lower lr",
                      create_pr=True)
api.upload_file(path_or_fileobj=b'{"lr": 0.5}', path_in_repo="config.json", repo_id=r)
conflicts = api.get_discussion_details(r, c.pr_num).conflicting_files
merge_conflict = err(api.merge_pull_request, r, c.pr_num)
api.change_discussion_status(r, c.pr_num, "closed", comment="superseded")
# a plain discussion, and an empty pull request filled afterwards
d = api.create_discussion(r, "Which dataset?", description="asking")
api.rename_discussion(r, d.num, "Which dataset was it?")
api.change_discussion_status(r, d.num, "closed")
empty = api.create_pull_request(r, "draft head")
api.create_commit(r, operations=[CommitOperationAdd("draft.txt", b"d")], commit_message="fill", revision=empty.git_reference)
listed = [(x.num, x.title, x.status, x.is_pull_request) for x in api.get_repo_discussions(r)]
only_open_prs = [x.num for x in api.get_repo_discussions(r, discussion_type="pull_request", discussion_status="open")]
print(json.dumps({"pr": [pr.pr_num, pr.pr_revision, pr.pr_url.endswith(f"/{r}/discussions/1")], "main_during": main_during,
    "pr_file": pr_file, "edit": [fixed.content, fixed.edited, len(fixed.edit_history), hidden.hidden, edit_hidden], "comments": comments,
    "details": [details.title, details.status, details.target_branch, details.is_pull_request,
    details.conflicting_files, [e.type for e in details.events], "+more" in details.diff, "b/head.safetensors" in details.diff],
    "refs_pr": [(p.name, p.ref, p.target_commit == second.oid) for p in refs.pull_requests],
    "merged": [merged.status, merged.merge_commit_oid == merge_sha], "after_merge": after_merge,
    "history": history, "push_merged": push_merged,
    "conflicts": conflicts, "merge_conflict": merge_conflict, "config_kept": open(hf_hub_download(r, "config.json"), "rb").read().decode(),
    "listed": listed, "only_open_prs": only_open_prs,
    "missing_discussion": err(api.get_discussion_details, r, 99), "comment_missing": err(api.comment_discussion, r, 99, "x")}))
""", tmp_path)
    assert got["pr"] == [1, "refs/pr/1", True]
    assert got["main_during"] == ["config.json"] and got["pr_file"] == "new head"
    title, status, target, is_pr, conflicts, events, diff_text, diff_lfs = got["details"]
    assert (title, status, target, is_pr, conflicts) == ("A new head", "open", "refs/heads/main", True, [])
    assert events == ["comment", "commit", "commit", "comment", "comment"] and diff_text and diff_lfs
    assert got["edit"] == ["looks good", True, 2, True, "HfHubHTTPError:409"]
    assert got["comments"] == [["looks good", True, False], ["", False, True]]  # a hidden comment keeps no text
    assert got["refs_pr"] == [["1", "refs/pr/1", True]]
    assert got["merged"] == ["merged", True]
    assert got["after_merge"] == ["config.json", "head.safetensors", "notes.md", "other.txt"]
    assert got["history"][0] == "Merge pull request #1: A new head"
    assert got["push_merged"] == "HfHubHTTPError:409"
    assert got["conflicts"] == ["config.json"] and got["merge_conflict"] == "HfHubHTTPError:409"
    assert got["config_kept"] == '{"lr": 0.5}'
    assert got["listed"] == [[4, "draft head", "open", True], [3, "Which dataset was it?", "closed", False],
                             [2, "lower lr", "closed", True], [1, "A new head", "merged", True]]
    assert got["only_open_prs"] == [4]
    assert got["missing_discussion"] == got["comment_missing"] == "HfHubHTTPError:404"


def test_repo_admin_private_gated_move_duplicate_delete(api_hub, tmp_path):
    got = run(api_hub, f"""
r = "acme/admin"
api.create_repo(r)
api.upload_file(path_or_fileobj=b"w", path_in_repo="w.bin", repo_id=r)
api.create_discussion(r, "kept through the move")
api.update_repo_settings(r, private=True)
reader = HfApi(token={READER!r})
alice = HfApi(token={ALICE!r})
cache = lambda n: os.path.join(os.environ["HF_HOME"], n)
out = {{"private_anon": [err(anon.model_info, r), err(hf_hub_download, r, "w.bin", token=False, cache_dir=cache("a")),
                         err(anon.list_repo_refs, r), err(anon.list_repo_commits, r), err(anon.get_paths_info, r, ["w.bin"]),
                         err(lambda: list(anon.list_repo_tree(r))), err(lambda: list(anon.get_repo_discussions(r))),
                         err(anon.auth_check, r)],
       "private_listed": [r in [m.id for m in anon.list_models(author="acme")], r in [m.id for m in api.list_models(author="acme")]],
       "private_reader": [reader.model_info(r).private, err(reader.auth_check, r)],
       "reader_write": err(reader.upload_file, path_or_fileobj=b"x", path_in_repo="x", repo_id=r),
       "alice_other_ns": [err(alice.create_repo, "acme/hers"), err(alice.auth_check, r, write=True)]}}
alice.create_repo("hers")  # no namespace: her own
out["alice"] = [alice.whoami()["name"], alice.model_info("alice/hers").id, err(alice.auth_check, "alice/hers", write=True)]
api.update_repo_settings(r, private=False, gated="auto")
out["gated"] = [anon.model_info(r).gated, err(hf_hub_download, r, "w.bin", token=False, cache_dir=cache("b")),
                err(anon.auth_check, r), err(api.auth_check, r),
                open(hf_hub_download(r, "w.bin", token={TOKEN!r}, cache_dir=cache("c")), "rb").read().decode()]
api.update_repo_settings(r, gated=False)
api.move_repo(r, "team/moved")
out["moved"] = [err(api.model_info, r), api.list_repo_files("team/moved"), len(api.list_repo_commits("team/moved")),
                [d.title for d in api.get_repo_discussions("team/moved")]]
out["move_onto_existing"] = err(api.move_repo, "team/moved", "alice/hers")
dup = api.duplicate_repo("team/moved", "team/copy", private=True)
out["dup"] = [dup.repo_id, api.list_repo_files("team/copy"), api.model_info("team/copy").private,
              [c.title for c in api.list_repo_commits("team/copy")][0], err(api.duplicate_repo, "team/moved", "team/copy")]
api.delete_repo("team/copy")
out["deleted"] = [err(api.model_info, "team/copy"), err(api.delete_repo, "team/copy"),
                  err(api.delete_repo, "team/copy", missing_ok=True), err(alice.delete_repo, "team/moved"),
                  err(HfApi(token="wrong").delete_repo, "team/moved"), api.list_repo_files("team/moved")]
print(json.dumps(out))
""", tmp_path)
    nf = "RepositoryNotFoundError:404"
    assert got["private_anon"] == [nf] * 8
    assert got["private_listed"] == [False, True]
    assert got["private_reader"] == [True, None]
    assert got["reader_write"] == "HfHubHTTPError:403"
    assert got["alice_other_ns"] == ["HfHubHTTPError:403", nf]  # a private repo she may not read: as if absent
    assert got["alice"] == ["alice", "alice/hers", None]
    assert got["gated"] == ["auto", "GatedRepoError:401", "GatedRepoError:401", None, "w"]
    assert got["moved"] == [nf, ["w.bin"], 2, ["kept through the move"]]
    assert got["move_onto_existing"] == "HfHubHTTPError:409"
    assert got["dup"] == ["team/copy", ["w.bin"], True, "Duplicate from team/moved", "HfHubHTTPError:409"]
    assert got["deleted"] == [nf, nf, None, "HfHubHTTPError:403", "HfHubHTTPError:401", ["w.bin"]]


def test_dataset_repos_and_typed_errors_for_what_is_missing(api_hub, tmp_path):
    got = run(api_hub, """
r = "acme/digits-csv"
api.create_repo(r, repo_type="dataset")
DatasetCard("---\\nlicense: cc-by-4.0\\ntags: [tabular]\\npretty_name: Digits\\n---\\n# Digits\\n").push_to_hub(r, token=api.token)
api.upload_folder(repo_id=r, repo_type="dataset", folder_path=os.environ["DATA"], path_in_repo="data")
api.create_branch(r, repo_type="dataset", branch="v2")
api.upload_file(path_or_fileobj=b"x,y\\n", path_in_repo="data/extra.csv", repo_id=r, repo_type="dataset", revision="v2")
fs = HfFileSystem(token=False)
info = api.dataset_info(r)
cache = lambda n: os.path.join(os.environ["HF_HOME"], n)
print(json.dumps({
    "info": [info.id, info.card_data.get("pretty_name"), info.tags, sorted(s.rfilename for s in info.siblings)],
    "listed": [d.id for d in anon.list_datasets(search="digits")], "models_do_not_list_it": [m.id for m in anon.list_models(search="digits")],
    "download": open(hf_hub_download(r, "data/train.csv", repo_type="dataset"), "rb").read().decode(),
    "fs": [fs.ls(f"datasets/{r}/data", detail=False), fs.glob(f"datasets/{r}@v2/data/*.csv"),
           fs.cat(f"datasets/{r}/data/train.csv").decode()],
    "refs": [b.name for b in api.list_repo_refs(r, repo_type="dataset").branches],
    "card": DatasetCard.load(r, repo_type="dataset").data.license,
    "missing_file": err(hf_hub_download, r, "nope.csv", repo_type="dataset", cache_dir=cache("a")),
    "missing_repo": err(hf_hub_download, "acme/nope", "x.csv", repo_type="dataset", cache_dir=cache("b")),
    "missing_model_file": err(hf_hub_download, "acme/nope", "x", cache_dir=cache("c")),
    "missing_revision": err(hf_hub_download, r, "data/train.csv", repo_type="dataset", revision="v9", cache_dir=cache("d")),
    "dataset_as_model": err(api.model_info, r),
    "space_create": err(api.create_repo, "acme/app", repo_type="space", space_sdk="gradio"),
    "space_info": err(api.space_info, "acme/app"),
    "unknown_api": err(lambda: list(api.list_repo_likers(r, repo_type="dataset"))),
    "lfs": [api.upload_file(path_or_fileobj=os.environ["BIG"], path_in_repo="big.bin", repo_id=r, repo_type="dataset") and None,
            [s.lfs.sha256 for s in api.dataset_info(r, files_metadata=True).siblings if s.rfilename == "big.bin"],
            hashlib.sha256(open(hf_hub_download(r, "big.bin", repo_type="dataset"), "rb").read()).hexdigest()],
}))
""", tmp_path, DATA=str(_csv_folder(tmp_path)), BIG=str(_big_file(tmp_path)))
    assert got["info"][:3] == ["acme/digits-csv", "Digits", ["tabular", "license:cc-by-4.0"]]
    assert got["info"][3] == ["README.md", "data/test.csv", "data/train.csv"]
    assert got["listed"] == ["acme/digits-csv"] and got["models_do_not_list_it"] == []
    assert got["download"] == "pixel,label\n0,3\n"
    fs_ls, fs_glob, fs_cat = got["fs"]
    assert fs_ls == [f"datasets/acme/digits-csv/data/{n}" for n in ("test.csv", "train.csv")]
    assert sorted(fs_glob) == [f"datasets/acme/digits-csv@v2/data/{n}" for n in ("extra.csv", "test.csv", "train.csv")]
    assert fs_cat == "pixel,label\n0,3\n" and got["refs"] == ["main", "v2"] and got["card"] == "cc-by-4.0"
    assert got["missing_file"] == "RemoteEntryNotFoundError:404"
    assert got["missing_repo"] == got["missing_model_file"] == got["dataset_as_model"] == "RepositoryNotFoundError:404"
    assert got["missing_revision"] == "RevisionNotFoundError:404"
    assert got["space_create"] == "BadRequestError:400" and got["space_info"] == "RepositoryNotFoundError:404"
    assert got["unknown_api"] == "HfHubHTTPError:404"
    big = __import__("hashlib").sha256(_big_file(tmp_path).read_bytes()).hexdigest()
    assert got["lfs"] == [None, [big], big]  # over 10 MB: the LFS batch API of a dataset repo


def _big_file(tmp_path):
    path = tmp_path / "big.bin"
    if not path.exists():
        path.write_bytes(uuid.uuid4().bytes * (10_600_000 // 16))
    return path


def _csv_folder(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "train.csv").write_text("pixel,label\n0,3\n")
    (folder / "test.csv").write_text("pixel,label\n1,4\n")
    return folder


def test_model_cards_round_trip_and_validate_without_a_token(api_hub, tmp_path):
    got = run(api_hub, """
r = "acme/carded"
api.create_repo(r)
card = ModelCard("---\\nlibrary_name: timm\\npipeline_tag: image-classification\\nlicense: apache-2.0\\n"
                 "tags: [transfer, digits]\\nbase_model: timm/tf_efficientnet_lite0.in1k\\n---\\n# A digits head\\n")
card.validate()  # posts to HF_ENDPOINT's validate-yaml, with no token
card.push_to_hub(r, token=api.token)
info = api.model_info(r)
loaded = ModelCard.load(r)
bad = ModelCard("---\\nlicense: 5\\n---\\n# x\\n")
wrong_type = ModelCard("---\\nlibrary_name: [a, b]\\n---\\n# x\\n")
print(json.dumps({"info": [info.library_name, info.pipeline_tag, info.tags, info.card_data["base_model"]],
                  "loaded": [loaded.data.license, loaded.text.strip()],
                  "filtered": [m.id for m in anon.list_models(filter="digits")],
                  "bad": err(bad.validate), "wrong_type": err(wrong_type.validate)}))
""", tmp_path)
    assert got["info"] == ["timm", "image-classification",
                           ["transfer", "digits", "timm", "image-classification", "license:apache-2.0"],
                           "timm/tf_efficientnet_lite0.in1k"]
    assert got["loaded"] == ["apache-2.0", "# A digits head"]
    assert got["filtered"] == ["acme/carded"]
    assert got["bad"] == got["wrong_type"] == "ValueError"


@pytest.mark.slow  # two servers on SeaweedFS
def test_writes_on_a_branch_and_merges_from_two_servers_lose_no_commit(seaweed, tmp_path_factory, tmp_path):
    """Two servers on one S3 store: two writers commit to one branch through different servers
    while pull requests are merged into it through both; every commit is in the branch's history."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    storage = f"s3://{seaweed.bucket()}/race-{uuid.uuid4().hex[:8]}"
    servers = [HubServer(tmp_path_factory.mktemp(f"race{i}"), "--storage", storage, "--token-file", str(tokens),
                         env=seaweed.env) for i in range(2)]
    try:
        got = run(servers[0], f"""
import threading
urls = {json.dumps([s.url for s in servers])}
apis = [HfApi(endpoint=u, token={TOKEN!r}) for u in urls]
r = "acme/race"
apis[0].create_repo(r)
apis[0].create_branch(r, branch="dev")
prs = [apis[i].create_commit(r, operations=[CommitOperationAdd(f"pr{{i}}.txt", b"pr")], commit_message=f"pr {{i}}",
                             create_pr=True, revision="dev").pr_num for i in range(2)]
made, errors = [], []
def write(i):
    api_ = apis[i % 2]
    for n in range(8):
        try:
            made.append(api_.upload_file(path_or_fileobj=f"{{i}}-{{n}}".encode(), path_in_repo=f"w{{i}}/{{n}}.txt",
                                         repo_id=r, revision="dev").oid)
        except Exception as e:
            errors.append(repr(e))
def merge(i):
    try:
        apis[i].merge_pull_request(r, prs[i])
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=write, args=(i,)) for i in range(2)] + [threading.Thread(target=merge, args=(i,)) for i in range(2)]
for t in threads: t.start()
for t in threads: t.join()
history = [c.commit_id for c in apis[1].list_repo_commits(r, revision="dev")]
print(json.dumps({{"made": made, "errors": errors, "history": history,
                  "files": apis[1].list_repo_files(r, revision="dev"),
                  "merged": [apis[0].get_discussion_details(r, n).status for n in prs]}}))
""", tmp_path)
    finally:
        for s in servers:
            s.stop()
    assert got["errors"] == [] and len(got["made"]) == 16
    assert set(got["made"]) <= set(got["history"])  # no writer's commit lost to a race
    assert len(got["history"]) == 16 + 2 + 1  # the writes, two merges, and the repo's first commit (where dev starts)
    assert sorted(got["files"]) == sorted(["pr0.txt", "pr1.txt"] + [f"w{i}/{n}.txt" for i in range(2) for n in range(8)])
    assert got["merged"] == ["merged", "merged"]


def test_validate_yaml_explains_what_is_wrong(api_hub):
    import requests

    def check(content):
        r = requests.post(api_hub.url + "/api/validate-yaml", json={"content": content, "repoType": "model"}, timeout=30)
        return r.status_code, r.headers.get("X-Error-Message", "")

    assert check("---\nlicense: mit\n---\n# ok\n") == (200, "")
    status, message = check("---\ntags: [unclosed\n---\n")
    assert status == 400 and "not valid YAML" in message
    assert check("---\nlicense: mit\n# never closed\n") == (400, "the metadata block opened by '---' is never closed by another '---' line")
    assert check("---\n- a\n- b\n---\n") == (400, "the metadata must be a mapping of fields, not a list")


def test_encoded_nul_unknown_routes_and_bad_token_files_are_refused_with_a_message(api_hub, tmp_path):
    import requests

    from conftest import run_zoo

    r = requests.get(api_hub.url + "/api/models/acme/x/revision/a%00b", timeout=30)
    assert r.status_code == 400 and "encoded NUL" in r.headers["X-Error-Message"]
    r = requests.get(api_hub.url + "/api/nothing-here", timeout=30)
    assert r.status_code == 404 and r.headers["X-Error-Message"] == "zoo serve has no endpoint GET /api/nothing-here"
    assert "X-Error-Code" not in r.headers
    r = requests.post(api_hub.url + "/api/models/acme/x/commit/main", headers={"authorization": "Bearer nope"}, timeout=30)
    assert r.status_code == 401 and r.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    bad = tmp_path / "tokens.txt"
    bad.write_text("ok-token\nother role=admin\n")
    result = run_zoo("serve", "--token-file", str(bad), "--port", "1")
    assert result.returncode == 2 and "line 2: role must be read or write, not 'admin'" in result.stderr


def test_odd_or_hostile_card_yaml_never_breaks_model_info(api_hub, tmp_path):
    import requests

    laughs = ["---", "a0: &a0 [" + ",".join(["lol"] * 100) + "]"]
    laughs += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 20)] + ["---", "# boom"]
    bomb = "\n".join(laughs).encode()
    got = run(api_hub, f"""
api.create_repo("acme/odd")
api.upload_file(path_or_fileobj=b"---\\ndate: 2024-05-01\\n2020-01-01: key\\nscore: .nan\\ntags: [ok]\\n---\\n# odd\\n",
                path_in_repo="README.md", repo_id="acme/odd")
api.create_repo("acme/laughs", private=True)
refused = err(api.upload_file, path_or_fileobj={bomb!r}, path_in_repo="README.md", repo_id="acme/laughs")
print(json.dumps([api.model_info("acme/odd").card_data.to_dict(), refused]))
""", tmp_path)
    assert got == [{"date": "2024-05-01", "2020-01-01": "key", "score": "nan", "tags": ["ok"]}, "ValueError"]
    # a client that skips the check commits it anyway: the server still answers, without the metadata
    import base64

    body = "\n".join(json.dumps(line) for line in [
        {"key": "header", "value": {"summary": "laughs"}},
        {"key": "file", "value": {"path": "README.md", "content": base64.b64encode(bomb).decode(), "encoding": "base64"}}])
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert requests.post(api_hub.url + "/api/models/acme/laughs/commit/main", data=body, headers=auth, timeout=30).ok
    info = requests.get(api_hub.url + "/api/models/acme/laughs", headers=auth, timeout=30)
    assert info.status_code == 200 and info.json()["cardData"] == {}
    r = requests.post(api_hub.url + "/api/validate-yaml", json={"content": "\n".join(laughs)}, timeout=30)
    assert r.status_code == 400 and r.json()["errors"] == [{"message": "the metadata block uses 38 YAML aliases; at most 32"}]
    stats = requests.get(api_hub.url + "/api/zoo/stats", timeout=30).json()  # a private repo's name is not shown
    assert "acme/odd" in stats["repos"] and "acme/laughs" not in stats["repos"]
    assert "acme/laughs" in requests.get(api_hub.url + "/api/zoo/stats", headers={"authorization": f"Bearer {TOKEN}"},
                                         timeout=30).json()["repos"]


def test_what_a_token_may_not_reach_and_what_it_may(api_hub, tmp_path):
    """A known sha256 is not a file; a gated diff is not public; a private repo is never told from a
    missing one; a duplicate stays private; LFS into private repos works; duplicating needs only read."""
    import requests

    gated, mine = tmp_path / "gated.bin", tmp_path / "mine.bin"
    gated.write_bytes(uuid.uuid4().bytes * (10_600_000 // 16))
    mine.write_bytes(uuid.uuid4().bytes * (10_600_000 // 16))
    got = run(api_hub, f"""
api.create_repo("acme/gated")
api.upload_file(path_or_fileobj={str(gated)!r}, path_in_repo="m.bin", repo_id="acme/gated")
api.create_commit("acme/gated", operations=[CommitOperationAdd("secret.txt", b"SECRET\\\\n")], commit_message="s",
                  create_pr=True)
api.update_repo_settings("acme/gated", gated="auto")
api.create_repo("acme/secret", private=True)
api.upload_file(path_or_fileobj={str(mine)!r}, path_in_repo="m.bin", repo_id="acme/secret")  # LFS, private
api.create_repo("acme/secret", repo_type="dataset", private=True)
api.upload_file(path_or_fileobj={str(mine)!r}, path_in_repo="d.bin", repo_id="acme/secret", repo_type="dataset")
api.create_repo("acme/public")
api.upload_file(path_or_fileobj=b"p", path_in_repo="p.txt", repo_id="acme/public")
alice = HfApi(token={ALICE!r})
alice.create_repo("alice/honest")
alice.upload_file(path_or_fileobj={str(gated)!r}, path_in_repo="m.bin", repo_id="alice/honest")  # she has the bytes
dup = api.duplicate_repo("acme/secret", "acme/secret-copy")
print(json.dumps({{"dup_private": api.model_info("acme/secret-copy").private,
                  "dup_anon": err(anon.model_info, "acme/secret-copy"),
                  "dataset_private": [s.rfilename for s in api.dataset_info("acme/secret").siblings],
                  "alice_dup": [alice.duplicate_repo("acme/public", "alice/pub").repo_id, alice.list_repo_files("alice/pub")],
                  "honest": hashlib.sha256(open(hf_hub_download("alice/honest", "m.bin"), "rb").read()).hexdigest()}}))
""", tmp_path)
    sha = __import__("hashlib").sha256(gated.read_bytes()).hexdigest()
    assert got == {"dup_private": True, "dup_anon": "RepositoryNotFoundError:404", "dataset_private": ["d.bin"],
                   "alice_dup": ["alice/pub", ["p.txt"]], "honest": sha}
    url, alice = api_hub.url, {"authorization": f"Bearer {ALICE}"}
    assert requests.get(f"{url}/acme/gated/resolve/main/m.bin", timeout=30).status_code == 401
    # naming the gated file's sha256 (its tree is public) in a commit of her own repo: refused
    assert requests.post(f"{url}/api/repos/create", json={"name": "steal", "organization": "alice"}, headers=alice,
                         timeout=30).ok
    lines = [{"key": "header", "value": {"summary": "steal"}}, {"key": "lfsFile", "value": {"path": "m.bin", "oid": sha}}]
    r = requests.post(f"{url}/api/models/alice/steal/commit/main", data="\n".join(map(json.dumps, lines)),
                      headers=alice, timeout=30)
    assert r.status_code == 400 and "was not uploaded to alice/steal" in r.headers["X-Error-Message"]
    batch = requests.post(f"{url}/alice/steal.git/info/lfs/objects/batch", headers=alice, timeout=30, json={
        "operation": "upload", "objects": [{"oid": sha, "size": gated.stat().st_size}]}).json()
    assert "upload" in batch["objects"][0]["actions"]  # not "already stored": she must send the bytes
    # a pull request's diff shows contents: not to those the gate keeps out
    assert requests.get(f"{url}/api/models/acme/gated/discussions/1", timeout=30).json()["diff"] == ""
    assert "+SECRET" in requests.get(f"{url}/api/models/acme/gated/discussions/1", timeout=30,
                                     headers={"authorization": f"Bearer {TOKEN}"}).json()["diff"]
    # a private repo she may not see answers as a missing one; a public one she may not write: 403
    answers = [requests.post(f"{url}/api/models/{r}/branch/x", headers=alice, timeout=30)
               for r in ("acme/secret", "acme/never-made", "acme/public")]
    assert [(a.status_code, a.headers.get("X-Error-Code")) for a in answers] == [
        (404, "RepoNotFound"), (404, "RepoNotFound"), (403, None)]
    assert requests.put(f"{url}/api/zoo/lfs/acme/secret/{'a' * 64}/1?sig=1.x", data=b"x", timeout=30).status_code == 401
    # nor is a copy a way around the gate
    r = requests.post(f"{url}/api/models/acme/gated/duplicate", json={"repository": "alice/copy"}, headers=alice, timeout=30)
    assert (r.status_code, r.headers.get("X-Error-Code")) == (401, "GatedRepo")
    assert requests.get(f"{url}/api/models/alice/copy", timeout=30).headers["X-Error-Code"] == "RepoNotFound"


def test_bodies_of_the_wrong_shape_are_a_400_not_a_500(api_hub):
    import requests

    auth, url = {"authorization": f"Bearer {TOKEN}"}, api_hub.url
    assert requests.post(f"{url}/api/repos/create", json={"name": "acme/shapes"}, headers=auth, timeout=30).ok
    header = json.dumps({"key": "header", "value": {"summary": "s"}})
    pr = requests.post(f"{url}/api/models/acme/shapes/commit/main?create_pr=1", headers=auth, timeout=30,
                       data=header + "\n" + json.dumps({"key": "file", "value": {"path": "a", "content": "YQ=="}}))
    assert pr.ok and pr.json()["pullRequestUrl"].endswith("/acme/shapes/discussions/1")
    calls = [
        ("DELETE", "/api/repos/delete", {"name": "acme/shapes", "type": ["model"]}),
        ("POST", "/api/repos/create", {"name": "acme/x", "type": {"a": 1}}),
        ("POST", "/api/repos/move", {"fromRepo": "acme/shapes", "toRepo": 5}),
        ("POST", "/api/models/acme/shapes/discussions/1/status", {"status": "closed", "comment": 5}),
        ("POST", "/api/models/acme/shapes/discussions/1/merge", {"comment": ["x"]}),
        ("POST", "/api/models/acme/shapes/discussions/1/comment", {"comment": None}),
        ("POST", "/api/models/acme/shapes/discussions", {"title": 7}),
        ("POST", "/api/models/acme/shapes/branch/dev", {"startingPoint": 1}),
        ("POST", "/api/models/acme/shapes/tag/main", {"tag": None}),
        ("PUT", "/api/models/acme/shapes/settings", {"gated": "sometimes"}),
    ]
    for method, path, body in calls:
        r = requests.request(method, url + path, json=body, headers=auth, timeout=30)
        assert r.status_code == 400, (path, r.status_code, r.text)
    r = requests.get(f"{url}/api/models/acme/shapes/discussions?p=" + "9" * 4300, timeout=30)
    assert r.status_code == 400
    # text no UTF-8 can hold (a lone surrogate, sent as a JSON escape) is refused, not stored
    for path, body in [("/api/models/acme/shapes/discussions/1/title", '{"title": "a\\ud800"}'),
                       ("/api/models/acme/shapes/discussions/1/comment", '{"comment": "\\udfff"}'),
                       ("/api/models/acme/shapes/branch/x", '{"startingPoint": "\\ud800"}')]:
        r = requests.post(url + path, data=body, headers={**auth, "content-type": "application/json"}, timeout=30)
        assert r.status_code == 400, (path, r.status_code)
    assert requests.get(f"{url}/api/models/acme/shapes/discussions", timeout=30).ok
    # names and numbers as long as a client likes: a 4xx that says so, with a header a client can read
    long_answers = [requests.get(f"{url}/api/models/acme/shapes/revision/" + "r" * 300, timeout=30),
                    requests.post(f"{url}/api/repos/create", json={"name": "acme/" + "n" * 300}, headers=auth, timeout=30),
                    requests.post(f"{url}/api/models/acme/shapes/discussions/{'9' * 5000}/comment", json={"comment": "x"},
                                  headers=auth, timeout=30),
                    requests.post(f"{url}/api/models/acme/shapes/tag/main", json={"tag": "t" * 70000}, headers=auth,
                                  timeout=30)]
    assert [a.status_code for a in long_answers] == [404, 400, 400, 400]
    assert all(len(a.headers.get("X-Error-Message", "")) <= 1003 for a in long_answers)
    lines = [header, json.dumps({"key": "lfsFile", "value": {"path": "m", "oid": "a" * 64, "size": 1.0}})]
    assert requests.post(f"{url}/api/models/acme/shapes/commit/main", data="\n".join(lines), headers=auth,
                         timeout=30).status_code == 400
    assert "Traceback" not in api_hub.log_text()


def test_the_hf_cli_drives_refs_reviews_datasets_and_repo_admin(api_hub, tmp_path):
    """The stock ``hf`` command (its own parser and commands, run in the client's process)."""
    (tmp_path / "head.txt").write_text("a head")
    got = run(api_hub, f"""
from huggingface_hub.cli.hf import app
def hf(*args):
    try:
        app(list(args), standalone_mode=False)
    except SystemExit as e:
        return e.code
    return 0
f = {str(tmp_path / "head.txt")!r}
codes = [hf("repos", "create", "acme/cli"), hf("repos", "branch", "create", "acme/cli", "dev"),
         hf("upload", "acme/cli", f, "head.txt", "--revision", "dev"),
         hf("upload", "acme/cli", f, "head.txt", "--create-pr"), hf("discussions", "merge", "acme/cli", "1", "--yes"),
         hf("repos", "tag", "create", "acme/cli", "v1"), hf("repos", "settings", "acme/cli", "--private"),
         hf("repos", "create", "acme/cli-data", "--repo-type", "dataset"),
         hf("upload", "acme/cli-data", f, "data/head.txt", "--repo-type", "dataset"),
         hf("repos", "move", "acme/cli", "acme/cli-moved"), hf("repos", "delete", "acme/cli-data", "--repo-type", "dataset", "--yes")]
refs = api.list_repo_refs("acme/cli-moved")
print(json.dumps({{"codes": codes, "branches": sorted(b.name for b in refs.branches), "tags": [t.name for t in refs.tags],
                  "main": api.list_repo_files("acme/cli-moved"), "private": api.model_info("acme/cli-moved").private,
                  "merged": api.get_discussion_details("acme/cli-moved", 1).status,
                  "dataset_gone": err(api.dataset_info, "acme/cli-data")}}))
""", tmp_path, HF_TOKEN=TOKEN)
    assert got == {"codes": [0] * 11, "branches": ["dev", "main"], "tags": ["v1"], "main": ["head.txt"], "private": True,
                   "merged": "merged", "dataset_gone": "RepositoryNotFoundError:404"}


def test_a_long_history_comes_a_page_at_a_time_and_whole_to_the_client(api_hub, tmp_path):
    import base64

    import requests

    auth, url = {"authorization": f"Bearer {TOKEN}"}, api_hub.url
    assert requests.post(f"{url}/api/repos/create", json={"name": "acme/long"}, headers=auth, timeout=30).ok
    with requests.Session() as s:
        for i in range(230):
            body = "\n".join(json.dumps(x) for x in [
                {"key": "header", "value": {"summary": f"c{i}"}},
                {"key": "file", "value": {"path": "n.txt", "content": base64.b64encode(str(i).encode()).decode()}}])
            assert s.post(f"{url}/api/models/acme/long/commit/main", data=body, headers=auth, timeout=30).ok
    first = requests.get(f"{url}/api/models/acme/long/commits/main", timeout=30)
    assert len(first.json()) == 100 and first.json()[0]["title"] == "c229" and 'rel="next"' in first.headers["Link"]
    assert requests.get(f"{url}/api/models/acme/long/commits/main?limit=0", timeout=30).status_code == 400
    got = run(api_hub, """
api.create_branch("acme/long", branch="feat/y")  # the next page's link must carry the slash as sent
print(json.dumps([[c.title for c in api.list_repo_commits("acme/long", revision=rev)] for rev in ("main", "feat/y")]))
""", tmp_path)
    assert got == [[f"c{i}" for i in reversed(range(230))] + ["initial commit"]] * 2
