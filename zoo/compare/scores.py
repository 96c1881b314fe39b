"""Training-free transferability scores: how well a backbone's features (or its own ImageNet
predictions) suit the user's labels, in seconds, before any probe is trained.

- LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
  ICML 2021): the log evidence of each class's one-hot labels under a Bayesian linear model of the
  features, at the prior precision alpha and noise precision beta found by the paper's iteration,
  divided by N and averaged over classes. The ICML formulation of thuml/LogME's ``_fit_icml``: the
  evidence over the whole D-dimensional spectrum (directions the data do not span count with alpha
  alone) and both precisions bounded by the reference's epsilon (``alpha <= gamma / eps``,
  ``beta <= N / eps``), so that N <= D, where the features can fit any labels exactly, gives a
  finite score instead of beta running to infinity.
- LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
  Representations", ICML 2020): the mean log-likelihood of the labels under the "expected
  empirical predictor" built from the source classifier's soft predictions.
- NCE (Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019):
  minus the conditional entropy of the labels given the source classifier's top class.
- H-score (Bao et al., "An Information-theoretic Approach to Transferability in Task Transfer
  Learning", ICIP 2019), with the Ledoit-Wolf shrunk feature covariance of Ibrahim et al. ("Newer
  is not always better: rethinking transferability metrics", 2022, arXiv:2110.06893): with N <= D
  the plain covariance is singular and the plain score is whatever a pseudo-inverse makes of noise.

Higher is better for all four. LogME and the H-score read the pooled features; LEEP and NCE the
base's softmax over its source (ImageNet) classes, which the pooled features give through its
classifier without another forward pass (:func:`source_probabilities`).
"""

from __future__ import annotations

import math

from zoo.errors import UsageError

#: thuml/LogME's bound on both precisions (added to the denominators of alpha and beta)
LOGME_EPSILON = 1e-5
#: thuml/LogME's iteration: at most this many updates, stopping when alpha/beta moves under 1%
LOGME_STEPS, LOGME_TOL = 11, 0.01


def _check(features, labels) -> None:
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise UsageError(f"expected features (N, D) and labels (N,), got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if len(labels) < 2:
        raise UsageError("a transferability score needs at least 2 labelled images")


def logme(features, labels) -> float:
    """LogME of ``features`` (N, D) for integer ``labels`` (N,): the mean over classes of the log
    evidence per image (higher: the features fit the labels better).

    Computed from the singular values of the features and the projections of each label vector on
    the left singular vectors, whose squares do not depend on the order of the rows: permuting the
    images changes the score by float rounding only."""
    import torch

    _check(features, labels)
    f = features.double()
    n, d = f.shape
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    s2 = s * s
    scores = []
    for k in range(int(labels.max()) + 1):
        y = (labels == k).double()
        z2 = (u.T @ y) ** 2
        outside = max(float(y @ y) - float(z2.sum()), 0.0)  # ||y||^2 beyond the span of the features
        scores.append(_class_evidence(s2, z2, outside, n))
    return sum(scores) / len(scores)


def _class_evidence(s2, z2, outside: float, n: int) -> float:
    """The ICML iteration for one label vector, then its log evidence / n (``_fit_icml``'s
    ``each_evidence``, on the spectrum: ``s2`` the squared singular values, ``z2`` the squared
    projections of y on the left singular vectors, ``outside`` the rest of ||y||^2)."""
    alpha, beta = 1.0, 1.0
    for _ in range(LOGME_STEPS):
        ratio = alpha / beta
        denom = alpha + beta * s2
        gamma = float((beta * s2 / denom).sum())
        m2 = float((beta * beta * s2 * z2 / denom ** 2).sum())  # ||m||^2, m the posterior mean
        res = float((alpha * alpha * z2 / denom ** 2).sum()) + outside  # ||F m - y||^2
        alpha, beta = gamma / (m2 + LOGME_EPSILON), (n - gamma) / (res + LOGME_EPSILON)
        if alpha == 0 or abs(alpha / beta - ratio) / ratio < LOGME_TOL:  # alpha = 0: all-zero features
            break
    # as the reference: the last (alpha, beta) with the m of the step before. Over the D-dimensional
    # spectrum, D/2 log(alpha) - 1/2 sum log(alpha + beta s2) (zeros beyond rank) is this log1p sum
    # over the nonzero s2 alone: no large terms cancelling, and all-zero features stay finite
    spread = sum(math.log1p(beta * v / alpha) for v in s2.tolist() if v > 0)
    evidence = (n / 2 * math.log(beta) - spread / 2 - beta / 2 * (res + LOGME_EPSILON)
                - alpha / 2 * (m2 + LOGME_EPSILON) - n / 2 * math.log(2 * math.pi))
    return evidence / n


def source_probabilities(features, weight, bias):
    """The base's softmax over its source classes (N, C_s), float64, from pooled ``features`` and
    its classifier's ``weight`` (C_s, D) and ``bias`` (C_s,): its own predictions, no forward pass."""
    import torch

    logits = features.double() @ weight.double().T + bias.double()
    return torch.softmax(logits, dim=1)


def leep(source_probs, labels) -> float:
    """LEEP: (1/N) sum_i log sum_z P(y_i | z) theta_z(x_i), with theta the source probabilities
    (N, C_s) and P(y | z) the empirical conditional of the joint (1/N) sum_i theta_z(x_i) [y_i = y]."""
    import torch

    _check(source_probs, labels)
    theta = source_probs.double()
    onehot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).double()  # (N, C_t)
    joint = onehot.T @ theta / len(labels)  # (C_t, C_s)
    marginal = joint.sum(0, keepdim=True)
    # a source class no image gives any probability (softmax underflow) predicts nothing: 0, not 0/0
    conditional = torch.where(marginal > 0, joint / marginal.clamp_min(1e-300), torch.zeros_like(joint))
    eep = (theta @ conditional.T).gather(1, labels[:, None]).squeeze(1)  # P(y_i | x_i)
    return float(eep.log().mean())


