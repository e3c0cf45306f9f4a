"""Does a kernel VAE know more about kernels than one Gaussian does?

The deep weight prior can only help if the VAE over ``k x k`` slices has learned structure. Two
plain baselines tell: a full-covariance Gaussian fitted to the same training slices, and the
prior's density at the zero kernel. If the VAE's held-out log-density is no higher than the
Gaussian's, the DWP on those kernels is a correlated Gaussian prior; if the density at the zero
kernel is above that of typical slices, its mode is at zero and, with few data, it shrinks the
posterior means towards zero (a small-scale shrinkage prior rather than a prior over shapes).
All densities are in nats per kernel entry (divided by ``k * k``) so sizes compare.
"""

from __future__ import annotations

import numpy as np

from tfbdl.dwp.bound import importance_log_prior
from tfbdl.errors import ShapeError

__all__ = ["gaussian_log_density", "prior_structure"]

_RIDGE = 1e-3  # the fitted covariance gets _RIDGE * (mean variance) on its diagonal


def gaussian_log_density(train_slices, slices) -> np.ndarray:
    """``log N(w | m, C)`` ``[n]`` of ``slices [n, k, k]`` under the Gaussian fitted to
    ``train_slices [m, k, k]`` (mean and covariance, a small ridge keeps it invertible)."""
    train = _flat(train_slices, "train_slices")
    flat = _flat(slices, "slices")
    if len(train) < 2:
        raise ShapeError(f"fitting a Gaussian needs at least 2 training slices, got {len(train)}")
    if train.shape[1] != flat.shape[1]:
        raise ShapeError(f"train_slices and slices must have one kernel size, got {train.shape} and {flat.shape}")
    mean = train.mean(axis=0)
    cov = np.atleast_2d(np.cov(train, rowvar=False))
    cov += _RIDGE * max(float(np.mean(np.diag(cov))), 1e-30) * np.eye(cov.shape[0])
    chol = np.linalg.cholesky(cov)
    white = np.linalg.solve(chol, (flat - mean).T)                 # [d, n]
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    d = flat.shape[1]
    return -0.5 * (np.sum(white ** 2, axis=0) + log_det + d * np.log(2.0 * np.pi))


def prior_structure(vae, train_slices, held_out_slices, *, num_samples: int = 50, max_slices: int = 2000,
                    seed: int = 0) -> dict:
    """Per-entry log-densities that show whether ``vae`` learned more than a Gaussian.

    Args:
        vae: a kernel VAE (the :mod:`tfbdl.dwp.bound` interface).
        train_slices: ``[m, k, k]``, what the VAE was trained on (the Gaussian is fitted to them).
        held_out_slices: ``[n, k, k]``, slices neither saw (at most ``max_slices`` are used).
        num_samples: importance samples per slice of the VAE's log-density estimate.

    Returns:
        ``{"vae": mean IWAE log p(w) on the held-out slices, "gaussian": mean Gaussian log-density
        there, "zero_kernel": the VAE's IWAE log p(0)}``, each in nats per kernel entry.
    """
    held = _flat(held_out_slices, "held_out_slices")
    if len(held) == 0:
        raise ShapeError("prior_structure needs at least one held-out slice")
    k = int(np.asarray(held_out_slices).shape[1])
    if len(held) > max_slices:
        held = held[np.sort(np.random.default_rng(seed).permutation(len(held))[:max_slices])]
    held = held.reshape(-1, k, k).astype(np.float32)
    vae_log_p = importance_log_prior(vae, held, num_samples, seed).numpy()
    zero = importance_log_prior(vae, np.zeros((1, k, k), np.float32), num_samples, seed).numpy()
    per_entry = float(k * k)
    return {"vae": float(np.mean(vae_log_p)) / per_entry,
            "gaussian": float(np.mean(gaussian_log_density(train_slices, held))) / per_entry,
            "zero_kernel": float(zero[0]) / per_entry}


def _flat(slices, name: str) -> np.ndarray:
    arr = np.asarray(slices, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2]:
        raise ShapeError(f"{name} must be kernel slices [n, k, k], got shape {arr.shape}")
    return arr.reshape(len(arr), arr.shape[1] * arr.shape[2])
