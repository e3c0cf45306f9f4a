"""Temperature scaling recovers a known over-confidence factor and never changes the argmax."""

import numpy as np
import pytest

from tfbdl.bayes.temperature import apply_temperature, fit_temperature, probabilities_to_logits, scaled_nll
from tfbdl.errors import ShapeError
from tfbdl.metrics import accuracy, nll


def _calibrated(n=20000, classes=5, seed=0):
    """Labels drawn from softmax(true logits): the true logits are perfectly calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def test_recovers_the_factor_of_an_overconfident_model():
    logits, labels = _calibrated()
    temperature = fit_temperature(3.0 * logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert scaled_nll(3.0 * logits, labels, temperature) < scaled_nll(3.0 * logits, labels, 1.0)


def test_keeps_predictions_and_matches_the_metrics_module():
    logits, labels = _calibrated(n=2000, seed=1)
    scaled = apply_temperature(logits, 2.5)
    np.testing.assert_array_equal(scaled.argmax(1), logits.argmax(1))
    np.testing.assert_allclose(scaled.sum(1), 1.0, rtol=1e-12)
    assert nll(scaled, labels) == pytest.approx(scaled_nll(logits, labels, 2.5), rel=1e-9)
    assert accuracy(scaled, labels) == accuracy(apply_temperature(logits, 1.0), labels)


def test_probabilities_of_an_average_can_be_scaled():
    logits, labels = _calibrated(n=3000, seed=2)
    probs = apply_temperature(logits, 1.0)
    temperature = fit_temperature(probabilities_to_logits(probs), labels)
    assert temperature == pytest.approx(1.0, rel=0.08)  # already calibrated


def test_bad_shapes():
    with pytest.raises(ShapeError):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, int))
    with pytest.raises(ShapeError):
        scaled_nll(np.zeros((2, 2)), np.array([0, 2]), 1.0)
