"""Repos, refs, merges and discussions over a directory store (zoo/store/repos.py, discussions.py):
the rules the hub's answers rest on, without a server."""

import threading

import pytest

from zoo.errors import CommitConflict, MalformedRequest, NotOpen, RefExists, RevisionNotFound
from zoo.store.discussions import Discussions
from zoo.store.objects import LocalStorage
from zoo.store.repos import MAIN, Ref, RepoStore, branch, check_ref_name, conflicting_paths


def rec(sha: str) -> dict:
    return {"sha256": sha * 64, "size": 1, "lfs": True}


@pytest.fixture
def store(tmp_path):
    s = RepoStore(LocalStorage(tmp_path))
    s.create("acme/m")
    return s


def test_revisions_resolve_by_branch_tag_pr_ref_and_commit_prefix(store):
    c1 = store.apply("acme/m", "one", "", None, {"a": rec("a")}, [])
    store.create_ref("acme/m", branch("dev"), c1.id)
    store.create_ref("acme/m", Ref("tags", "v1"), c1.id)
    c2 = store.apply("acme/m", "two", "", None, {"b": rec("b")}, [], ref=branch("dev"))
    assert store.parse_revision("acme/m", "main") == (MAIN, c1.id)
    assert store.parse_revision("acme/m", "refs/heads/dev") == (branch("dev"), c2.id)
    assert store.parse_revision("acme/m", "v1") == (Ref("tags", "v1"), c1.id)
    assert store.parse_revision("acme/m", c2.id[:8]) == (None, c2.id)
    assert store.parse_revision("acme/m", c2.id) == (None, c2.id)
    for missing in ("nope", "refs/pr/1", "refs/tags/dev", "0" * 40, ""):
        with pytest.raises(RevisionNotFound):
            store.parse_revision("acme/m", missing)
    with pytest.raises(RefExists):
        store.create_ref("acme/m", branch("dev"), c1.id)
    with pytest.raises(MalformedRequest):
        store.apply("acme/m", "x", "", None, {}, [], ref=Ref("tags", "v1"))
    assert sorted(store.refs("acme/m")["heads"]) == [("dev", c2.id), ("main", c1.id)]


@pytest.mark.parametrize("name", ["", "a..b", "-x", "x/", "x.lock", "refs/heads/x", "a b", "a~1", "a%2F", "@", "a//b"])
def test_branch_names_git_would_refuse_are_refused(name):
    with pytest.raises(MalformedRequest):
        check_ref_name(name)


def test_a_store_from_before_branches_keeps_its_main(tmp_path):
    storage = LocalStorage(tmp_path)
    store = RepoStore(storage)
    store.create("acme/old")
    head = store.head("acme/old")
    storage.put("repos/acme/old/refs/main", head.encode())  # the old layout: main alone, at refs/main
    storage.delete("repos/acme/old/refs/heads/main")
    assert store.head("acme/old") == head and store.refs("acme/old")["heads"] == [("main", head)]
    new = store.apply("acme/old", "next", "", head, {"x": rec("c")}, [])
    assert new.parent == head and store.head("acme/old") == new.id  # moved to refs/heads/main, history kept


def test_merge_applies_the_pull_requests_changes_over_a_moved_branch(store):
    base = store.apply("acme/m", "base", "", None, {"keep": rec("a"), "gone": rec("b"), "both": rec("c")}, [])
    threads = Discussions(store)
    pr = threads.open_pull_request("acme/m", "change", "", "zoo")
    threads.commit_to("acme/m", pr["num"], "pr", "", None, {"new": rec("d")}, ["gone"])
    store.apply("acme/m", "main moves", "", None, {"other": rec("e")}, [])
    merged = threads.merge("acme/m", pr["num"], "zoo")
    assert sorted(merged.files) == ["both", "keep", "new", "other"] and merged.merged and merged.parent != base.id
    assert threads.get("acme/m", pr["num"])["status"] == "merged"
    with pytest.raises(NotOpen):
        threads.merge("acme/m", pr["num"], "zoo")
    # both sides change one path: refused, nothing moves
    pr2 = threads.open_pull_request("acme/m", "conflict", "", "zoo")
    threads.commit_to("acme/m", pr2["num"], "pr", "", None, {"both": rec("f")}, [])
    head = store.apply("acme/m", "main too", "", None, {"both": rec("0")}, []).id
    assert threads.conflicts("acme/m", threads.get("acme/m", pr2["num"])) == ["both"]
    with pytest.raises(CommitConflict, match="both"):
        threads.merge("acme/m", pr2["num"], "zoo")
    assert store.head("acme/m") == head


