"""What ``bdl posterior-adaptivity`` measures on a set of sampled functions: numpy only.

Given the logits ``[S, N, C]`` of S weight samples (prior draws, or posterior samples) on N test
images, it measures how confident one sample is per image, how confident their average (the
prior or posterior predictive) is, how much they disagree, and how one sample spreads its
probability over the classes across the whole (class-balanced) test set: the reference's bars,
where a prior draw puts nearly all images in one class.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from tfbdl.errors import ShapeError

__all__ = ["SHOWN_SAMPLES", "entropy", "sample_statistics"]

SHOWN_SAMPLES = 4  # samples whose class shares are kept for the figure


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats of class probabilities ``[..., C]`` (0 log 0 = 0): ``[...]``."""
    probs = np.asarray(probs, dtype=np.float64)
    logs = np.log(np.where(probs > 0, probs, 1.0))
    return -(probs * logs).sum(axis=-1)


def sample_statistics(logits: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Statistics of S sampled functions from their logits ``[S, N, C]`` on N test images.

    - ``max_probability`` / ``entropy``: one sample's top-class probability / entropy per
      image, averaged over images and samples;
    - ``predictive_max_probability`` / ``predictive_entropy``: the same for the average of the
      samples' class probabilities (the prior or posterior predictive);
    - ``disagreement``: predictive entropy minus the mean entropy of one sample (the mutual
      information between the prediction and the weights: 0 when every sample agrees);
    - ``top_class_share``: per sample, the class probabilities averaged over the test images,
      its largest entry, averaged over samples (1 / C when a sample spreads the images over the
      classes as evenly as the test set; 1 when it puts every image in one class);
    - ``shares`` ``[min(S, SHOWN_SAMPLES), C]`` and ``predictive_share`` ``[C]``: those averages;
    - with ``labels [N]``: ``accuracy`` (one sample, mean over samples), ``predictive_accuracy``
      and ``predictive_nll``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 3:
        raise ShapeError(f"logits must be [samples, images, classes], got {logits.shape}")
    log_p = log_softmax(logits, axis=-1)
    probs = np.exp(log_p)
    predictive = probs.mean(axis=0)  # [N, C]
    shares = probs.mean(axis=1)  # [S, C]
    single_entropy = max(0.0, float(-(probs * log_p).sum(axis=-1).mean()))  # >= 0 but for rounding
    predictive_entropy = max(0.0, float(entropy(predictive).mean()))
    stats = {
        "samples": int(logits.shape[0]),
        "max_probability": float(probs.max(axis=-1).mean()),
        "entropy": single_entropy,
        "predictive_max_probability": float(predictive.max(axis=-1).mean()),
        "predictive_entropy": predictive_entropy,
        "disagreement": max(0.0, predictive_entropy - single_entropy),
        "top_class_share": float(shares.max(axis=-1).mean()),
        "shares": shares[:SHOWN_SAMPLES].tolist(),
        "predictive_share": predictive.mean(axis=0).tolist(),
    }
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (logits.shape[1],):
            raise ShapeError(f"labels must be [{logits.shape[1]}], got {labels.shape}")
        rows = np.arange(labels.size)
        stats["accuracy"] = float((probs.argmax(axis=-1) == labels[None]).mean())
        stats["predictive_accuracy"] = float((predictive.argmax(axis=-1) == labels).mean())
        stats["predictive_nll"] = float(-np.log(np.maximum(predictive[rows, labels], 1e-300)).mean())
    return stats
