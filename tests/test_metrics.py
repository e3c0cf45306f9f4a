"""Tests of tfbdl.metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from tfbdl.errors import ShapeError
from tfbdl.metrics import (
    accuracy,
    brier,
    classification_metrics,
    ece,
    ensemble_probs,
    nll,
    reliability_bins,
)

# Four examples, three classes.
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # label 0, argmax 0: right
        [0.1, 0.6, 0.3],  # label 1, argmax 1: right
        [0.3, 0.3, 0.4],  # label 0, argmax 2: wrong
        [0.5, 0.4, 0.1],  # label 1, argmax 0: wrong
    ]
)
LABELS = np.array([0, 1, 0, 1])


def test_accuracy_hand_example():
    # 2 right out of 4.
    assert accuracy(PROBS, LABELS) == pytest.approx(0.5)


def test_nll_hand_example():
    # p[label] = 0.7, 0.6, 0.3, 0.4; product 0.0504; mean -log = -log(0.0504) / 4 = 0.746940...
    assert nll(PROBS, LABELS) == pytest.approx(-math.log(0.0504) / 4)
    assert nll(PROBS, LABELS) == pytest.approx(0.7469404, abs=1e-6)


def test_nll_clips_zero_probability():
    # p[label] = 0 -> -log(1e-12) = 27.631; p[label] = 1 -> 0; mean 13.8155.
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert nll(probs, np.array([1, 0])) == pytest.approx(-math.log(1e-12) / 2)
    assert nll(probs, np.array([1, 0]), eps=1e-3) == pytest.approx(-math.log(1e-3) / 2)


def test_brier_hand_example():
    # row 1: (0.7-1)^2 + 0.2^2 + 0.1^2 = 0.09 + 0.04 + 0.01 = 0.14
    # row 2: 0.1^2 + (0.6-1)^2 + 0.3^2 = 0.01 + 0.16 + 0.09 = 0.26
    # row 3: (0.3-1)^2 + 0.3^2 + 0.4^2 = 0.49 + 0.09 + 0.16 = 0.74
    # row 4: 0.5^2 + (0.4-1)^2 + 0.1^2 = 0.25 + 0.36 + 0.01 = 0.62
    # mean = 1.76 / 4 = 0.44
    assert brier(PROBS, LABELS) == pytest.approx(0.44)


def test_ece_five_bins_hand_example():
    # n_bins=5, edges 0, .2, .4, .6, .8, 1.
    probs = np.array([[0.9, 0.1], [0.15, 0.85], [0.3, 0.7], [0.45, 0.55], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 0, 0])
    # conf .9 bin 4 right; .85 bin 4 wrong; .7 bin 3 right; .55 bin 2 wrong; .5 bin 2 right (tie -> class 0)
    bins = reliability_bins(probs, labels, n_bins=5)
    np.testing.assert_array_equal(bins.counts, [0, 0, 2, 1, 2])
    np.testing.assert_allclose(bins.confidence[2:], [0.525, 0.7, 0.875])
    np.testing.assert_allclose(bins.accuracy[2:], [0.5, 1.0, 0.5])
    assert np.isnan(bins.confidence[:2]).all() and np.isnan(bins.accuracy[:2]).all()
    np.testing.assert_allclose(bins.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # bin 2: 2/5 * |.5 - .525| = .01; bin 3: 1/5 * |1 - .7| = .06; bin 4: 2/5 * |.5 - .875| = .15
    assert ece(probs, labels, n_bins=5) == pytest.approx(0.22)


def test_ece_default_fifteen_bins():
    # Bin i of 15 is (i/15, (i+1)/15].
    probs = np.array(
        [
            [0.95, 0.03, 0.02],  # conf .95 -> bin 14 (.933, 1], right
            [0.62, 0.30, 0.08],  # conf .62 -> bin 9 (.6, .667], wrong
            [0.10, 0.62, 0.28],  # conf .62 -> bin 9, right
            [0.34, 0.33, 0.33],  # conf .34 -> bin 5 (.333, .4], wrong
        ]
    )
    labels = np.array([0, 1, 1, 2])
    bins = reliability_bins(probs, labels)
    expected_counts = np.zeros(15, dtype=int)
    expected_counts[[5, 9, 14]] = [1, 2, 1]
    np.testing.assert_array_equal(bins.counts, expected_counts)
    # bin 14: 1/4 * .05 = .0125; bin 9: 2/4 * |.5 - .62| = .06; bin 5: 1/4 * .34 = .085 -> .1575
    assert ece(probs, labels) == pytest.approx(0.1575)


def test_reliability_bin_edges_are_right_closed():
    # n_bins=4: conf .5 -> (.25, .5] bin 1; conf 1 -> bin 3; conf .75 -> (.5, .75] bin 2.
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [0.75, 0.25]])
    bins = reliability_bins(probs, np.array([1, 1, 0]), n_bins=4)
    np.testing.assert_array_equal(bins.counts, [0, 1, 1, 1])
    # A confidence of exactly 0 goes into the first bin.
    zero = reliability_bins(np.array([[0.0, 0.0]]), np.array([0]), n_bins=4)
    np.testing.assert_array_equal(zero.counts, [1, 0, 0, 0])


def test_perfect_predictions():
    labels = np.array([2, 0, 1, 2])
    probs = np.eye(3)[labels]
    m = classification_metrics(probs, labels)
    assert set(m) == {"accuracy", "nll", "brier", "ece"}
    assert m["accuracy"] == 1.0
    assert m["nll"] == pytest.approx(0.0, abs=1e-12)
    assert m["brier"] == 0.0
    assert m["ece"] == 0.0
    assert all(type(v) is float for v in m.values())


def test_classification_metrics_matches_single_functions():
    m = classification_metrics(PROBS, LABELS)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx(0.44)
    assert m["nll"] == pytest.approx(-math.log(0.0504) / 4)
    # confs .7 (bin 10), .6 (= 9/15, right edge of bin 8), .4 (= 6/15, right edge of bin 5),
    # .5 (bin 7): one example per bin, acc 1, 1, 0, 0 -> ece = (.3 + .4 + .4 + .5) / 4 = 0.4
    assert m["ece"] == pytest.approx(0.4)
    counts = reliability_bins(PROBS, LABELS).counts
    assert list(np.flatnonzero(counts)) == [5, 7, 8, 10]


def test_float_labels_with_integer_values_accepted():
    assert accuracy(PROBS, LABELS.astype(float)) == pytest.approx(0.5)


def test_ensemble_probs_averages_members():
    a = np.array([[0.8, 0.2], [0.4, 0.6]])
    b = np.array([[0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_allclose(ensemble_probs([a, b]), [[0.7, 0.3], [0.3, 0.7]])
    np.testing.assert_allclose(ensemble_probs(np.stack([a, b])), [[0.7, 0.3], [0.3, 0.7]])


@pytest.mark.parametrize(
    "probs, labels, match",
    [
        (np.array([0.5, 0.5]), np.array([0]), "2-D"),
        (np.full((2, 2), 0.5), np.array([[0], [1]]), "1-D"),
        (np.full((3, 2), 0.5), np.array([0, 1]), "3 examples but labels has 2"),
        (np.full((2, 2), 0.5), np.array([0, 2]), r"\[0, 2\)"),
        (np.full((2, 2), 0.5), np.array([-1, 0]), r"\[0, 2\)"),
        (np.full((2, 2), 0.5), np.array([0.5, 1.0]), "integer"),
        (np.zeros((0, 2)), np.array([], dtype=int), "at least one"),
    ],
)
def test_bad_shapes_raise(probs, labels, match):
    for fn in (accuracy, nll, brier, ece, classification_metrics):
        with pytest.raises(ShapeError, match=match):
            fn(probs, labels)


def test_bad_bins_and_ensembles_raise():
    with pytest.raises(ShapeError, match="n_bins"):
        reliability_bins(PROBS, LABELS, n_bins=0)
    with pytest.raises(ShapeError, match="same shape"):
        ensemble_probs([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ShapeError, match="M, N, K"):
        ensemble_probs(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="at least one member"):
        ensemble_probs([])
