"""How well a backbone's features fit the user's labels, measured: a linear probe and kNN on
held-out images, with bootstrap intervals. (The training-free scores, LogME, LEEP, NCE and the
H-score, are in ``zoo.compare.scores``.)

- Linear probe: multinomial logistic regression on the pooled features, L2-regularised, fitted to
  convergence with L-BFGS in float64: the objective of scikit-learn's ``LogisticRegression(C=1)``,
  without the dependency.
- kNN: cosine similarity, majority vote of the k nearest training images.
- Intervals: a percentile bootstrap over the held-out images of each accuracy, and a paired one of
  the difference between two models (they are tested on the same images, so the pairing removes
  the images' own difficulty from the noise). The predictions are made once; only they are resampled.
- Kendall's tau between two rankings, and the Pareto front of accuracy against latency.
"""

from __future__ import annotations

import math
from typing import Sequence

from zoo.errors import UsageError


def linear_probe(x, y, train, test, C: float = 1.0, max_iter: int = 500) -> float:
    """Accuracy on ``test`` rows of a logistic regression fitted on ``train`` rows."""
    return float(probe_correct(x, y, train, test, C, max_iter).double().mean())


def probe_correct(x, y, train, test, C: float = 1.0, max_iter: int = 500):
    """Per ``test`` row, whether the logistic regression fitted on ``train`` rows gets it right (bool)."""
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
        return (x[test] @ w + b).argmax(-1) == y[test]


def knn_accuracy(x, y, train, test, k: int = 5) -> float:
    """Accuracy on ``test`` of a k-nearest-neighbour vote (cosine similarity) over ``train``."""
    return float(knn_correct(x, y, train, test, k).double().mean())


def knn_correct(x, y, train, test, k: int = 5):
    """Per ``test`` row, whether the k-nearest-neighbour vote over ``train`` gets it right (bool)."""
    import torch

    x = torch.nn.functional.normalize(x.float(), dim=1)
    sims = x[test] @ x[train].T
    nearest = sims.topk(min(k, len(train)), dim=1).indices
    votes = y[train][nearest]
    classes = int(y.max()) + 1
    counts = torch.zeros(len(test), classes).scatter_add_(1, votes, torch.ones_like(votes, dtype=torch.float))
    # ties go to the class of the nearer neighbour: add a little for the nearest's class
    counts.scatter_add_(1, votes[:, :1], torch.full((len(test), 1), 0.5))
    return counts.argmax(1) == y[test]


#: bootstrap resamples of the held-out images, and their seed (every model gets the same resamples)
RESAMPLES, SEED = 2000, 0


def _resampled_means(values, resamples: int, seed: int):
    """The mean of ``values`` (N,) over ``resamples`` draws of N of them with replacement, seeded:
    the same draws for every model given the same N. Drawn in chunks of about 2M indices, so that
    10,000 held-out images cost 16 MB at a time, not 160."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = len(values)
    chunk = max(1, 2_000_000 // n)
    means = [values[torch.randint(0, n, (min(chunk, resamples - done), n), generator=g)].mean(1)
             for done in range(0, resamples, chunk)]
    return torch.cat(means)


def _percentiles(values, level: float) -> tuple[float, float]:
    import torch

    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(values.double(), q).tolist()
    return lo, hi


def bootstrap_interval(correct, level: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = SEED) -> tuple[float, float]:
    """The percentile bootstrap interval of the accuracy of per-image ``correct`` (bool, N): the
    spread of the accuracy over ``resamples`` draws of N held-out images with replacement."""
    if len(correct) == 0:
        raise UsageError("no held-out predictions to resample")
    return _percentiles(_resampled_means(correct.double(), resamples, seed), level)


def difference_interval(correct, other, level: float = 0.95, resamples: int = RESAMPLES,
                        seed: int = SEED) -> tuple[float, float]:
    """The paired bootstrap interval of accuracy(``correct``) - accuracy(``other``), two models'
    per-image results on the same held-out images: each draw resamples the images, not the models.
    An interval holding 0 says the two are within noise of each other on these images."""
    if len(correct) != len(other) or len(correct) == 0:
        raise UsageError("paired intervals need both models' predictions on the same held-out images")
    return _percentiles(_resampled_means(correct.double() - other.double(), resamples, seed), level)


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
