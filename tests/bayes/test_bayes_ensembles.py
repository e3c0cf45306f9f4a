"""Deep ensembles: MAP members under a Gaussian prior, per-member resume, the BMA predictive."""

import math

import numpy as np
import pytest

from tfbdl.bayes.ensembles import (DeepEnsemble, average_probabilities, fit_regression_member,
                                   mixture_log_likelihood, regression_predictive)
from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError


def _linear_data(n=60, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0]) + 0.7 + noise * rng.standard_normal(n)).astype(np.float32)
    return x, y


def _ridge_map(x, y, noise, prior):
    """Closed-form MAP of y = x w + b under N(0, prior^2) on w and b: (A'A/s^2 + I/p^2)^-1 A'y/s^2."""
    a = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    precision = a.T @ a / noise ** 2 + np.eye(a.shape[1]) / prior ** 2
    return np.linalg.solve(precision, a.T @ y.astype(np.float64) / noise ** 2)


def test_linear_members_reach_the_closed_form_map_under_the_prior(tmp_path):
    from tfbdl.nn import mlp

    x, y = _linear_data()
    noise, prior = 0.5, 0.3  # a prior strong enough that the MAP differs visibly from least squares
    expected = _ridge_map(x, y, noise, prior)
    least_squares = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0]
    assert np.abs(expected - least_squares).max() > 0.05

    ensemble = DeepEnsemble(tmp_path, 2, lambda s: mlp((), 1, input_shape=(2,), seed=s), seed=1)
    ensemble.fit(lambda model, _: fit_regression_member(model, x, y, noise_scale=noise, prior_scale=prior,
                                                        steps=1500, learning_rate=0.05))
    for m in range(2):
        kernel, bias = ensemble.load_member(m).get_weights()
        np.testing.assert_allclose(np.r_[kernel[:, 0], bias], expected, atol=2e-3)
    pred = regression_predictive(ensemble.predict(x), noise)
    a = np.hstack([x, np.ones((len(x), 1))])
    np.testing.assert_allclose(pred.mean[:, 0], a @ expected, atol=5e-3)
    assert pred.epistemic_std.max() < 5e-3  # a convex problem: every member finds the same optimum
    np.testing.assert_allclose(pred.std, noise, atol=1e-3)


def test_saved_members_are_skipped_and_a_deleted_one_is_retrained(tmp_path):
    from tfbdl.nn import mlp

    calls = []

    def train(model, seed):
        calls.append(seed)
        model.set_weights([np.full_like(w, len(calls)) for w in model.get_weights()])
        return {"order": len(calls)}

    ensemble = DeepEnsemble(tmp_path / "members", 3, lambda s: mlp((4,), 1, input_shape=(1,), seed=s), seed=7)
    assert ensemble.fit(train, members=[0, 2]) == [0, 2] and ensemble.missing() == [1]
    with pytest.raises(RunDirectoryError, match=r"\[1\]"):
        ensemble.predict(np.zeros((2, 1)))
    assert ensemble.fit(train) == [1]
    assert ensemble.fit(train) == [] and len(calls) == 3
    assert len(set(calls)) == 3  # every member has its own seed
    assert [ensemble.member_info(m)["order"] for m in range(3)] == [1, 3, 2]
    stamp = ensemble.member_path(0).stat().st_mtime_ns
    ensemble.member_path(1).unlink()
    assert ensemble.fit(train) == [1]
    assert ensemble.member_path(0).stat().st_mtime_ns == stamp
    assert all(np.all(w == 4) for w in ensemble.load_member(1).get_weights())
    with pytest.raises(InvalidOptionError):
        ensemble.fit(train, members=[5])


def test_predict_stacks_members_and_the_predictive_is_their_average(tmp_path):
    from tfbdl.nn import mlp

    ensemble = DeepEnsemble(tmp_path, 3, lambda s: mlp((8,), 2, input_shape=(1,), seed=s), seed=0)
    ensemble.fit(lambda model, seed: None)  # untrained members: their random initialisations differ
    x = np.linspace(-1, 1, 5)[:, None].astype(np.float32)
    outputs = ensemble.predict(x)
    assert outputs.shape == (3, 5, 2)
    for m in range(3):
        np.testing.assert_allclose(outputs[m], np.asarray(ensemble.load_member(m)(x)), rtol=1e-6)
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3
    pred = regression_predictive(outputs, noise_scale=0.3)
    np.testing.assert_allclose(pred.mean, outputs.mean(axis=0))
    np.testing.assert_allclose(pred.std ** 2, outputs.var(axis=0) + 0.09)


def test_mixture_log_likelihood_matches_the_mixture_density():
    f = np.array([[0.0, 1.0], [2.0, 1.0]])  # 2 members, 2 points
    y = np.array([0.5, 1.0])
    noise = 0.5

    def normal(v, mean):
        return math.exp(-0.5 * ((v - mean) / noise) ** 2) / (noise * math.sqrt(2 * math.pi))

    expected = [math.log(0.5 * (normal(0.5, 0.0) + normal(0.5, 2.0))), math.log(normal(1.0, 1.0))]
    np.testing.assert_allclose(mixture_log_likelihood(f, y, noise), expected, rtol=1e-12)
    far = mixture_log_likelihood(np.array([[0.0], [0.1]]), np.array([100.0]), 0.01)
    assert np.isfinite(far).all() and far[0] < -1e7  # log-sum-exp: no underflow to -inf
    with pytest.raises(ShapeError):
        mixture_log_likelihood(f, np.zeros(3), noise)


def test_classification_members_average_their_probabilities():
    probs = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    np.testing.assert_allclose(average_probabilities(probs), [[0.7, 0.3]])
