"""Training-free scores (zoo/compare/scores.py) against their formulas: LogME against a float64
transcription of thuml/LogME's ``_fit_icml`` on real lite0 features of skimage's faces (N < D and
N > D, class order and permuted), LEEP and NCE on a case worked by hand, the H-score against
scikit-learn's Ledoit-Wolf."""

import math

import numpy as np
import pytest
import torch

from zoo.compare.scores import hscore, ledoit_wolf_shrinkage, leep, logme, nce, source_probabilities
from zoo.errors import UsageError


@pytest.fixture(scope="module")
def faces(small_home):
    """lite0 on ``skimage.data.lfw_subset()`` (100 faces, then 100 non-faces): the pooled features
    (200 x 1280: N < D), the output of blocks.4 average-pooled (200 x 112: N > D), the labels, and
    the ImageNet classifier (weight, bias) read from the weights file."""
    from PIL import Image
    from skimage.data import lfw_subset

    import zoo
    from zoo.model.heads import imagenet_classifier
    from zoo.weights.pull import open_weights

    with pytest.MonkeyPatch.context() as mp:  # module-scoped, offline (lite0 is bundled): the session's
        mp.setenv("ZOO_HOME", str(small_home))  # lite0 home, so the weights are converted once for both
        mp.setenv("ZOO_OFFLINE", "1")
        model = zoo.load("efficientnet_lite0", head=0)
        classifier = imagenet_classifier(model, open_weights(model.card))
    transform = zoo.transforms(model)
    x = torch.stack([transform(Image.fromarray((im * 255).astype(np.uint8)).convert("RGB")) for im in lfw_subset()])
    box = {}
    hook = model.blocks[4].register_forward_hook(lambda _m, _i, out: box.__setitem__("mid", out.mean(dim=(2, 3))))
    with torch.inference_mode():
        pooled = model(x)
    hook.remove()
    labels = torch.cat([torch.zeros(100), torch.ones(100)]).long()
    return {"pooled": pooled.clone(), "mid": box["mid"].clone(), "labels": labels, "classifier": classifier}


PERMUTATION = torch.randperm(200, generator=torch.Generator().manual_seed(0))


def reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """thuml/LogME's ``LogME(regression=False)._fit_icml`` (with ``each_evidence``), transcribed to
    plain float64 numpy: the dense SVD of F^T F, m and ||y - F m|| with matrices."""
    f = f.astype(np.float64)
    fh, ft = f, f.T
    d, n = ft.shape
    v, s, vh = np.linalg.svd(ft @ fh, full_matrices=True)
    evidences = []
    for i in range(int(y.max()) + 1):
        y_ = (y == i).astype(np.float64)
        epsilon, alpha, beta = 1e-5, 1.0, 1.0
        lam = alpha / beta
        tmp = vh @ (ft @ y_)
        for _ in range(11):
            gamma = (s / (s + lam)).sum()
            m = v @ (tmp * beta / (alpha + beta * s))
            alpha_de = (m * m).sum()
            alpha = gamma / (alpha_de + epsilon)
            beta_de = ((y_ - fh @ m) ** 2).sum()
            beta = (n - gamma) / (beta_de + epsilon)
            new_lam = alpha / beta
            if np.abs(new_lam - lam) / lam < 0.01:
                break
            lam = new_lam
        evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * s))
                    - beta / 2.0 * (beta_de + epsilon) - alpha / 2.0 * (alpha_de + epsilon) - n / 2.0 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def single_threaded():
    """numpy's BLAS on one thread: beside torch's thread pool on a busy machine, its threads spin
    for seconds (a 1280 x 1280 SVD: 1 s of CPU on one thread, 6 on two)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


CASES = {  # name -> (features key, rows)
    "N<D class order": ("pooled", slice(None)),
    "N<D permuted": ("pooled", PERMUTATION),
    "N<D first 100 permuted": ("pooled", PERMUTATION[:100]),
    "N>D class order": ("mid", slice(None)),
    "N>D permuted": ("mid", PERMUTATION),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logme_is_finite_and_equals_the_reference_on_real_features(faces, case):
    key, rows = CASES[case]
    f, y = faces[key][rows], faces["labels"][rows]
    assert (f.shape[0] < f.shape[1]) == case.startswith("N<D")
    ours = logme(f, y)
    assert math.isfinite(ours)
    with single_threaded():
        expected = reference_logme(f.numpy(), y.numpy())
    assert ours == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("key", ["pooled", "mid"])
def test_logme_does_not_depend_on_the_order_of_the_rows(faces, key):
    f, y = faces[key], faces["labels"]
    base = logme(f, y)
    for seed in range(5):
        p = torch.randperm(200, generator=torch.Generator().manual_seed(seed))
        assert logme(f[p], y[p]) == pytest.approx(base, rel=1e-9)  # float rounding only


def test_logme_is_finite_on_random_subsets_smaller_than_the_feature_size(faces):
    """The old fixed point gave NaN on 48 of 100 such subsets of 100 faces."""
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        rows = torch.randperm(200, generator=g)[:100]
        assert math.isfinite(logme(faces["pooled"][rows], faces["labels"][rows]))


def test_logme_ranks_real_labels_above_shuffled_ones(faces):
    y = faces["labels"]
    shuffled = y[torch.randperm(200, generator=torch.Generator().manual_seed(2))]
    assert logme(faces["pooled"], y) > logme(faces["pooled"], shuffled) + 0.05


def test_logme_of_constant_features_is_finite():
    assert math.isfinite(logme(torch.zeros(10, 4), torch.tensor([0, 1] * 5)))


def test_leep_and_nce_on_a_case_worked_by_hand():
    # 4 images, 2 source classes (theta), 2 target classes (y):
    #   theta = [.8 .2], [.4 .6], [.3 .7], [.1 .9];  y = 0, 0, 1, 1
    # LEEP: joint P(y, z) = 1/4 sum theta over the images of class y:
    #   y=0: z0 (.8+.4)/4 = .3, z1 (.2+.6)/4 = .2;  y=1: z0 (.3+.1)/4 = .1, z1 (.7+.9)/4 = .4
    #   P(z0) = .4, P(z1) = .6 -> P(y=0|z0) = 3/4, P(y=1|z0) = 1/4, P(y=0|z1) = 1/3, P(y=1|z1) = 2/3
    #   EEP of each image's own label: .8*3/4 + .2*1/3 = 2/3;  .4*3/4 + .6*1/3 = 1/2;
    #                                  .3*1/4 + .7*2/3 = 13/24;  .1*1/4 + .9*2/3 = 5/8
    #   LEEP = 1/4 log(2/3 * 1/2 * 13/24 * 5/8) = 1/4 log(65/576)
    # NCE: top source classes z = 0, 1, 1, 1. P(z0) = 1/4 holds only y=0 (entropy 0);
    #   P(z1) = 3/4 holds y = 0, 1, 1: H = log 3 - 2/3 log 2;  NCE = -3/4 (log 3 - 2/3 log 2)
    theta = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert leep(theta, y) == pytest.approx(math.log(65 / 576) / 4, rel=1e-12)
    assert nce(theta.argmax(1), y) == pytest.approx(-0.75 * (math.log(3) - 2 / 3 * math.log(2)), rel=1e-12)
    # labels the source classes predict perfectly: NCE is at its maximum, 0
    assert nce(torch.tensor([5, 5, 9, 9]), y) == 0.0


def test_source_probabilities_are_the_models_own_imagenet_predictions(faces, tmp_path, monkeypatch):
    """Softmax of the classifier read from the weights file over the pooled features = softmax of
    the full model's logits: LEEP and NCE need no forward pass beyond the features."""
    import zoo

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    full = zoo.load("efficientnet_lite0")
    from PIL import Image
    from skimage.data import lfw_subset

    transform = zoo.transforms(full)
    x = torch.stack([transform(Image.fromarray((im * 255).astype(np.uint8)).convert("RGB")) for im in lfw_subset()[:4]])
    with torch.inference_mode():
        logits = full(x)
    probs = source_probabilities(faces["pooled"][:4], *faces["classifier"])
    assert probs.shape == (4, 1000)
    torch.testing.assert_close(probs, logits.double().softmax(1), atol=1e-5, rtol=1e-4)