def test_conflicting_paths_only_where_both_sides_differ():
    base = {"a": rec("1"), "b": rec("2")}
    assert conflicting_paths(base, {"a": rec("3"), "b": rec("2")}, {"a": rec("3"), "b": rec("4")}) == []
    assert conflicting_paths(base, {"b": rec("2")}, {"a": rec("5"), "b": rec("2")}) == ["a"]  # deleted vs changed


def test_threads_opened_at_once_get_distinct_numbers(tmp_path):
    store = RepoStore(LocalStorage(tmp_path), "dataset")
    store.create("acme/d")
    nums, errors = [], []

    def open_some(server: int):
        threads = Discussions(RepoStore(LocalStorage(tmp_path), "dataset"))  # another server's handle
        try:
            for i in range(10):
                nums.append(threads.create("acme/d", f"s{server} {i}", "", "zoo", False)["num"])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=open_some, args=(i,)) for i in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors and sorted(nums) == list(range(1, 21))
    assert (tmp_path / "datasets" / "acme" / "d" / "discussions" / "20.json").is_file()


def test_squash_keeps_the_files_and_delete_removes_every_key(store, tmp_path):
    store.apply("acme/m", "one", "", None, {"a": rec("a")}, [])
    store.apply("acme/m", "two", "", None, {"b": rec("b")}, [])
    squashed = store.squash("acme/m", MAIN, "squashed")
    assert squashed.parent is None and sorted(squashed.files) == ["a", "b"] and len(store.history("acme/m")) == 1
    store.delete("acme/m")
    assert not store.exists("acme/m") and not list((tmp_path / "repos").rglob("*.json"))


def _pr_with_commit(store):
    threads = Discussions(store)
    pr = threads.open_pull_request("acme/m", "head", "", "zoo")
    threads.commit_to("acme/m", pr["num"], "one", "", None, {"a": rec("a")}, [])
    return threads, pr["num"]


def test_a_commit_pushed_while_merging_keeps_the_pull_request_open(store):
    threads, num = _pr_with_commit(store)
    real_merge = store.merge

    def merge_while_someone_pushes(*args, **kwargs):  # the push lands between the head read and the record
        made = real_merge(*args, **kwargs)
        Discussions(store).commit_to("acme/m", num, "late", "", None, {"late": rec("b")}, [])
        return made

    store.merge = merge_while_someone_pushes
    with pytest.raises(NotOpen, match="stays open"):
        threads.merge("acme/m", num, "zoo")
    store.merge = real_merge
    assert threads.get("acme/m", num)["status"] == "open" and "merging" not in threads.get("acme/m", num)
    threads.merge("acme/m", num, "zoo")  # the second merge lands the late commit
    assert sorted(store.commit("acme/m", "main").files) == ["a", "late"]
    assert threads.get("acme/m", num)["status"] == "merged"