def nce(source_labels, labels) -> float:
    """NCE: -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z), over the empirical joint of the target
    labels and the source classifier's top classes ``source_labels`` (N,)."""
    import torch

    _check(source_labels[:, None], labels)
    _, z = torch.unique(source_labels, return_inverse=True)  # only the source classes that occur
    joint = torch.zeros(int(labels.max()) + 1, int(z.max()) + 1, dtype=torch.float64)
    joint.index_put_((labels, z), torch.ones(len(labels), dtype=torch.float64), accumulate=True)
    joint /= len(labels)
    conditional = joint / joint.sum(0, keepdim=True)
    seen = joint > 0
    return float((joint[seen] * conditional[seen].log()).sum())


def ledoit_wolf_shrinkage(x, s=None) -> tuple[float, float]:
    """(shrinkage, mu) of the Ledoit-Wolf estimate (1 - shrinkage) X^T X / N + shrinkage mu I of
    the covariance of centred rows ``x`` (N, D) (scikit-learn's ``ledoit_wolf_shrinkage``, assume
    centred, without the dependency); ``s``: the singular values of ``x`` if already known."""
    import torch

    n, p = x.shape
    x2 = x * x
    trace = float(x2.sum()) / n  # of the empirical covariance
    mu = trace / p
    s = torch.linalg.svdvals(x) if s is None else s
    delta_ = float((s ** 4).sum()) / n ** 2  # ||X^T X / N||_F^2
    beta_ = float((x2.sum(1) ** 2).sum())  # sum_ij sum_k x_ki^2 x_kj^2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2 * mu * trace + p * mu * mu) / p
    return (0.0 if beta <= 0 or delta <= 0 else min(beta, delta) / delta), mu


def hscore(features, labels) -> float:
    """H-score with shrinkage: tr(cov_a(f)^-1 (1 - a) cov(E[f | y])), cov_a the Ledoit-Wolf shrunk
    covariance of the features with shrinkage a (a = 0: Bao et al.'s plain H-score, a pseudo-inverse).

    From the SVD of the centred features, never a D x D matrix: cov_a has the eigenvalues
    (1 - a) s^2 / N + a mu along the right singular vectors, and the class means lie in their span."""
    import torch

    _check(features, labels)
    f = features.double()
    f = f - f.mean(0)
    n = len(f)
    _, s, vh = torch.linalg.svd(f, full_matrices=False)
    shrinkage, mu = ledoit_wolf_shrinkage(f, s)
    onehot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).double()
    counts = onehot.sum(0)
    means = (onehot.T @ f) / counts.clamp_min(1)[:, None]  # (C, D): E[f | y] of each class
    along = ((means @ vh.T) ** 2 * (counts / n)[:, None]).sum(0)  # v_k^T cov(E[f | y]) v_k
    eigen = (1 - shrinkage) * s * s / n + shrinkage * mu
    kept = eigen > 1e-15 * float(eigen.max())  # what a pseudo-inverse keeps (rcond 1e-15, the reference's)
    return (1 - shrinkage) * float((along[kept] / eigen[kept]).sum())
