"""The parts of zoo compare (zoo/compare/report.py, zoo/cli/compare.py) that need no timing:
readable unique names, the ranking's noise marks, Kendall's tau and its warning, the table at 100
columns. The full run on real data: test_compare.py (slow)."""

import pytest
import torch

from zoo.compare.report import FIELDS, _rank, _taus, _unique, compare, short_labels
from zoo.errors import UsageError
from zoo.model.resolve import card_for


def _labels(*typed):
    cards, names, warnings = _unique([(t, card_for(t)) for t in typed])
    return short_labels(cards, names), warnings


def test_labels_are_the_short_names_people_type_and_stay_unique():
    labels, warnings = _labels("tf_efficientnet_lite0.bundled_in1k", "efficientnet_lite1", "resnet50.a1_in1k")
    assert labels == ["efficientnet_lite0", "efficientnet_lite1", "resnet50.a1_in1k"] and warnings == []
    # "resnet50" is resnet50.a1_in1k, "ResNet50" the alias of resnet50.tv_in1k: alike but for case, so full names
    labels, _ = _labels("resnet50", "resnet50.tv_in1k")
    assert labels == ["resnet50.a1_in1k", "resnet50.tv_in1k"]
    labels, warnings = _labels("efficientnet_lite0", "tf_efficientnet_lite0.bundled_in1k")
    assert labels == ["efficientnet_lite0"]
    assert warnings == ["efficientnet_lite0 and tf_efficientnet_lite0.bundled_in1k are both "
                        "tf_efficientnet_lite0.bundled_in1k: compared once"]
    assert _labels("resnet50", "resnet50")[1] == ["resnet50 named twice: compared once"]


def _row(name, probe, **scores):
    row = dict.fromkeys(FIELDS)
    row.update(name=name, label=name, probe_accuracy=probe, latency_ms=10.0, **scores)
    return row


def test_the_ranking_says_which_rows_are_within_noise_of_the_best():
    right = torch.zeros(200, dtype=torch.bool)
    right[:180] = True  # A: 0.90
    close = right.clone()
    close[179], close[180] = False, True  # B: 0.90 too, on other images
    far = right.clone()
    far[:30] = False  # C: 0.75, wrong wherever A is, and more
    rows = _rank([_row("C", 0.75), _row("B", 0.90), _row("A", 0.905)], True,
                 {"A": right, "B": close, "C": far})
    assert [r["name"] for r in rows] == ["A", "B", "C"] and [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["within_noise_of_best"] is None
    assert rows[1]["within_noise_of_best"] is True and rows[1]["probe_diff_interval"][0] < 0
    assert rows[2]["within_noise_of_best"] is False and rows[2]["probe_diff_interval"][1] < 0


def test_kendall_tau_per_score_and_how_many_models_it_stands_on():
    rows = [_row("A", 0.9, logme=0.5, hscore=3.0, leep=-1.0, nce=None),
            _row("B", 0.8, logme=0.4, hscore=4.0, leep=-2.0, nce=None),
            _row("C", 0.7, logme=0.1, hscore=1.0, leep=-3.0, nce=-1.0)]
    taus, probed = _taus(rows)
    assert probed == 3 and taus == {"logme": 1.0, "hscore": pytest.approx(1 / 3), "leep": 1.0, "nce": None}


def test_bad_requests_are_refused_before_any_work():
    with pytest.raises(UsageError, match="at least one"):
        compare([])
    with pytest.raises(UsageError, match="rounds"):
        compare(["efficientnet_lite0"], rounds=0)


def test_an_interval_reads_short():
    from zoo.cli.compare import _with_interval

    assert _with_interval(0.953, [0.931, 0.97]) == "0.953 .931-.970"
    assert _with_interval(0.95, [0.883, 1.0]) == "0.950 .883-1.000"
    assert _with_interval(None, None) == "-"


def test_the_cli_default_rounds_are_the_librarys():
    from zoo.cli.compare import ROUNDS as CLI_ROUNDS
    from zoo.compare.measure import ROUNDS

    assert CLI_ROUNDS == ROUNDS