@pytest.mark.parametrize("merged", ["before the push lands", "after it landed"])
def test_a_commit_racing_a_merge_is_merged_or_refused_never_lost(store, merged):
    threads, num = _pr_with_commit(store)
    real_move = store.move_ref

    def racing(repo_id, ref, make, attempts=50):
        if ref.kind != "pr":
            return real_move(repo_id, ref, make, attempts)
        store.move_ref = real_move

        def make_then_merge(head):
            commit = make(head)
            if merged == "before the push lands":  # the merge reads the head the push is replacing
                Discussions(store).merge("acme/m", num, "other")
            return commit

        made = real_move(repo_id, ref, make_then_merge, attempts)
        if merged == "after it landed":
            Discussions(store).merge("acme/m", num, "other")
        return made

    store.move_ref = racing
    late = None
    try:
        late = threads.commit_to("acme/m", num, "late", "", None, {"late": rec("b")}, [])
    except NotOpen as exc:
        assert "is on refs/pr/1 but not merged" in str(exc)
    assert threads.get("acme/m", num)["status"] == "merged"
    assert ("late" in store.commit("acme/m", "main").files) == (late is not None) == (merged == "after it landed")


def test_merge_claims_block_a_second_merge_and_a_close_until_they_go_stale(store):
    import time

    threads, num = _pr_with_commit(store)
    threads.change("acme/m", num, lambda d: d.update(merging={"by": "other", "at": time.time(), "id": "x"}))
    with pytest.raises(NotOpen, match="being merged by other"):
        threads.merge("acme/m", num, "zoo")
    with pytest.raises(NotOpen, match="being merged"):
        threads.set_status("acme/m", num, "zoo", "closed")
    threads.change("acme/m", num, lambda d: d["merging"].update(at=time.time() - 3600))  # that server died
    threads.merge("acme/m", num, "zoo")
    with pytest.raises(NotOpen, match="merged"):
        threads.set_status("acme/m", num, "zoo", "closed")
    with pytest.raises(MalformedRequest):
        threads.comment("acme/m", num, "zoo", 5)


def test_a_repo_knows_only_the_lfs_objects_that_reached_it(tmp_path):
    storage = LocalStorage(tmp_path)
    store = RepoStore(storage)
    for repo in ("acme/a", "acme/b"):
        store.create(repo)
    store.apply("acme/a", "w", "", None, {"w": rec("c")}, [])
    assert not store.knows_blob("acme/a", "c" * 64)  # a commit the hub did not check (no record): not known
    storage.delete("repos/acme/a/lfs-indexed")  # a repo from before the record: its commits are scanned once
    assert store.knows_blob("acme/a", "c" * 64) and (tmp_path / "repos/acme/a/lfs" / ("c" * 64)).is_file()
    assert not store.knows_blob("acme/a", "d" * 64) and (tmp_path / "repos/acme/a/lfs-indexed").is_file()
    assert not store.knows_blob("acme/b", "c" * 64)
    store.mark_blob("acme/b", "c" * 64)
    assert store.knows_blob("acme/b", "c" * 64)


def test_move_refuses_writes_to_the_source_while_copying_and_create_clears_leftovers(tmp_path):
    storage = LocalStorage(tmp_path)
    store = RepoStore(storage)
    store.create("acme/src")
    head = store.apply("acme/src", "w", "", None, {"w": rec("a")}, []).id
    real_put = storage.put
    seen = []

    def put(key, data, **kw):
        if key == "repos/acme/dst/refs/heads/main":  # mid-copy: the source refuses writes now
            try:
                store.writable("acme/src")
            except RefExists as exc:
                seen.append(str(exc))
        return real_put(key, data, **kw)

    storage.put = put
    store.move("acme/src", "acme/dst")
    storage.put = real_put
    assert seen == ["acme/src is being moved to acme/dst: write there once the move is done"]
    assert store.head("acme/dst") == head and not store.exists("acme/src")
    assert not list((tmp_path / "repos/acme/src").rglob("*.json"))
    # a key a landing write left behind is not inherited by a new repo of that id
    storage.put("repos/acme/src/refs/heads/stray", head.encode())
    store.create("acme/src")
    assert [n for n, _ in store.refs("acme/src")["heads"]] == ["main"]


