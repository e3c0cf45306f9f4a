"""One-vs-all SVGP classifiers on toy 2-D problems."""

import numpy as np
import pytest

gpflow = pytest.importorskip("gpflow")

from tfbdl.errors import InvalidOptionError  # noqa: E402
from tfbdl.data.subsets import round_robin_indices  # noqa: E402
from tfbdl.gp import OneVsAllSVGP  # noqa: E402


def blobs(n, seed):
    """Three well separated 2-D Gaussian blobs, labels 0, 1, 2 in turn."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    y = np.arange(n) % 3
    return centres[y] + 0.7 * rng.standard_normal((n, 2)), y


@pytest.fixture(scope="module")
def fitted_blobs():
    X, y = blobs(90, seed=0)
    clf = OneVsAllSVGP(lambda: gpflow.kernels.SquaredExponential(lengthscales=1.0), 3, 15, seed=0)
    history = clf.fit(X, y, steps=150, batch_size=45, learning_rate=0.05, log_every=50)
    return clf, history, X, y


def test_blobs_accuracy_and_probabilities(fitted_blobs):
    clf, history, _, _ = fitted_blobs
    Xt, yt = blobs(90, seed=1)
    p = clf.predict_proba(Xt)
    assert p.shape == (90, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert (p >= 0).all() and (p <= 1).all()
    assert np.mean(p.argmax(axis=1) == yt) >= 0.9
    np.testing.assert_array_equal(clf.predict(Xt), p.argmax(axis=1))
    assert [h["step"] for h in history] == [50, 100, 150]
    assert history[-1]["loss"] < history[0]["loss"]


def test_models_have_separate_kernels_and_stratified_inducing_points(fitted_blobs):
    clf, _, X, y = fitted_blobs
    assert len(clf.models) == 3
    assert len({id(m.kernel) for m in clf.models}) == 3
    assert np.bincount(y[clf.inducing_indices], minlength=3).tolist() == [5, 5, 5]
    np.testing.assert_array_equal(clf.models[0].inducing_variable.Z.numpy(), X[clf.inducing_indices])
    elbo = clf.elbo()
    assert elbo.shape == (3,) and np.isfinite(elbo).all() and (elbo < 0).all()


def test_random_labels_can_be_memorised():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 2))
    y = rng.integers(0, 3, 60)
    kernel = lambda: gpflow.kernels.SquaredExponential(lengthscales=0.2, variance=2.0)  # noqa: E731
    clf = OneVsAllSVGP(kernel, 3, 60, seed=0)
    clf.fit(X, y, steps=150, batch_size=60, learning_rate=0.01, seed=0)
    assert np.mean(clf.predict(X) == y) > 0.6


def test_inducing_indices_are_balanced_and_seeded():
    """The inducing points are picked by round_robin_indices: classes in turn, short ones giving theirs away."""
    y = np.array([0] * 50 + [1] * 30 + [2] * 4)
    idx = round_robin_indices(y, 20, seed=3)
    assert np.bincount(y[idx]).tolist() == [8, 8, 4]
    assert np.unique(idx).size == 20
    np.testing.assert_array_equal(idx, round_robin_indices(y, 20, seed=3))
    assert round_robin_indices(y, 1000, seed=0).size == y.size


def test_errors_before_fit_and_bad_labels():
    clf = OneVsAllSVGP(gpflow.kernels.SquaredExponential, 3, 5)
    with pytest.raises(InvalidOptionError, match="fit"):
        clf.predict_proba(np.zeros((2, 2)))
    with pytest.raises(InvalidOptionError):
        clf.fit(np.zeros((4, 2)), np.array([0, 1, 2, 3]), steps=1)


def test_one_vs_all_svgp_with_a_cnn_kernel():
    """The SVGP classifiers take the infinite-width CNN kernels like any GPflow kernel."""
    from tfbdl.kernels import ConvNetKernel, Conv2d, Readout, ReLU, Sequential

    rng = np.random.default_rng(0)
    n, side = 60, 6
    labels = np.arange(n) % 3
    images = rng.random((n, side, side)) * 0.2
    for i, label in enumerate(labels):  # class 0: bright top rows, 1: bright left columns, 2: centre
        if label == 0:
            images[i, :2, :] += 0.8
        elif label == 1:
            images[i, :, :2] += 0.8
        else:
            images[i, 2:4, 2:4] += 0.8
    X = images.reshape(n, -1)

    def kernel_factory():
        return ConvNetKernel(Sequential(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(), Readout(var_weight=1.0)),
                             (side, side, 1), normalise=False)

    model = OneVsAllSVGP(kernel_factory, num_classes=3, num_inducing=12, seed=0)
    model.fit(X[:45], labels[:45], steps=60, batch_size=45, learning_rate=0.01, seed=0)
    probabilities = model.predict_proba(X[45:])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
    assert np.mean(probabilities.argmax(axis=1) == labels[45:]) >= 0.9
