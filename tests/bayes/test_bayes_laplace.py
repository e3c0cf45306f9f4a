"""Laplace approximations against closed forms.

For Bayesian linear regression with known noise and a Gaussian prior the negative log joint is
quadratic, so its Hessian is exact and the Laplace posterior and evidence must equal the
closed-form posterior and log N(y | 0, sigma^2 I + X Sigma_p X^T) (float64, to 1e-8). The Keras
variants are checked against the closed-form (GGN / empirical-Fisher) precisions of linear models.
"""

import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tfbdl.bayes.laplace import (
    HessianNotPositiveDefiniteError,
    KerasLaplace,
    LaplacePosterior,
    diagonal_laplace,
    laplace_from_hessian,
    last_layer_laplace,
)
from tfbdl.errors import InvalidOptionError, ShapeError

LOG_2PI = math.log(2 * math.pi)


def _linear_gaussian_problem(seed=0, n=30, d=4, noise=0.3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    A = rng.normal(size=(d, d))
    prior_cov = A @ A.T / d + 0.5 * np.eye(d)  # a full (correlated) prior covariance
    w = rng.multivariate_normal(np.zeros(d), prior_cov)
    y = X @ w + noise * rng.normal(size=n)
    return X, y, prior_cov, noise


def _closed_form(X, y, prior_cov, noise):
    """Posterior mean / covariance by Gaussian conditioning, and the exact log evidence."""
    S = noise ** 2 * np.eye(len(y)) + X @ prior_cov @ X.T
    K = prior_cov @ X.T @ np.linalg.inv(S)
    mean = K @ y
    cov = prior_cov - K @ X @ prior_cov
    log_evidence = scipy.stats.multivariate_normal(np.zeros(len(y)), S).logpdf(y)
    return mean, cov, log_evidence


def _neg_log_joint_fn(X, y, prior_cov, noise):
    X, y = tf.constant(X), tf.constant(y)
    prior_prec = tf.constant(np.linalg.inv(prior_cov))
    n, d = X.shape
    _, logdet_prior = np.linalg.slogdet(prior_cov)

    def neg_log_joint(theta):
        r = y - tf.linalg.matvec(X, theta)
        nll = 0.5 * tf.reduce_sum(r * r) / noise ** 2 + n * math.log(noise) + 0.5 * n * LOG_2PI
        nlp = 0.5 * tf.reduce_sum(theta * tf.linalg.matvec(prior_prec, theta)) + 0.5 * logdet_prior + 0.5 * d * LOG_2PI
        return nll + nlp

    return neg_log_joint


def _grad_and_hessian(fn, theta):
    theta = tf.constant(theta)
    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            value = fn(theta)
        grad = inner.gradient(value, theta)
    return grad.numpy(), outer.jacobian(grad, theta).numpy()


def _laplace_of_linear_gaussian(X, y, prior_cov, noise):
    fn = _neg_log_joint_fn(X, y, prior_cov, noise)
    d = X.shape[1]
    g0, H = _grad_and_hessian(fn, np.zeros(d))
    theta_map = -np.linalg.solve(H, g0)  # one Newton step from 0 is exact for a quadratic
    g_map, H_map = _grad_and_hessian(fn, theta_map)
    assert np.max(np.abs(g_map)) < 1e-9
    return laplace_from_hessian(theta_map, H_map, float(fn(tf.constant(theta_map))))


# --------------------------------------------------------------------------- functional core


@pytest.mark.parametrize("seed,n,d", [(0, 30, 4), (1, 5, 8), (2, 100, 1)])
def test_laplace_equals_closed_form_for_linear_gaussian(seed, n, d):
    X, y, prior_cov, noise = _linear_gaussian_problem(seed, n, d)
    post = _laplace_of_linear_gaussian(X, y, prior_cov, noise)
    mean, cov, log_evidence = _closed_form(X, y, prior_cov, noise)
    assert isinstance(post, LaplacePosterior) and post.dim == d and post.jitter == 0.0
    np.testing.assert_allclose(post.mean, mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(post.covariance, cov, rtol=0, atol=1e-10)
    np.testing.assert_allclose(post.variance, np.diag(cov), rtol=0, atol=1e-10)
    assert abs(post.log_marginal_likelihood() - log_evidence) < 1e-8
    # the log density is the closed-form posterior's
    theta = mean + 0.1
    expected = scipy.stats.multivariate_normal(mean, cov).logpdf(theta)
    assert abs(post.log_prob(theta) - expected) < 1e-8


def test_samples_follow_the_posterior_and_are_seeded():
    X, y, prior_cov, noise = _linear_gaussian_problem(3, 20, 3)
    post = _laplace_of_linear_gaussian(X, y, prior_cov, noise)
    mean, cov, _ = _closed_form(X, y, prior_cov, noise)
    draws = post.sample(seed=7, num_samples=40_000)
    assert draws.shape == (40_000, 3)
    sd = np.sqrt(np.diag(cov))
    # Monte Carlo: 40k draws give standard errors of sd / 200 on the mean, ~0.7% on the covariance
    np.testing.assert_allclose(draws.mean(0), mean, atol=float(5 * sd.max() / 200))
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.05 * float(np.max(np.abs(cov))))
    np.testing.assert_array_equal(post.sample(seed=7), post.sample(seed=7))
    assert not np.array_equal(post.sample(seed=7), post.sample(seed=8))


def test_list_structure_and_diagonal_hessian():
    theta = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0])]
    precision = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    post = laplace_from_hessian(theta, precision, neg_log_joint_value=3.0)
    assert post.is_diagonal
    mean = post.mean
    assert [m.shape for m in mean] == [(2, 2), (1,)]
    np.testing.assert_array_equal(mean[0], theta[0])
    one = post.sample(seed=0)
    many = post.sample(seed=0, num_samples=6)
    assert [a.shape for a in one] == [(2, 2), (1,)]
    assert [a.shape for a in many] == [(6, 2, 2), (6, 1)]
    np.testing.assert_allclose(post.variance, 1 / precision)
    expected = -3.0 + 2.5 * LOG_2PI - 0.5 * np.sum(np.log(precision))
    assert abs(post.log_marginal_likelihood() - expected) < 1e-12
    # the diagonal and the equivalent full matrix agree
    full = laplace_from_hessian(theta, np.diag(precision), 3.0)
    assert abs(full.log_marginal_likelihood() - post.log_marginal_likelihood()) < 1e-12
    np.testing.assert_allclose(full.log_prob(many), post.log_prob(many), atol=1e-10)