def test_a_revert_pushed_during_a_merge_is_merged_by_the_next_merge(store):
    store.apply("acme/m", "base", "", None, {"a": rec("a"), "x": rec("1")}, [])
    threads = Discussions(store)
    num = threads.open_pull_request("acme/m", "change", "", "zoo")["num"]
    threads.commit_to("acme/m", num, "b", "", None, {"a": rec("b"), "n": rec("2")}, ["x"])
    real_merge = store.merge

    def merge_then_revert(*args, **kwargs):  # the push undoes the change while the merge lands it
        made = real_merge(*args, **kwargs)
        Discussions(store).commit_to("acme/m", num, "revert", "", None, {"a": rec("a"), "x": rec("1")}, ["n"])
        return made

    store.merge = merge_then_revert
    with pytest.raises(NotOpen, match="stays open"):
        threads.merge("acme/m", num, "zoo")
    store.merge = real_merge
    threads.merge("acme/m", num, "zoo")
    pr_head = store.commit("acme/m", f"refs/pr/{num}").files
    assert store.commit("acme/m", "main").files == pr_head == {"a": rec("a"), "x": rec("1")}


def test_a_merge_whose_record_failed_is_recorded_not_merged_twice(store):
    import time

    threads, num = _pr_with_commit(store)
    real_change = threads.change
    calls = []

    def record_fails(repo_id, n, change):
        calls.append(change.__name__)
        if change.__name__ == "record" and calls.count("record") == 1:
            raise RevisionNotFound("the store went away")  # any failure after the branch moved
        return real_change(repo_id, n, change)

    threads.change = record_fails
    with pytest.raises(RevisionNotFound):
        threads.merge("acme/m", num, "zoo")
    assert threads.get("acme/m", num)["status"] == "open"  # the claim is left: it lapses
    real_change("acme/m", num, lambda d: d["merging"].update(at=time.time() - 3600))
    threads.merge("acme/m", num, "zoo")
    titles = [c.title for c in store.history("acme/m")]
    assert titles.count(f"Merge pull request #{num}: head") == 1 and threads.get("acme/m", num)["status"] == "merged"


def test_a_move_that_fails_leaves_the_source_writable_and_no_half_copy(tmp_path):
    storage = LocalStorage(tmp_path)
    store = RepoStore(storage)
    store.create("acme/src")
    store.apply("acme/src", "w", "", None, {"w": rec("a")}, [])
    real_put = storage.put

    def put(key, data, **kw):
        if key.startswith("repos/acme/dst/commits/"):
            raise OSError("disk full")
        return real_put(key, data, **kw)

    storage.put = put
    with pytest.raises(OSError):
        store.move("acme/src", "acme/dst")
    storage.put = real_put
    assert store.writable("acme/src") and not store.exists("acme/dst")
    assert not (tmp_path / "repos/acme/dst").exists() or not list((tmp_path / "repos/acme/dst").rglob("*.json"))
    store.move("acme/src", "acme/dst")  # and it can be moved afterwards
    assert store.exists("acme/dst") and not store.exists("acme/src")


def test_a_create_during_a_delete_waits_instead_of_losing_its_keys(tmp_path):
    storage = LocalStorage(tmp_path)
    store = RepoStore(storage)
    store.create("acme/r")
    real_list = storage.list
    refused = []

    def list_then_create(prefix=""):
        keys = real_list(prefix)
        if prefix == "repos/acme/r/" and not refused:  # the sweep's first listing: someone creates it again
            try:
                RepoStore(storage).create("acme/r")
            except RefExists as exc:
                refused.append(str(exc))
        return keys

    storage.list = list_then_create
    store.delete("acme/r")
    storage.list = real_list
    assert refused == ["Repository acme/r is being deleted: create it again in a moment"]
    assert not store.exists("acme/r") and store.create("acme/r") and store.head("acme/r")
