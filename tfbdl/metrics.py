"""Classification metrics on predicted class probabilities (numpy only).

Every function takes ``probs`` float [N, K] (each row a distribution over K classes) and
integer ``labels`` [N] with values in [0, K), checks the shapes and raises
:class:`tfbdl.errors.ShapeError` when they do not fit, and returns plain Python floats, so
results go straight into ``metrics.json`` / ``metrics.csv``. The shapes are declared with
:func:`tfbdl.shapes.declare_shapes`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from tfbdl.errors import ShapeError
from tfbdl.shapes import declare_shapes

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "brier",
    "classification_metrics",
    "ece",
    "ensemble_probs",
    "nll",
    "reliability_bins",
]


def _check(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """Return (probs float64 [N, K], labels int64 [N]) or raise ShapeError saying what is wrong."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ShapeError(
            f"probs must be 2-D [N, K] (examples x classes), got shape {probs.shape}; "
            "pass one row of class probabilities per example"
        )
    n, k = probs.shape
    if n == 0 or k == 0:
        raise ShapeError(f"probs must have at least one example and one class, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        if np.issubdtype(probs.dtype, np.integer) or probs.dtype == bool:
            probs = probs.astype(np.float64)
        else:
            raise ShapeError(f"probs must hold floating-point probabilities, got dtype {probs.dtype}")
    if labels.ndim != 1:
        raise ShapeError(
            f"labels must be 1-D [N] integer class indices, got shape {labels.shape}; "
            "convert one-hot labels with labels.argmax(-1)"
        )
    if labels.shape[0] != n:
        raise ShapeError(f"probs has {n} examples but labels has {labels.shape[0]}; they must match")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ShapeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= k:
        raise ShapeError(
            f"labels must lie in [0, {k}) for probs with K={k} classes, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return probs.astype(np.float64, copy=False), labels.astype(np.int64, copy=False)


@declare_shapes("probs: [N, K]", "labels: [N]", "return: []")
def accuracy(probs, labels) -> float:
    """Fraction of the N examples whose argmax class equals the label. probs [N, K], labels [N]."""
    probs, labels = _check(probs, labels)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


@declare_shapes("probs: [N, K]", "labels: [N]", "return: []")
def nll(probs, labels, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood, mean_n -log max(p[n, labels[n]], eps).

    The clip at ``eps`` keeps one confidently wrong example from making the mean infinite.
    probs [N, K], labels [N].
    """
    probs, labels = _check(probs, labels)
    p = probs[np.arange(labels.shape[0]), labels]
    return float(np.mean(-np.log(np.maximum(p, eps))))


@declare_shapes("probs: [N, K]", "labels: [N]", "return: []")
def brier(probs, labels) -> float:
    """Brier score: mean over examples of the sum over classes of (p_k - onehot_k)^2.

    This is the multi-class form (range [0, 2]), not divided by K. probs [N, K], labels [N].
    """
    probs, labels = _check(probs, labels)
    onehot = np.zeros_like(probs)
    onehot[np.arange(labels.shape[0]), labels] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


class ReliabilityBins(NamedTuple):
    """Per-bin statistics of a reliability diagram; every array is [n_bins].

    ``confidence`` and ``accuracy`` are NaN in empty bins (count 0), so plots skip them.
    ``edges`` [n_bins + 1] are the bin boundaries; bin i is (edges[i], edges[i+1]].
    """

    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    edges: np.ndarray


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ShapeError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


@declare_shapes("probs: [N, K]", "labels: [N]")
def reliability_bins(probs, labels, n_bins: int = 15) -> ReliabilityBins:
    """Bin examples by confidence (max prob) into n_bins equal-width bins over [0, 1].

    Bin i holds confidences in (i/n, (i+1)/n]; a confidence of exactly 0 goes into bin 0.
    Returns counts (int64), mean confidence and accuracy per bin. probs [N, K], labels [N].
    """
    probs, labels = _check(probs, labels)
    n_bins = _check_bins(n_bins)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # i / n is correctly rounded, so a confidence such as 0.6 == 9/15 sits exactly on its edge.
    edges = np.arange(n_bins + 1) / n_bins
    # side="left": first edge >= conf, so conf in (edges[i], edges[i+1]] lands in bin i.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        mean_acc = np.where(counts > 0, acc_sum / counts, np.nan)
    return ReliabilityBins(counts, mean_conf, mean_acc, edges)


@declare_shapes("probs: [N, K]", "labels: [N]", "return: []")
def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins of (n_bin / N) * |acc_bin - conf_bin|.

    Uses :func:`reliability_bins` (equal-width confidence bins over [0, 1]). probs [N, K], labels [N].
    """
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins.counts > 0
    weights = bins.counts[filled] / bins.counts.sum()
    return float(np.sum(weights * np.abs(bins.accuracy[filled] - bins.confidence[filled])))


@declare_shapes("probs: [N, K]", "labels: [N]")
def classification_metrics(probs, labels) -> dict:
    """All scalar metrics at once: {"accuracy", "nll", "brier", "ece"} as floats."""
    probs, labels = _check(probs, labels)
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": ece(probs, labels),
    }


@declare_shapes("prob_list: [M, N, K]", "return: [N, K]")
def ensemble_probs(prob_list: Sequence | np.ndarray) -> np.ndarray:
    """Average member predictive probabilities: [M, N, K] (or M arrays [N, K]) -> [N, K].

    Bayesian model averaging in probability space (not of logits), as for deep ensembles,
    SWAG and MC samples; the result's rows still sum to 1.
    """
    if isinstance(prob_list, np.ndarray):
        stacked = prob_list
    else:
        members = [np.asarray(p) for p in prob_list]
        if not members:
            raise ShapeError("ensemble_probs needs at least one member, got an empty list")
        shapes = {m.shape for m in members}
        if len(shapes) != 1:
            raise ShapeError(
                f"ensemble members must all have the same shape [N, K], got {sorted(shapes)}"
            )
        stacked = np.stack(members)
    if stacked.ndim != 3:
        raise ShapeError(
            f"ensemble_probs expects [M, N, K] (members x examples x classes), got shape {stacked.shape}"
        )
    if 0 in stacked.shape:
        raise ShapeError(f"ensemble_probs got an empty axis in shape {stacked.shape}")
    return np.mean(stacked.astype(np.float64, copy=False), axis=0)