def test_bad_hessians_raise_named_errors():
    with pytest.raises(HessianNotPositiveDefiniteError):
        laplace_from_hessian(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), 0.0)  # indefinite
    with pytest.raises(HessianNotPositiveDefiniteError):
        laplace_from_hessian(np.zeros(2), np.array([1.0, -1.0]), 0.0)
    with pytest.raises(ShapeError):
        laplace_from_hessian(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), 0.0)  # not symmetric
    with pytest.raises(ShapeError):
        laplace_from_hessian(np.zeros(3), np.eye(2), 0.0)
    with pytest.raises(InvalidOptionError):
        laplace_from_hessian(np.zeros(2), np.eye(2), float("nan"))


# --------------------------------------------------------------------------- Keras


def _linear_keras_problem(n=40, d=3, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(outputs, name="out")])
    return rng, X, model


def test_keras_diagonal_laplace_matches_closed_form_precision_diagonal():
    noise, lam = 0.5, 2.0
    rng, X, model = _linear_keras_problem()
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3 + noise * rng.normal(size=len(X))).astype(np.float32)
    Xt = np.concatenate([X, np.ones((len(X), 1))], axis=1).astype(np.float64)  # bias column
    H = Xt.T @ Xt / noise ** 2 + lam * np.eye(4)  # exact posterior precision of (kernel, bias)
    w_map = np.linalg.solve(H, Xt.T @ y / noise ** 2)
    model.get_layer("out").set_weights([w_map[:3, None].astype(np.float32), w_map[3:].astype(np.float32)])
    before = [v.numpy().copy() for v in model.trainable_variables]

    post = diagonal_laplace(model, (X, y), lam, likelihood="gaussian", noise_scale=noise, batch_size=16)
    assert isinstance(post, KerasLaplace) and post.dim == 4
    np.testing.assert_allclose(post.precision_diagonal, np.diag(H), rtol=1e-5)
    # the same from a tf.data pipeline
    ds = tf.data.Dataset.from_tensor_slices((X, y)).batch(7)
    post_ds = diagonal_laplace(model, ds, lam, likelihood="gaussian", noise_scale=noise)
    np.testing.assert_allclose(post_ds.precision_diagonal, np.diag(H), rtol=1e-5)
    # nll at the MAP, hence the evidence formula's parts
    r = y - Xt @ w_map
    nll = 0.5 * np.sum(r ** 2) / noise ** 2 + len(y) * (math.log(noise) + 0.5 * LOG_2PI)
    assert abs(post.nll - nll) < 1e-3 * abs(nll)
    log_prior = -0.5 * lam * w_map @ w_map + 2 * (math.log(lam) - LOG_2PI)
    expected = -nll + log_prior + 2 * LOG_2PI - 0.5 * np.sum(np.log(np.diag(H)))
    assert abs(post.log_marginal_likelihood() - expected) < 1e-3

    # empirical Fisher: sum_n r_n^2 x_n^2 / sigma^4 + lam
    ef = diagonal_laplace(model, (X, y), lam, likelihood="gaussian", noise_scale=noise, hessian="empirical_fisher")
    r32 = y - model.predict(X, verbose=0)[:, 0]
    expected_ef = (r32[:, None] ** 2 * Xt ** 2).sum(0) / noise ** 4 + lam
    np.testing.assert_allclose(ef.precision_diagonal, expected_ef, rtol=1e-4)

    # samples are lists in the variables' shapes; predict leaves the model's weights alone
    draws = post.sample(seed=0)
    assert [a.shape for a in draws] == [(3, 1), (1,)]
    mean_pred = post.predict(model, X[:5], num_samples=400, seed=1)
    assert mean_pred.shape == (5, 1)
    np.testing.assert_allclose(mean_pred[:, 0], Xt[:5] @ w_map, atol=0.05)
    for a, b in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())


