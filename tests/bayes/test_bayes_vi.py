"""Mean-field Gaussian VI against closed-form Bayesian linear regression.

With an orthogonal design (X^T X = N I) the posterior precision is diagonal, so the mean-field
family contains the exact posterior: the fitted means must match the closed-form posterior means
within 0.02 (a quarter of a posterior standard deviation, ~0.08 here) and the standard deviations
within 10%. For a correlated design, mean-field VI on a Gaussian target still gets the means right
and its standard deviations are 1 / sqrt(diag H) (smaller than the true marginals).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfbdl.bayes.hmc import BNNLogDensity
from tfbdl.bayes.vi import (
    DEFAULT_INIT_SCALE,
    MeanFieldVIResult,
    bnn_mean_field_vi,
    fit_mean_field_vi,
    mean_field_surrogate,
    predictive_samples,
)
from tfbdl.errors import InvalidOptionError, ShapeError

ALPHA, SIGMA = 1.0, 0.5  # prior precision, noise standard deviation


def _regression(X, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=X.shape[1])
    y = X @ w + SIGMA * rng.normal(size=X.shape[0])
    H = X.T @ X / SIGMA ** 2 + ALPHA * np.eye(X.shape[1])
    mean = np.linalg.solve(H, X.T @ y / SIGMA ** 2)
    Xt, yt = tf.constant(X), tf.constant(y)

    def log_joint(w):  # w [..., D] -> [...]
        f = tf.linalg.matmul(w, Xt, transpose_b=True)
        return -0.5 * tf.reduce_sum((yt - f) ** 2, -1) / SIGMA ** 2 - 0.5 * ALPHA * tf.reduce_sum(w ** 2, -1)

    return log_joint, mean, H


def _decaying(lr=0.05):
    return keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=200, decay_rate=0.7)


def test_mean_field_vi_is_exact_for_an_orthogonal_design():
    rng = np.random.default_rng(0)
    n, d = 40, 3
    Q, _ = np.linalg.qr(rng.normal(size=(n, d)))
    X = np.sqrt(n) * Q  # X^T X = n I
    log_joint, mean, H = _regression(X)
    np.testing.assert_allclose(H, np.diag(np.diag(H)), atol=1e-9)
    result = fit_mean_field_vi(log_joint, np.zeros(d), num_steps=1500, learning_rate=_decaying(), sample_size=16, seed=0)
    assert isinstance(result, MeanFieldVIResult) and result.losses.shape == (1500,)
    np.testing.assert_allclose(result.mean, mean, atol=0.02)
    np.testing.assert_allclose(result.stddev, 1 / np.sqrt(np.diag(H)), rtol=0.1)
    assert result.losses[-100:].mean() < result.losses[:10].mean()
    draws = result.sample(1000, seed=1)
    assert draws.shape == (1000, d)
    np.testing.assert_array_equal(result.sample(5, seed=2), result.sample(5, seed=2))


def test_mean_field_vi_on_a_correlated_design_and_list_state():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    log_joint, mean, H = _regression(X, seed=1)
    result = fit_mean_field_vi(lambda a, b: log_joint(tf.concat([a, b], -1)), [np.zeros(2), np.zeros(1)],
                               num_steps=1500, learning_rate=_decaying(), sample_size=16, seed=0)
    assert [m.shape for m in result.mean] == [(2,), (1,)]
    np.testing.assert_allclose(np.concatenate(result.mean), mean, atol=0.03)
    np.testing.assert_allclose(np.concatenate(result.stddev), 1 / np.sqrt(np.diag(H)), rtol=0.1)
    # the mean-field variances understate the true marginals for correlated posteriors
    assert np.all(np.concatenate(result.stddev) < np.sqrt(np.diag(np.linalg.inv(H))))


def test_surrogate_and_seeding():
    q = mean_field_surrogate(np.zeros(4, np.float32))
    assert isinstance(q, tfp.distributions.Distribution) and q.event_shape == (4,)
    np.testing.assert_allclose(q.stddev().numpy(), DEFAULT_INIT_SCALE, rtol=1e-6)
    assert len(q.trainable_variables) == 2
    log_joint, _, _ = _regression(np.eye(3) * 2.0)
    a = fit_mean_field_vi(log_joint, np.zeros(3), num_steps=50, learning_rate=0.05, sample_size=2, seed=5)
    b = fit_mean_field_vi(log_joint, np.zeros(3), num_steps=50, learning_rate=0.05, sample_size=2, seed=5)
    np.testing.assert_array_equal(a.mean, b.mean)
    with pytest.raises(InvalidOptionError):
        mean_field_surrogate(np.zeros(2), init_scale=0.0)
    with pytest.raises(InvalidOptionError):
        fit_mean_field_vi(log_joint, np.zeros(3), num_steps=0)


def test_bnn_mean_field_vi_and_predictive_samples():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-1, 1, size=20))
    y = np.sin(3 * x) + 0.1 * rng.normal(size=20)
    result = bnn_mean_field_vi((1, 16, 1), x, y, prior_scale=1.0, noise_scale=0.1, activation="tanh",
                               num_steps=600, learning_rate=0.02, sample_size=4, seed=0)
    assert isinstance(result.log_density, BNNLogDensity)
    assert result.mean.shape == (result.log_density.num_params,)
    assert result.losses[-50:].mean() < 0.2 * result.losses[:10].mean()
    preds = predictive_samples(result, x, num_samples=50, seed=0)
    assert preds.shape == (50, 20, 1)
    np.testing.assert_array_equal(preds, predictive_samples(result, x, num_samples=50, seed=0))
    # the predictive mean follows the data, and the draws differ (a posterior, not a point)
    assert np.sqrt(np.mean((preds.mean(0)[:, 0] - y) ** 2)) < 0.3
    assert preds.std(0).mean() > 1e-3
    x_test = np.linspace(-2, 2, 7)
    assert predictive_samples(result.surrogate, x_test, 3, 0, mlp_layer_sizes=(1, 16, 1), activation="tanh").shape == (3, 7, 1)
    with pytest.raises(InvalidOptionError):
        predictive_samples(result.surrogate, x_test)
    with pytest.raises(ShapeError):
        bnn_mean_field_vi((1, 4, 1), x, y, init_loc=np.zeros(3), num_steps=1)
