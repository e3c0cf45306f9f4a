"""Prior function draws: closed form for a linear model, symmetry, restoring the weights;
correlations across perturbation levels, entropies of prior draws, the experiment's perturbations."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tfbdl.bayes.priors import (class_pair_correlations, level_correlations, output_correlations,  # noqa: E402
                                prior_outputs, softmax_entropies)
from tfbdl.errors import ShapeError  # noqa: E402


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


# ------------------------------------------------------------------ perturbation levels

def test_identical_levels_correlate_exactly_one():
    rng = np.random.default_rng(4)
    one_level = rng.normal(size=(3, 1, 5, 40))
    corr = level_correlations(np.repeat(one_level, 4, axis=1))  # [images, levels, channels, draws]
    assert corr.shape == (3, 4, 4)
    np.testing.assert_allclose(corr, 1.0, rtol=0, atol=1e-12)


def test_level_correlations_recover_a_known_correlation_matrix():
    # Levels drawn jointly Gaussian with correlation `target` for every image and channel (and
    # scaled and shifted per level, which a correlation ignores): the estimate over 4,000 draws,
    # averaged over 3 images x 4 channels, is within a few 1/sqrt(12,000) of the truth.
    target = np.array([[1.0, 0.7, -0.3], [0.7, 1.0, -0.5], [-0.3, -0.5, 1.0]])
    chol = np.linalg.cholesky(target)
    z = np.random.default_rng(5).normal(size=(3, 3, 4, 4000))  # [images, levels, channels, draws]
    outputs = np.einsum("lm,nmcs->nlcs", chol, z)
    scale, shift = np.array([1.0, 7.0, 0.2])[:, None, None], np.array([0.0, -3.0, 50.0])[:, None, None]
    outputs = outputs * scale + shift
    corr = level_correlations(outputs)
    for image in corr:
        np.testing.assert_allclose(image, target, atol=0.05)
        np.testing.assert_allclose(image, image.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(corr.mean(axis=0), target, atol=0.03)


def test_level_correlations_are_per_channel_then_averaged():
    # Channel 0: level 1 = level 0 (correlation 1); channel 1: level 1 = -level 0 (-1): mean 0.
    base = np.random.default_rng(6).normal(size=(1, 1, 1, 30))
    outputs = np.concatenate([np.concatenate([base, base], axis=1), np.concatenate([base, -base], axis=1)], axis=2)
    np.testing.assert_allclose(level_correlations(outputs)[0], [[1.0, 0.0], [0.0, 1.0]], atol=1e-12)


def test_level_correlations_reject_other_shapes():
    with pytest.raises(ShapeError):
        level_correlations(np.zeros((2, 3, 4)))
    with pytest.raises(ShapeError):
        level_correlations(np.zeros((2, 3, 4, 1)))  # one draw has no correlation


# ------------------------------------------------------------------ sample functions

def test_entropies_of_uniform_confident_and_disagreeing_draws():
    uniform, predictive = softmax_entropies(np.zeros((4, 3, 10)))
    np.testing.assert_allclose(uniform, np.log(10), rtol=1e-12)
    np.testing.assert_allclose(predictive, np.log(10), rtol=1e-12)
    # Two confident draws (logits 1e4 apart: no overflow) that pick different classes: each draw
    # has entropy 0, their average puts 1/2 on each class, entropy log 2.
    logits = np.zeros((2, 1, 5))
    logits[0, 0, 1] = logits[1, 0, 3] = 1e4
    per_draw, predictive = softmax_entropies(logits)
    np.testing.assert_allclose(per_draw, 0.0, atol=1e-12)
    np.testing.assert_allclose(predictive, [np.log(2)], rtol=1e-12)


def test_a_wider_prior_gives_more_confident_draws():
    x = np.random.default_rng(7).normal(size=(20, 6)).astype(np.float32)
    model = _linear_model(6, 10)
    entropies = [softmax_entropies(prior_outputs(model, x, alpha=a, num_samples=30, seed=8))[0].mean()
                 for a in (0.01, 1.0, 100.0)]
    assert np.log(10) - 0.01 < entropies[0] < np.log(10) and entropies[0] > entropies[1] > entropies[2]
    assert entropies[2] < 0.1


# ------------------------------------------------------------------ the experiment's perturbations

def test_translation_shifts_every_image_by_at_most_twice_the_intensity():
    from tfbdl.cli.bdl.priors_perturb import random_translation

    images = np.zeros((200, 28, 28, 1), dtype=np.uint8)
    images[:, 14, 14] = 255  # one bright pixel in the middle
    np.testing.assert_array_equal(random_translation(images, 0, seed=1), images)
    for intensity in (1, 3):
        moved = random_translation(images, intensity, seed=1)
        assert moved.shape == images.shape and moved.dtype == np.uint8
        _, flat = np.nonzero(moved[..., 0].reshape(200, -1) == 255)
        shifts = np.stack([flat // 28 - 14, flat % 28 - 14], axis=1)
        assert len(shifts) == 200  # the pixel stays inside the image
        assert np.abs(shifts).max() == 2 * intensity  # every shift in [-2k, 2k] occurs up to the bounds
        assert len(np.unique(shifts[:, 0])) == 4 * intensity + 1
        np.testing.assert_array_equal(random_translation(images, intensity, seed=1), moved)
    assert not np.array_equal(random_translation(images, 2, seed=1), random_translation(images, 2, seed=2))


def test_perturbed_batch_outputs_are_regrouped_by_image_and_level():
    from tfbdl.cli.bdl.priors_perturb import INTENSITIES, per_level_outputs

    n, p, s, c = 3, 2, 4, 2
    blocks = 1 + p * len(INTENSITIES)
    # Output value = 100 * block + image (block 0 clean, then perturbation-major, intensity-minor).
    value = 100 * np.repeat(np.arange(blocks), n) + np.tile(np.arange(n), blocks)
    outputs = np.broadcast_to(value[None, :, None], (s, blocks * n, c)).astype(float)
    grouped = per_level_outputs(outputs, n, p)
    assert grouped.shape == (p, n, 1 + len(INTENSITIES), c, s)
    for q in range(p):
        for image in range(n):
            expected = [image] + [100 * (1 + q * len(INTENSITIES) + k) + image for k in range(len(INTENSITIES))]
            np.testing.assert_array_equal(grouped[q, image, :, 0, 0], expected)
