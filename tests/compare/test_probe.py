"""Linear probe, kNN, bootstrap intervals and rank helpers (zoo/compare/probe.py) against their
definitions (the scores' tests: test_scores.py)."""

import pytest
import torch

from zoo.compare.probe import (bootstrap_interval, difference_interval, kendall_tau, knn_accuracy, knn_correct,
                               linear_probe, pareto_front, probe_correct)
from zoo.compare.scores import logme
from zoo.errors import UsageError


def test_separable_features_score_higher_than_shuffled_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 8, generator=g)
    x[:, :3] += 3 * torch.nn.functional.one_hot(y, 3)
    shuffled = y[torch.randperm(60, generator=g)]
    assert logme(x, y) > logme(x, shuffled) + 0.2
    train, test = torch.arange(0, 45), torch.arange(45, 60)
    assert linear_probe(x, y, train, test) >= 0.9 and knn_accuracy(x, y, train, test) >= 0.9


def test_linear_probe_matches_scikit_learn():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0)
    y = torch.tensor(y)
    train, test = torch.arange(0, 1400), torch.arange(1400, len(y))
    ours = linear_probe(x, y, train, test)
    theirs = LogisticRegression(max_iter=5000).fit(x[train].numpy(), y[train].numpy()).score(x[test].numpy(), y[test].numpy())
    assert ours == pytest.approx(theirs, abs=0.01)


def test_kendall_tau_and_pareto_front():
    from scipy.stats import kendalltau

    a, b = [0.1, 0.4, 0.35, 0.8, 0.8], [1, 3, 2, 4, 5]
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b).statistic)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0 and kendall_tau([1], [1]) is None
    # (accuracy, latency): B is dominated by A (less accurate and slower); C is slower but best
    assert pareto_front([(0.9, 10), (0.8, 20), (0.95, 30)]) == [True, False, True]


def test_probe_and_knn_per_image_results_give_their_accuracy():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x[:400] / 16.0), torch.tensor(y[:400])
    train, test = torch.arange(0, 300), torch.arange(300, 400)
    probe, knn = probe_correct(x, y, train, test), knn_correct(x, y, train, test)
    assert probe.dtype == torch.bool and probe.shape == knn.shape == (len(test),)
    assert float(probe.double().mean()) == linear_probe(x, y, train, test)
    assert float(knn.double().mean()) == knn_accuracy(x, y, train, test)


def test_bootstrap_interval_matches_the_binomial_spread():
    # 400 images, 340 right: accuracy 0.85, binomial sd sqrt(.85 * .15 / 400) = 0.01785
    correct = torch.zeros(400, dtype=torch.bool)
    correct[torch.randperm(400, generator=torch.Generator().manual_seed(0))[:340]] = True
    lo, hi = bootstrap_interval(correct)
    assert lo < 0.85 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * 0.01785, rel=0.1)
    assert bootstrap_interval(correct) == (lo, hi)  # seeded: the same every time
    assert bootstrap_interval(torch.ones(50, dtype=torch.bool)) == (1.0, 1.0)


def test_paired_difference_sees_what_unpaired_intervals_miss():
    """Two models right on the same hard images: B misses 6 of A's 340 and nothing else. Their own
    intervals overlap widely, yet B is worse on every resample: the paired interval excludes 0."""
    a = torch.zeros(400, dtype=torch.bool)
    a[:340] = True
    b = a.clone()
    b[:6] = False
    (alo, ahi), (blo, bhi) = bootstrap_interval(a), bootstrap_interval(b)
    assert blo < ahi and alo < bhi  # the intervals overlap
    lo, hi = difference_interval(b, a)
    assert hi < 0 and lo == pytest.approx(-0.03, abs=0.01)
    assert difference_interval(a, a) == (0.0, 0.0)
    # a different image each: a real tie, within noise
    c = a.clone()
    c[339], c[340] = False, True
    lo, hi = difference_interval(c, a)
    assert lo < 0 < hi
    with pytest.raises(UsageError, match="same held-out images"):
        difference_interval(a, a[:10])
