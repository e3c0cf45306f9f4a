"""Functions drawn from a Gaussian prior over a network's weights (Wilson & Izmailov 2020, §5).

A spherical prior N(0, alpha^2 I) on every trainable weight induces a distribution over
functions; how correlated the outputs for two images are says which images the prior already
considers alike. :func:`prior_outputs` draws weights and evaluates the model,
:func:`class_pair_correlations` averages the output correlations over pairs of images by class,
:func:`level_correlations` correlates the outputs for an image and its perturbed versions, and
:func:`softmax_entropies` measures how confident single prior draws and their average are.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn.utils import cached_function

__all__ = ["class_pair_correlations", "level_correlations", "output_correlations", "prior_outputs",
           "softmax_entropies"]


def prior_outputs(model, x, *, alpha: float, num_samples: int, seed: int, batch_size: int = 512) -> np.ndarray:
    """Outputs [S, N, C] of ``model`` on ``x`` for S weight draws from N(0, alpha^2 I).

    Every trainable variable is redrawn (batch-norm statistics are left as they are); the
    model's weights are restored afterwards. The same seed gives the same draws, so a call with
    fewer samples sees the first draws of a call with more.
    """
    if alpha <= 0 or num_samples < 1:
        raise InvalidOptionError(f"alpha must be > 0 and num_samples >= 1, got {alpha}, {num_samples}")
    variables = list(model.trainable_variables)
    original = [v.numpy() for v in variables]
    dtypes = [value.dtype for value in original]
    forward = cached_function(model, "_tfbdl_prior_forward", lambda xb: model(xb, training=False))
    rng = np.random.default_rng(seed)
    outputs = []
    try:
        for _ in range(num_samples):
            for v, dtype in zip(variables, dtypes):
                v.assign(rng.normal(scale=alpha, size=v.shape).astype(dtype))
            outputs.append(np.concatenate([np.asarray(forward(x[i:i + batch_size]))
                                           for i in range(0, len(x), batch_size)]))
    finally:
        for v, value in zip(model.trainable_variables, original):
            v.assign(value)
    return np.stack(outputs).astype(np.float64)


def output_correlations(outputs: np.ndarray) -> np.ndarray:
    """Correlation [N, N] between images of the prior outputs [S, N, C] (each output unit is one
    more draw of the pair's joint distribution, as the outputs are exchangeable a priori)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 3:
        raise ShapeError(f"outputs must be [samples, images, outputs], got {outputs.shape}")
    draws = outputs.transpose(1, 0, 2).reshape(outputs.shape[1], -1)  # [N, S*C]
    draws = draws - draws.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(draws, axis=1)
    return (draws @ draws.T) / np.outer(norms, norms)


def class_pair_correlations(outputs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean correlation [C, C] over pairs of distinct images from classes (i, j)."""
    corr = output_correlations(outputs)
    labels = np.asarray(labels)
    if labels.shape != (corr.shape[0],):
        raise ShapeError(f"labels must be [{corr.shape[0]}], got {labels.shape}")
    result = np.full((num_classes, num_classes), np.nan)
    off_diagonal = ~np.eye(corr.shape[0], dtype=bool)
    for i in range(num_classes):
        for j in range(num_classes):
            mask = np.outer(labels == i, labels == j) & off_diagonal
            if mask.any():
                result[i, j] = corr[mask].mean()
    return result


def level_correlations(outputs: np.ndarray) -> np.ndarray:
    """Prior correlation [N, L, L] between the perturbation levels of each image.

    ``outputs`` is ``[N, L, C, S]``: the C outputs of the model for N images, each seen at L
    levels (e.g. level 0 the clean image and levels 1..L-1 a perturbation of growing
    intensity), under the same S weight draws for every image and level. For each image and
    output channel the correlation over the S draws between levels l and m is computed, then
    averaged over the C channels. The result is symmetric with ones on the diagonal (to
    rounding), within [-1, 1]; NaN where an output does not vary across the draws.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 4 or outputs.shape[3] < 2:
        raise ShapeError(f"outputs must be [images, levels, channels, draws >= 2], got {outputs.shape}")
    centred = outputs - outputs.mean(axis=3, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = centred / np.linalg.norm(centred, axis=3, keepdims=True)  # [N, L, C, S]
    corr = np.einsum("nlcs,nmcs->nlmc", unit, unit)
    return np.clip(corr.mean(axis=3), -1.0, 1.0)


def softmax_entropies(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropies (nats) of the class probabilities of prior draws, from logits [S, N, C].

    Returns ``(per_draw [S, N], predictive [N])``: the entropy of each draw's softmax, and
    that of the prior predictive (the softmax averaged over the S draws). Both lie in
    [0, log C]; log C is the uniform prediction.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 3:
        raise ShapeError(f"logits must be [samples, images, classes], got {logits.shape}")
    log_p = log_softmax(logits, axis=-1)
    p = np.exp(log_p)
    per_draw = -(p * log_p).sum(axis=2)
    mean_p = p.mean(axis=0)
    predictive = -(mean_p * np.log(np.where(mean_p > 0, mean_p, 1.0))).sum(axis=1)
    return per_draw, predictive
