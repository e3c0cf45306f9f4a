"""Temperature scaling (Guo et al. 2017): one scalar T fitted on a validation split so that
softmax(logits / T) minimises the negative log-likelihood. It changes confidence, never the
predicted class. Works on logits, or on the log of any predictive's probabilities."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from tfbdl.errors import ShapeError

__all__ = ["apply_temperature", "fit_temperature", "probabilities_to_logits", "scaled_nll"]


def _check(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ShapeError(f"logits must be [N, C] and labels [N], got {logits.shape} and {labels.shape}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
        raise ShapeError(f"labels must lie in [0, {logits.shape[1]})")
    return logits, labels.astype(np.int64)


def scaled_nll(logits, labels, temperature: float) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature)."""
    logits, labels = _check(logits, labels)
    log_probs = log_softmax(logits / temperature, axis=1)
    return float(-log_probs[np.arange(labels.size), labels].mean())


def fit_temperature(logits, labels, *, bounds=(0.05, 20.0)) -> float:
    """The T in ``bounds`` minimising the validation NLL (a 1-D search over log T)."""
    logits, labels = _check(logits, labels)
    low, high = np.log(bounds[0]), np.log(bounds[1])
    result = minimize_scalar(lambda log_t: scaled_nll(logits, labels, np.exp(log_t)), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / T) [N, C]."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(log_softmax(logits / temperature, axis=1))


def probabilities_to_logits(probs, eps: float = 1e-12) -> np.ndarray:
    """Log-probabilities of a predictive (e.g. a Bayesian model average) to scale like logits."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0))
