"""Computed and timed figures (zoo/compare/measure.py)."""

import pytest

from zoo.compare.measure import gmacs


def test_gmacs_match_the_published_figure():
    # tools/reference/torchvision-weights.csv: ResNet50 at 224, "GFLOPS" 4.089 (torchvision counts MACs)
    assert gmacs("resnet50", (3, 224, 224)) == pytest.approx(4.1, rel=0.05)


def test_gmacs_scale_with_the_input_area():
    assert gmacs("resnet50", (3, 448, 448)) == pytest.approx(4 * gmacs("resnet50", (3, 224, 224)), rel=0.02)


def test_busy_reason_names_what_made_the_timing_untrustworthy():
    from zoo.compare.measure import busy_reason

    quiet = dict(p50=0.019, p90=0.021)
    assert busy_reason(**quiet, cores=2, threads=2, others=0.1) is None
    # the model on both cores: a core taken by others is contention; on 16 cores with 8 threads it is not
    said = busy_reason(**quiet, cores=2, threads=2, others=1.3)
    assert said == "other processes used 1.3 of 2 cores while it was timed"
    assert busy_reason(**quiet, cores=16, threads=8, others=1.3) is None
    # no /proc: the load average before the timing
    assert busy_reason(**quiet, cores=2, threads=2, load=5.2) == "load average 5.2 on 2 cores"
    assert busy_reason(**quiet, cores=2, threads=2, others=0.0, load=5.2) is None  # measured beats guessed
    # the case: 19 ms typical, 1,760 ms under load
    assert busy_reason(p50=0.019, p90=1.76, cores=16, threads=16, others=0.0) == "p90/p50 92.63 > 1.5"


def test_other_processes_cpu_is_measured_apart_from_the_timings_own():
    """A busy loop in a child: counted among the others unless it is one of the timed processes;
    the difference is its own CPU, whatever else the machine is doing meanwhile."""
    import subprocess
    import sys
    import time

    from zoo.compare.measure import _cpu_ticks, _Others

    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 6: pass"])
    try:
        time.sleep(0.5)  # python is up and spinning
        everyone, timed = _Others(), _Others()
        start = _cpu_ticks([spinner.pid])[1] - _cpu_ticks([])[1]
        t0 = time.perf_counter()
        everyone.turn(0, [], lambda: timed.turn(0, [spinner.pid], lambda: time.sleep(1.0)))
        spun = (_cpu_ticks([spinner.pid])[1] - _cpu_ticks([])[1] - start) / everyone.hz / (time.perf_counter() - t0)
    finally:
        spinner.kill()
        spinner.wait()
    assert spun > 0.1  # it got some CPU (a whole core on an idle machine)
    assert everyone.cores(0) >= spun - 0.15
    assert timed.cores(0) == pytest.approx(everyone.cores(0) - spun, abs=0.15) or timed.cores(0) == 0.0


@pytest.mark.slow  # three timing processes (~7 s); the busy rule and the CPU measurement stay quick
def test_models_are_timed_in_interleaved_rounds_each_in_its_own_process(monkeypatch):
    """lite0 and lite1 (bundled) timed in 2 rounds, A B A B; resnet50, not cached offline, fails
    in its own process and costs only its own result."""
    import zoo
    from zoo.compare import measure as m
    from zoo.errors import ZooError

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setattr(m, "ROUND_RUNS", 2)
    monkeypatch.setattr(m, "ROUND_SECONDS", 0.0)
    for name in ("efficientnet_lite0", "efficientnet_lite1"):
        zoo.pull(name)
    said = []
    lite0, lite1, resnet = m.measure_models(["efficientnet_lite0", "efficientnet_lite1", "resnet50"], [1, 2],
                                            rounds=2, labels=["A", "B", "C"], status=said.append)
    assert [s for s in said if s.startswith("timing")] == ["timing round 1/2: A", "timing round 1/2: B",
                                                          "timing round 2/2: A", "timing round 2/2: B"]
    assert "C: loading in its own process" in said
    assert isinstance(resnet, ZooError) and "zoo pull" in str(resnet)
    for r, size in ((lite0, 224), (lite1, 240)):
        assert r["input_size"] == [3, size, size] and r["rounds"] == 2 and len(r["latency_rounds_ms"]) == 2
        assert r["runs"] >= 4 and 0 < r["latency_ms"] <= r["latency_p90_ms"]
        assert r["throughput_batch"] == 2 and r["throughput"] > 0
        assert r["peak_rss_mb"] > 100 and r["machine"]["threads"] >= 1
        assert r["others_cpu"] >= 0 and r["load_avg"] >= 0
        assert r["busy"] is None or "other processes used" in r["busy"] or "p90/p50" in r["busy"]