def test_leep_and_nce_on_real_predictions_agree_with_the_reference_code(faces):
    """thuml/LogME's LEEP.py and NCE.py, transcribed, on lite0's ImageNet predictions of the faces."""
    probs = source_probabilities(faces["pooled"], *faces["classifier"])
    y = faces["labels"]
    theta, t = probs.numpy(), y.numpy()
    joint = np.stack([theta[t == i].sum(0) / len(t) for i in range(2)])
    p_y_given_z = (joint / joint.sum(0, keepdims=True)).T
    expected_leep = np.mean(np.log((theta @ p_y_given_z)[np.arange(len(t)), t]))
    assert leep(probs, y) == pytest.approx(expected_leep, rel=1e-9)
    z = theta.argmax(1)
    counts = np.zeros((2, z.max() + 1))
    np.add.at(counts, (t, z), 1 / len(t))
    pz = counts.sum(0)
    seen = pz > 0
    cond = counts[:, seen] / pz[seen]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.nansum(-cond * np.log(cond), axis=0)
    assert nce(probs.argmax(1), y) == pytest.approx(-(h * pz[seen]).sum(), rel=1e-9)
    assert leep(probs, y) < 0 and nce(probs.argmax(1), y) <= 0


@pytest.mark.parametrize("key", ["pooled", "mid"])
def test_hscore_equals_its_definition_with_scikit_learns_ledoit_wolf(faces, key):
    from sklearn.covariance import LedoitWolf

    f, y = faces[key].double(), faces["labels"]
    fc = (f - f.mean(0)).numpy()
    with single_threaded():
        lw = LedoitWolf(assume_centered=True).fit(fc)
        g = np.stack([fc[y.numpy() == c].mean(0) for c in y.numpy()])  # E[f | y] of each image
        cov_g = g.T @ g / len(g)  # (the mean of g is 0: f is centred)
        expected = np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * cov_g))
    shrinkage, mu = ledoit_wolf_shrinkage(torch.tensor(fc))
    assert 0 < shrinkage < 1 and shrinkage == pytest.approx(lw.shrinkage_, rel=1e-9)
    assert mu == pytest.approx(np.trace(fc.T @ fc / len(fc)) / fc.shape[1], rel=1e-12)
    assert hscore(f, y) == pytest.approx(expected, rel=1e-6)
    # below 2 classes' bound of 1; with N < D nearly any labels separate (0.999 against 0.937 shuffled)
    shuffled = y[torch.randperm(200, generator=torch.Generator().manual_seed(3))]
    assert hscore(f, shuffled) < hscore(f, y) < 1


def test_scores_refuse_mismatched_input():
    with pytest.raises(UsageError, match="features"):
        logme(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(UsageError, match="at least 2"):
        leep(torch.ones(1, 3) / 3, torch.zeros(1, dtype=torch.long))