def test_keras_last_layer_laplace_equals_closed_form_for_linear_gaussian():
    noise, lam = 0.4, 1.5
    rng, X, model = _linear_keras_problem(n=50, d=3, seed=1)
    y = (X @ np.array([0.5, 1.0, -1.0]) - 0.2 + noise * rng.normal(size=len(X))).astype(np.float32)
    Xt = np.concatenate([X, np.ones((len(X), 1))], axis=1).astype(np.float64)
    H = Xt.T @ Xt / noise ** 2 + lam * np.eye(4)
    w_map = np.linalg.solve(H, Xt.T @ y.astype(np.float64) / noise ** 2)
    model.get_layer("out").set_weights([w_map[:3, None].astype(np.float32), w_map[3:].astype(np.float32)])

    post = last_layer_laplace(model, (X, y), lam, likelihood="gaussian", noise_scale=noise, batch_size=32)
    assert post.kind == "last_layer" and post.dim == 4
    np.testing.assert_allclose(post.posterior.precision, H, rtol=1e-5, atol=1e-4)
    _, _, log_evidence = _closed_form(Xt, y.astype(np.float64), np.eye(4) / lam, noise)
    # float32 model outputs: the evidence agrees to float32 round-off of the residuals
    assert abs(post.log_marginal_likelihood() - log_evidence) < 1e-3
    # re-using the curvature under another prior precision gives that prior's evidence
    lam2 = 0.3
    other = post.with_prior_precision(lam2)
    H2 = Xt.T @ Xt / noise ** 2 + lam2 * np.eye(4)
    r = y - Xt @ w_map
    nll = 0.5 * np.sum(r ** 2) / noise ** 2 + len(y) * (math.log(noise) + 0.5 * LOG_2PI)
    log_prior = -0.5 * lam2 * w_map @ w_map + 2 * (math.log(lam2) - LOG_2PI)
    expected = -nll + log_prior + 2 * LOG_2PI - 0.5 * np.linalg.slogdet(H2)[1]
    assert abs(other.log_marginal_likelihood() - expected) < 1e-3


