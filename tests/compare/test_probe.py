"""Linear probe, kNN, LogME and rank helpers (zoo/compare/probe.py) against their definitions."""

import math

import pytest
import torch

from zoo.compare.probe import _evidence, kendall_tau, knn_accuracy, linear_probe, logme, pareto_front


def _max_evidence_numerically(f, y):
    """The paper's log-evidence maximised over (log alpha, log beta) by scipy, averaged over classes."""
    from scipy.optimize import minimize

    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    s2 = s * s
    best = []
    for k in range(int(y.max()) + 1):
        yk = (y == k).double()
        z2 = (u.T @ yk) ** 2
        r = minimize(lambda p: -_evidence(math.exp(p[0]), math.exp(p[1]), s2, z2, float(yk @ yk), n, d),
                     [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000})
        best.append(-r.fun)
    return sum(best) / len(best)


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_logme_fixed_point_is_the_maximum_evidence(classes, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(60, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (60,), generator=g)
    assert logme(f, y) == pytest.approx(_max_evidence_numerically(f, y), abs=1e-4)


def test_evidence_formula_matches_the_direct_definition():
    """_evidence (spectral) against the formula written with matrices, at an arbitrary alpha, beta."""
    g = torch.Generator().manual_seed(3)
    f = torch.randn(30, 6, generator=g, dtype=torch.float64)
    y = (torch.randint(0, 2, (30,), generator=g) == 1).double()
    alpha, beta = 0.7, 2.3
    n, d = f.shape
    a = alpha * torch.eye(d, dtype=torch.float64) + beta * f.T @ f
    m = beta * torch.linalg.solve(a, f.T @ y)
    direct = (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
              - beta / 2 * float((f @ m - y) @ (f @ m - y)) - alpha / 2 * float(m @ m) - float(torch.logdet(a)) / 2) / n
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    assert _evidence(alpha, beta, s * s, (u.T @ y) ** 2, float(y @ y), n, d) == pytest.approx(direct, abs=1e-10)


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
