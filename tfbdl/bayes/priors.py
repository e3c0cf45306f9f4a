"""Functions drawn from a Gaussian prior over a network's weights (Wilson & Izmailov 2020, §5).

A spherical prior N(0, alpha^2 I) on every trainable weight induces a distribution over
functions; how correlated the outputs for two images are says which images the prior already
considers alike. :func:`prior_outputs` draws weights and evaluates the model, and
:func:`class_pair_correlations` averages the output correlations over pairs of images by class.
"""

from __future__ import annotations

import numpy as np

from tfbdl.errors import InvalidOptionError, ShapeError


def prior_outputs(model, x, *, alpha: float, num_samples: int, seed: int, batch_size: int = 512) -> np.ndarray:
    """Outputs [S, N, C] of ``model`` on ``x`` for S weight draws from N(0, alpha^2 I).

    Every trainable variable is redrawn (batch-norm statistics are left as they are); the
    model's weights are restored afterwards.
    """
    if alpha <= 0 or num_samples < 1:
        raise InvalidOptionError(f"alpha must be > 0 and num_samples >= 1, got {alpha}, {num_samples}")
    original = [v.numpy() for v in model.trainable_variables]
    rng = np.random.default_rng(seed)
    outputs = []
    try:
        for _ in range(num_samples):
            for v in model.trainable_variables:
                v.assign(rng.normal(scale=alpha, size=v.shape).astype(np.dtype(v.numpy().dtype)))
            outputs.append(np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
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
