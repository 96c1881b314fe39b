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
                "--json", "--plot", str(plot), env=env, timeout=1200)
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
    assert rows["tf_efficientnet_lite1.bundled_in1k"]["gmacs"] > rows["tf_efficientnet_lite0.bundled_in1k"]["gmacs"]
    # ranked by probe accuracy; the Pareto front holds at least the most accurate and the fastest
    measured = [r for r in result["rows"] if r["measured"]]
    assert [r["probe_accuracy"] for r in measured] == sorted((r["probe_accuracy"] for r in measured), reverse=True)
    assert measured[0]["pareto_front"] and min(measured, key=lambda r: r["latency_ms"])["pareto_front"]
    assert result["split"] == {"train": 1438, "test": 359, "how": "20% of each class held out (seed 0)"}
    assert result["logme_probe_kendall_tau"] in (-1.0, 1.0)  # two models: they agree or they do not


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
