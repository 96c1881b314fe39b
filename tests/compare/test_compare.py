"""zoo compare (zoo/compare/report.py, zoo/compare/plot.py) on real data: the bundled lite0 and lite1 on sklearn's digits."""

import json

import pytest

from zoo.compare.report import FIELDS

from conftest import run_zoo

# one real compare of lite0 and lite1 over all 1797 digits (minutes on two cores); the quick loop keeps
# the units it is built from (tests/compare/test_measure.py, test_probe.py). Its run may take the 1200 s
# it is given below, past the suite's 600 s per test (pyproject.toml).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def compared(digits_folder, digits_home, tmp_path_factory):
    """One real `zoo compare` run: two bundled models measured and probed, one uncached model offline."""
    plot = tmp_path_factory.mktemp("plot") / "compare.png"
    env = {"ZOO_HOME": str(digits_home), "ZOO_OFFLINE": "1"}
    r = run_zoo("compare", "efficientnet_lite0", "efficientnet_lite1", "resnet50", "--data", str(digits_folder),
                "--json", "--plot", str(plot), "--rounds", "3", env=env, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout), plot, env


def test_bundled_models_are_measured_and_probed(compared):
    result, _, _ = compared
    rows = {r["name"]: r for r in result["rows"]}
    for name in ("tf_efficientnet_lite0.bundled_in1k", "tf_efficientnet_lite1.bundled_in1k"):
        r = rows[name]
        assert set(r) == set(FIELDS)
        assert r["measured"] and r["not_measured"] is None
        assert 0 < r["latency_ms"] <= r["latency_p90_ms"] and r["throughput"] > 0 and r["throughput_batch"] == 32
        assert r["peak_rss_mb"] > 100 and r["machine"]["threads"] >= 1 and r["machine"]["torch"]
        assert r["probe_accuracy"] >= 0.85 and r["knn_accuracy"] > 0.5 and r["probe_seconds"] >= 0
        assert r["logme"] is not None and r["logme_seconds"] >= 0 and r["extract_seconds"] >= 0
        assert r["top1"] and "published" in r["metrics_source"]
        assert r["label"] == name.split(".")[0][3:]  # the alias: efficientnet_lite0
        assert r["rounds"] == 3 and len(r["latency_rounds_ms"]) == 3 and r["runs"] >= 12
        assert r["others_cpu"] >= 0 and (r["busy"] is None or "other processes" in r["busy"] or "p90/p50" in r["busy"])
        for key in ("probe", "knn"):
            lo, hi = r[f"{key}_interval"]
            assert lo <= r[f"{key}_accuracy"] <= hi and hi - lo < 0.1  # 359 held-out images
        # the training-free scores, each with its time; LEEP and NCE from lite's own ImageNet classifier
        for key in ("logme", "hscore", "leep", "nce"):
            assert r[key] is not None and r[f"{key}_seconds"] >= 0
        assert r["leep"] < 0 and r["nce"] <= 0 and r["scores_note"] is None
    assert rows["tf_efficientnet_lite1.bundled_in1k"]["gmacs"] > rows["tf_efficientnet_lite0.bundled_in1k"]["gmacs"]
    # ranked by probe accuracy; the Pareto front holds at least the most accurate and the fastest
    measured = [r for r in result["rows"] if r["measured"]]
    assert [r["probe_accuracy"] for r in measured] == sorted((r["probe_accuracy"] for r in measured), reverse=True)
    assert measured[0]["pareto_front"] and min(measured, key=lambda r: r["latency_ms"])["pareto_front"]
    assert result["split"] == {"train": 1438, "test": 359, "how": "20% of each class held out (seed 0)"}
    assert result["logme_probe_kendall_tau"] in (-1.0, 1.0)  # two models: they agree or they do not
    assert set(result["kendall_tau"]) == {"logme", "hscore", "leep", "nce"} and result["kendall_tau_models"] == 2
    note = result["kendall_tau_note"]
    assert "not meaningful with 2 models" in note and note in result["warnings"]
    first, second = measured
    assert first["within_noise_of_best"] is None and isinstance(second["within_noise_of_best"], bool)
    assert second["within_noise_of_best"] == (second["probe_diff_interval"][1] >= 0)


def test_the_tables_show_every_name_whole_at_100_columns(compared):
    from rich.console import Console

    from zoo.cli.compare import _data_table, _speed_table

    result, _, _ = compared
    console = Console(width=100, record=True)
    console.print(_speed_table(result))
    console.print(_data_table(result))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100 and "…" not in text
    for label in ("efficientnet_lite0", "efficientnet_lite1"):
        assert text.count(label) == 2  # once in each table
    assert "resnet50" in text and "not measured" in text
    assert "tau is not meaningful with 2 models" in " ".join(text.split())


def test_an_uncached_model_offline_keeps_computed_and_published_columns(compared):
    result, _, _ = compared
    r = next(r for r in result["rows"] if r["architecture"] == "resnet50")
    assert not r["measured"] and "not measured" in r["not_measured"] and "zoo pull" in r["not_measured"]
    assert r["latency_ms"] is None and r["probe_accuracy"] is None and r["pareto_front"] is None
    assert r["top1"] and r["params"] == 25557032 and r["gmacs"] == pytest.approx(4.1, rel=0.05)


def test_the_plot_is_a_png_and_zoo_list_shows_the_measurements(compared):
    _, plot, env = compared
    from PIL import Image

    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
    listing = run_zoo("list", "--measured", "--json", "tf_efficientnet_lite*", env=env)
    records = {r["name"]: r for r in json.loads(listing.stdout)}
    assert records["tf_efficientnet_lite0.bundled_in1k"]["measured"]["latency_ms"] > 0
    assert records["tf_efficientnet_lite2.bundled_in1k"]["measured"] is None
    table = run_zoo("list", "--measured", "tf_efficientnet_lite*", env=env)
    assert "lat ms" in table.stdout and "Measured here by 'zoo compare'" in table.stdout