def test_categorical_last_layer_and_diagonal_agree_with_explicit_ggn():
    rng = np.random.default_rng(2)
    n, d_in, width, classes = 60, 4, 5, 3
    X = rng.normal(size=(n, d_in)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((d_in,)), keras.layers.Dense(width, activation="tanh", name="hidden"),
                              keras.layers.Dense(classes, name="logits")])
    lam = 1.0
    last = last_layer_laplace(model, (X, y), lam, batch_size=25)
    # explicit GGN of the last layer: sum_n (phi phi^T) kron (diag p - p p^T)
    W1, b1 = (w.astype(np.float64) for w in model.get_layer("hidden").get_weights())
    W2, b2 = (w.astype(np.float64) for w in model.get_layer("logits").get_weights())
    phi = np.tanh(X @ W1 + b1)
    logits = phi @ W2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    phit = np.concatenate([phi, np.ones((n, 1))], axis=1)
    lam_n = np.einsum("nk,kl->nkl", p, np.eye(classes)) - np.einsum("nk,nl->nkl", p, p)
    ggn = np.einsum("ni,nj,nkl->ikjl", phit, phit, lam_n).reshape((width + 1) * classes, -1)
    np.testing.assert_allclose(last.curvature, ggn, rtol=1e-4, atol=1e-5)
    nll = -np.sum(np.log(p[np.arange(n), y]))
    assert abs(last.nll - nll) < 1e-4 * nll

    # the diagonal Laplace over the same two variables has the same diagonal
    layer = model.get_layer("logits")
    diag = diagonal_laplace(model, (X, y), lam, variables=[layer.kernel, layer.bias], batch_size=25)
    np.testing.assert_allclose(diag.precision_diagonal, np.diag(ggn) + lam, rtol=1e-4)
    # one-hot labels give the same answer
    onehot = np.eye(classes, dtype=np.float32)[y]
    diag_oh = diagonal_laplace(model, (X, onehot), lam, variables=[layer.kernel, layer.bias])
    np.testing.assert_allclose(diag_oh.precision_diagonal, diag.precision_diagonal, rtol=1e-6)

    # predictions are probabilities; the model keeps its weights
    before = [v.numpy().copy() for v in model.trainable_variables]
    for post in (last, diagonal_laplace(model, (X, y), lam)):
        probs = post.predict(model, X[:7], num_samples=5, seed=3)
        assert probs.shape == (7, classes)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
        assert np.all(probs >= 0)
        np.testing.assert_allclose(post.predict(model, X[:7], num_samples=5, seed=3), probs)
    for a, b in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())
    assert np.isfinite(last.log_marginal_likelihood())


def test_keras_laplace_input_errors():
    _, X, model = _linear_keras_problem()
    y = np.zeros(len(X), np.float32)
    with pytest.raises(InvalidOptionError):
        diagonal_laplace(model, (X, y), prior_precision=0.0, likelihood="gaussian")
    with pytest.raises(InvalidOptionError):
        diagonal_laplace(model, (X, y), 1.0, likelihood="poisson")
    with pytest.raises(InvalidOptionError):
        diagonal_laplace(model, (X, y), 1.0, likelihood="gaussian", hessian="exact")
    with pytest.raises(InvalidOptionError):
        diagonal_laplace(model, [X], 1.0, likelihood="gaussian")
    softmax_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(InvalidOptionError):
        last_layer_laplace(softmax_model, (X, y), 1.0)
    post = diagonal_laplace(model, (X, y), 1.0, likelihood="gaussian")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ShapeError):
        post.predict(other, np.zeros((2, 4), np.float32), num_samples=2)
