"""SGLD and HMC recover a known 2-D correlated Gaussian; the Bayesian MLP log density is sane.

Tolerances (fixed seeds, so the runs are deterministic; chosen with margin over seeds 0-7):
- SGLD (60k full-batch steps, step size 0.15 (1 + t)^-0.1, i.e. 0.15 -> 0.05): mean within 0.1
  per coordinate, covariance entries within 15% (the discretisation inflates the variance in the
  stiff direction by ~1 / (1 - eps lambda_max / 4), a few percent here).
- HMC (32 chains x 300 draws, 3 leapfrog steps): mean within 0.05, covariance entries within 7%,
  acceptance rate within [0.6, 0.9] around the 0.75 the step-size adaptation targets.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl.bayes.hmc import BNNLogDensity, HMCResult, bnn_log_prob, hmc_sample, predict_bnn
from tfbdl.bayes.sgld import SGLD, PolynomialDecay, polynomial_decay, sgld_sample
from tfbdl.errors import InvalidOptionError, ShapeError

MEAN = np.array([1.0, -0.5])
COV = np.array([[1.0, 0.6], [0.6, 0.8]])
PREC = np.linalg.inv(COV)


def gaussian_log_prob(x):
    """log N(x | MEAN, COV) up to a constant, for x [..., 2]."""
    d = x - tf.constant(MEAN, x.dtype)
    return -0.5 * tf.reduce_sum(d * tf.linalg.matvec(tf.constant(PREC, x.dtype), d), axis=-1)


# --------------------------------------------------------------------------- SGLD


def test_polynomial_decay_schedule():
    sched = polynomial_decay(0.5, 10.0, 0.55)
    assert isinstance(sched, PolynomialDecay)
    assert sched(0) == pytest.approx(0.5 * 10.0 ** -0.55)
    assert sched(90) == pytest.approx(0.5 * 100.0 ** -0.55)
    assert polynomial_decay(0.3, 1.0, 0.0)(1000) == pytest.approx(0.3)
    with pytest.raises(InvalidOptionError):
        polynomial_decay(-1.0)
    with pytest.raises(InvalidOptionError):
        polynomial_decay(1.0, gamma=2.0)


def test_sgld_recovers_a_correlated_gaussian():
    result = sgld_sample(lambda params, batch: gaussian_log_prob(params[0]), [np.zeros(2)], data_size=1,
                         batches=None, num_steps=60_000, step_size_schedule=polynomial_decay(0.15, 1.0, 0.1),
                         thinning=20, burn_in=2_000, seed=0)
    samples = result.samples[0]
    assert samples.shape == (2_900, 2) and result.step_sizes.shape == (2_900,)
    assert result.step_sizes[0] > result.step_sizes[-1]
    np.testing.assert_allclose(samples.mean(0), MEAN, atol=0.1)
    np.testing.assert_allclose(np.cov(samples.T), COV, rtol=0.15)


def test_sgld_thinning_seeds_and_minibatches():
    def lp(params, batch):  # per-example mean log-likelihood of a Gaussian location model
        return -0.5 * tf.reduce_mean(tf.square(batch - params[0]))

    data = np.random.default_rng(0).normal(2.0, 1.0, size=64)
    ds = tf.data.Dataset.from_tensor_slices(data).batch(16)  # repeated by the sampler
    kwargs = dict(data_size=64, batches=ds, num_steps=50, step_size_schedule=1e-3, thinning=5, burn_in=10,
                  log_prior_fn=lambda params: -0.5 * tf.reduce_sum(tf.square(params[0])))
    a = sgld_sample(lp, [np.zeros(1)], seed=3, **kwargs)
    b = sgld_sample(lp, [np.zeros(1)], seed=3, **kwargs)
    c = sgld_sample(lp, [np.zeros(1)], seed=4, **kwargs)
    assert a.samples[0].shape == (8, 1)  # (50 - 10) // 5
    np.testing.assert_array_equal(a.samples[0], b.samples[0])
    assert not np.array_equal(a.samples[0], c.samples[0])
    # a single array in, a single array out
    single = sgld_sample(lambda p, batch: gaussian_log_prob(p[0]), np.zeros(2), 1, num_steps=10, step_size_schedule=0.1)
    assert isinstance(single.samples, np.ndarray) and single.samples.shape == (10, 2)
    with pytest.raises(InvalidOptionError):
        sgld_sample(lp, [np.zeros(1)], seed=0, **{**kwargs, "burn_in": 50})
    with pytest.raises(InvalidOptionError):
        sgld_sample(lambda p, batch: tf.constant(0.0, tf.float64), [np.zeros(1)], 1, num_steps=2)
    with pytest.raises(InvalidOptionError):  # a one-shot iterator that runs out
        sgld_sample(lp, [np.zeros(1)], 64, iter([data[:16]]), num_steps=3, step_size_schedule=1e-3)


def test_keras_sgld_samples_bayesian_linear_regression():
    rng = np.random.default_rng(1)
    n, noise, lam = 100, 0.5, 1.0
    x = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    y = (1.5 * x[:, 0] - 0.5 + noise * rng.normal(size=n)).astype(np.float32)
    xt = np.concatenate([x, np.ones((n, 1))], axis=1).astype(np.float64)
    H = xt.T @ xt / noise ** 2 + lam * np.eye(2)
    post_mean = np.linalg.solve(H, xt.T @ y / noise ** 2)
    post_sd = np.sqrt(np.diag(np.linalg.inv(H)))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    before = [v.numpy().copy() for v in model.trainable_variables]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(n)  # full batch: exact gradients
    sampler = SGLD(model, data_size=n, likelihood="gaussian", noise_scale=noise, prior_precision=lam,
                   step_size_schedule=2e-3, seed=0)
    samples = sampler.run(ds, num_steps=2_000, thinning=2, burn_in=400)
    assert len(samples) == 800 and [a.shape for a in samples[0]] == [(1, 1), (1,)]
    flat = np.array([[s[0][0, 0], s[1][0]] for s in samples])
    np.testing.assert_allclose(flat.mean(0), post_mean, atol=0.5 * post_sd.max())
    np.testing.assert_allclose(flat.std(0), post_sd, rtol=0.3)
    pred = sampler.predict(x[:4], num_samples=100)
    assert pred.shape == (4, 1)
    np.testing.assert_allclose(pred[:, 0], xt[:4] @ post_mean, atol=0.1)
    for a, b in zip(before, model.trainable_variables):  # the model itself is never changed
        np.testing.assert_array_equal(a, b.numpy())


# --------------------------------------------------------------------------- HMC


def test_hmc_recovers_a_correlated_gaussian():
    result = hmc_sample(gaussian_log_prob, np.zeros(2), num_results=300, num_burnin=300, step_size=0.1,
                        num_leapfrog=3, num_chains=32, seed=0)
    assert isinstance(result, HMCResult)
    assert result.samples.shape == (300, 32, 2) and result.target_log_prob.shape == (300, 32)
    draws = result.flat_samples()
    np.testing.assert_allclose(draws.mean(0), MEAN, atol=0.05)
    np.testing.assert_allclose(np.cov(draws.T), COV, rtol=0.07)
    assert 0.6 <= result.acceptance_rate <= 0.9
    assert result.acceptance_rate_per_chain.shape == (32,)
    again = hmc_sample(gaussian_log_prob, np.zeros(2), num_results=300, num_burnin=300, step_size=0.1,
                       num_leapfrog=3, num_chains=32, seed=0)
    np.testing.assert_array_equal(again.samples, result.samples)


def test_hmc_without_adaptation_keeps_and_reports_the_given_step_size():
    for options in ({"adapt_step_size": False, "num_burnin": 50}, {"num_burnin": 0}):
        result = hmc_sample(gaussian_log_prob, np.zeros(2), num_results=200, step_size=0.25, num_leapfrog=3,
                            num_chains=16, seed=2, **options)
        assert result.step_size == pytest.approx(0.25)
        np.testing.assert_allclose(result.flat_samples().mean(0), MEAN, atol=0.15)


def test_hmc_list_state_and_errors():
    def lp(a, b):
        return gaussian_log_prob(tf.concat([a, b], axis=-1))

    result = hmc_sample(lp, [np.zeros((4, 1)), np.zeros((4, 1))], num_results=10, num_burnin=10, step_size=0.3,
                        num_leapfrog=3, seed=1)
    assert isinstance(result.samples, list) and [s.shape for s in result.samples] == [(10, 4, 1), (10, 4, 1)]
    with pytest.raises(ShapeError):  # one value for all chains
        hmc_sample(lambda x: tf.reduce_sum(gaussian_log_prob(x)), np.zeros(2), num_chains=3, num_results=2)
    with pytest.raises(InvalidOptionError):
        hmc_sample(gaussian_log_prob, np.zeros(2), num_chains=2, step_size=-1.0)


# --------------------------------------------------------------------------- Bayesian MLP


def _toy_regression(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-1, 1, size=n))
    y = np.sin(3 * x) + 0.1 * rng.normal(size=n)
    return x, y


def test_bnn_log_prob_shapes_and_closed_form():
    x, y = _toy_regression()
    sizes = (1, 8, 8, 1)
    f = bnn_log_prob(sizes, x, y, prior_scale=1.0, noise_scale=0.1)
    assert isinstance(f, BNNLogDensity)
    assert f.num_params == 8 + 8 + 64 + 8 + 8 + 1
    w = f.sample_prior(seed=0, num_samples=5)
    assert w.shape == (5, f.num_params)
    assert f(w).shape == (5,) and f(w[0]).shape == ()
    parts = f.unflatten(w)
    assert [tuple(p.shape) for p in parts] == [(5, 1, 8), (5, 8), (5, 8, 8), (5, 8), (5, 8, 1), (5, 1)]
    np.testing.assert_allclose(f(parts).numpy(), f(w).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(f.flatten(parts).numpy(), w.numpy())
    # chains of chains: any leading axes
    assert f(tf.reshape(w[:4], [2, 2, -1])).shape == (2, 2)
    # against a numpy forward pass and closed-form Gaussian densities
    W1, b1, W2, b2, W3, b3 = (p.numpy()[0] for p in parts)
    out = np.maximum(np.maximum(x[:, None] @ W1 + b1, 0) @ W2 + b2, 0) @ W3 + b3
    lik = np.sum(-0.5 * ((y[:, None] - out) / 0.1) ** 2 - np.log(0.1) - 0.5 * np.log(2 * np.pi))
    prior = np.sum(-0.5 * w.numpy()[0] ** 2 - 0.5 * np.log(2 * np.pi))
    assert f(w[0]).numpy() == pytest.approx(lik + prior, rel=1e-10)
    np.testing.assert_allclose(predict_bnn(w[:1], x, sizes)[0], out, rtol=1e-10)
    np.testing.assert_allclose(predict_bnn([p.numpy()[:1] for p in parts], x)[0], out, rtol=1e-10)
    with pytest.raises(ShapeError):
        f(np.zeros(7))
    with pytest.raises(ShapeError):
        bnn_log_prob(sizes, x, y[:-1])
    with pytest.raises(InvalidOptionError):
        predict_bnn(w, x)


def test_bnn_log_prob_higher_at_a_fitted_solution_and_hmc_runs():
    import scipy.optimize

    x, y = _toy_regression()
    sizes = (1, 16, 1)
    f = bnn_log_prob(sizes, x, y, prior_scale=1.0, noise_scale=0.1, activation="tanh")
    assert f.dtype == tf.float64

    @tf.function
    def neg_and_grad(w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            value = -f(w)
        return value, tape.gradient(value, w)

    def fun(w):
        value, grad = neg_and_grad(tf.constant(w))
        return float(value), grad.numpy()

    fit = scipy.optimize.minimize(fun, f.sample_prior(seed=1).numpy(), jac=True, method="L-BFGS-B",
                                  options={"maxiter": 500})
    w_fit = tf.constant(fit.x)
    random_lp = f(f.sample_prior(seed=2, num_samples=20)).numpy()
    assert f(w_fit).numpy() > random_lp.max() + 100
    rmse = np.sqrt(np.mean((predict_bnn(w_fit, x, f)[:, 0] - y) ** 2))
    assert rmse < 0.2
    # a short batched HMC run from the fitted weights: shapes, and it stays in the good region
    result = hmc_sample(f, w_fit, num_results=20, num_burnin=20, step_size=1e-3, num_leapfrog=5, num_chains=4, seed=0)
    assert result.samples.shape == (20, 4, f.num_params)
    preds = predict_bnn(result, x, f)
    assert preds.shape == (20, 4, len(x), 1)
    assert np.all(result.target_log_prob > random_lp.max())
    assert 0.0 < result.acceptance_rate <= 1.0
