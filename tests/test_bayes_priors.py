"""Prior function draws: closed form for a linear model, symmetry, restoring the weights."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tfbdl.bayes.priors import class_pair_correlations, output_correlations, prior_outputs  # noqa: E402


def _linear_model(dim, outputs):
    inputs = keras.Input((dim,))
    return keras.Model(inputs, keras.layers.Dense(outputs, use_bias=False)(inputs))


def test_linear_model_correlation_is_the_cosine_similarity_for_any_alpha():
    # f(x) = W x with W ~ N(0, alpha^2): Cov(f(x), f(x')) = alpha^2 x.x', so the correlation is
    # x.x' / (|x| |x'|) and does not depend on alpha. (Zero-mean outputs, so centring is exact
    # in expectation.)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    cosine = (x @ x.T) / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(x, axis=1))
    model = _linear_model(6, 10)
    for alpha in (0.1, 3.0):
        corr = output_correlations(prior_outputs(model, x, alpha=alpha, num_samples=3000, seed=1))
        np.testing.assert_allclose(corr, cosine, atol=0.03)


def test_class_pair_matrix_is_symmetric_and_weights_are_restored():
    x = np.random.default_rng(2).normal(size=(12, 5)).astype(np.float32)
    labels = np.arange(12) % 3
    model = _linear_model(5, 4)
    before = [v.numpy().copy() for v in model.trainable_variables]
    outputs = prior_outputs(model, x, alpha=1.0, num_samples=50, seed=3)
    assert outputs.shape == (50, 12, 4)
    pairs = class_pair_correlations(outputs, labels, 3)
    np.testing.assert_allclose(pairs, pairs.T, rtol=1e-12)
    assert np.all(np.abs(pairs) <= 1)
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    np.testing.assert_array_equal(prior_outputs(model, x, alpha=1.0, num_samples=50, seed=3), outputs)
