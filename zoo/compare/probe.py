"""How well a backbone's features fit the user's labels: a linear probe, kNN, and LogME.

- Linear probe: multinomial logistic regression on the pooled features, L2-regularised, fitted to
  convergence with L-BFGS in float64: the objective of scikit-learn's ``LogisticRegression(C=1)``,
  without the dependency.
- kNN: cosine similarity, majority vote of the k nearest training images.
- LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
  ICML 2021): the log maximum evidence of each class's one-hot labels given the features under a
  Bayesian linear model, maximised over the prior precision alpha and noise precision beta by the
  fixed-point iteration of the paper's Algorithm 1 on an SVD of the features, divided by N and
  averaged over classes. Training-free: seconds where a probe costs minutes on large data.
- Kendall's tau between two rankings, and the Pareto front of accuracy against latency.
"""

from __future__ import annotations

import math
from typing import Sequence


def linear_probe(x, y, train, test, C: float = 1.0, max_iter: int = 500) -> float:
    """Accuracy on ``test`` rows of a logistic regression fitted on ``train`` rows."""
    import torch

    x = x.double()
    xtr, ytr = x[train], y[train]
    classes = int(y.max()) + 1
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        # scikit-learn's objective: C * sum of the log-losses + 0.5 * ||w||^2 (the bias is not penalised)
        loss = C * torch.nn.functional.cross_entropy(xtr @ w + b, ytr, reduction="sum") + 0.5 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x[test] @ w + b).argmax(-1) == y[test]).double().mean())


def knn_accuracy(x, y, train, test, k: int = 5) -> float:
    """Accuracy on ``test`` of a k-nearest-neighbour vote (cosine similarity) over ``train``."""
    import torch

    x = torch.nn.functional.normalize(x.float(), dim=1)
    sims = x[test] @ x[train].T
    nearest = sims.topk(min(k, len(train)), dim=1).indices
    votes = y[train][nearest]
    classes = int(y.max()) + 1
    counts = torch.zeros(len(test), classes).scatter_add_(1, votes, torch.ones_like(votes, dtype=torch.float))
    # ties go to the class of the nearer neighbour: add a little for the nearest's class
    counts.scatter_add_(1, votes[:, :1], torch.full((len(test), 1), 0.5))
    return float((counts.argmax(1) == y[test]).float().mean())


def _terms(alpha: float, beta: float, s2, z2, y2: float) -> tuple[float, float, float]:
    """gamma, m^T m and ||F m - y||^2 at (alpha, beta), from the spectrum: s2 = singular values
    squared, z2 = (U^T y)^2, y2 = ||y||^2 (m in V's basis is beta s z / (alpha + beta s^2))."""
    denom = alpha + beta * s2
    gamma = float((beta * s2 / denom).sum())
    m2 = float((beta * beta * s2 * z2 / denom ** 2).sum())
    res = float((alpha * alpha * z2 / denom ** 2).sum()) + (y2 - float(z2.sum()))
    return gamma, m2, res


def _evidence(alpha: float, beta: float, s2, z2, y2: float, n: int, d: int) -> float:
    """log p(y | F, alpha, beta) / n from the spectrum (see :func:`_terms`)."""
    _, m2, res = _terms(alpha, beta, s2, z2, y2)
    logdet = math.fsum(math.log(alpha + beta * v) for v in s2.tolist()) + (d - len(s2)) * math.log(alpha)
    ev = (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
          - beta / 2 * res - alpha / 2 * m2 - logdet / 2)
    return ev / n


def logme(features, labels, max_iter: int = 1000, tol: float = 1e-6) -> float:
    """LogME of ``features`` (N, D) for integer ``labels`` (N,): mean over classes of the maximum
    log evidence per sample (higher: the features fit the labels better)."""
    import torch

    f = features.double()
    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    s2 = s * s
    scores = []
    for k in range(int(labels.max()) + 1):
        y = (labels == k).double()
        z = u.T @ y
        z2, y2 = z * z, float(y @ y)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):  # the paper's Algorithm 1
            gamma, m2, res = _terms(alpha, beta, s2, z2, y2)
            new_alpha, new_beta = gamma / max(m2, 1e-300), (n - gamma) / max(res, 1e-300)
            done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
            alpha, beta = new_alpha, new_beta
            if done:
                break
        scores.append(_evidence(alpha, beta, s2, z2, y2, n, d))
    return sum(scores) / len(scores)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b rank agreement of two score lists (None below 2 items or with no order)."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return None if n < 2 or denom == 0 else (concordant - discordant) / denom


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (accuracy, latency) points: True where no other point is at least as accurate and at
    least as fast, and strictly better in one."""
    return [not any((a2 >= a and l2 <= l) and (a2 > a or l2 < l) for a2, l2 in points) for a, l in points]
