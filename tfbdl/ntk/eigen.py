"""Eigenfunctions of an NTK Gram matrix, the binary tasks they define, and kernel-target alignment.

Ortiz-Jiménez et al. (NeurIPS 2021) build a benchmark from the NTK at initialisation: with the
Gram matrix ``Theta [N, N]`` on ``N`` inputs (train and test together) and its eigenvectors
``phi_k`` (descending eigenvalues), task ``k`` labels input ``x_i`` with ``sign(phi_k(x_i))``
(gortizji/linearized-networks ``compute_ntk.py`` / ``train_ntk.py``). A linearized network learns
task ``k`` faster the larger ``lambda_k``; the paper compares with the non-linear network.

- :func:`ntk_eigendecomposition`: eigenvalues in descending order and orthonormal eigenvectors
  (float64, LAPACK ``eigh`` on the symmetrised matrix), with a deterministic sign per vector.
- :func:`eigenfunction_labels`: the ``{-1, +1}`` labels of task ``k``; :func:`binary_labels`
  maps them to ``{0, 1}`` classes.
- :func:`save_eigen` / :func:`load_eigen`: one HDF5 file (atomic write) with the spectrum, the
  initial weights of the network whose NTK it is, and optionally the inputs.
- :func:`alignment`: kernel-target alignment ``y^T Theta y / (||Theta||_F ||y||^2)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfbdl.errors import DataFormatError, InvalidOptionError, ShapeError
from tfbdl.io import load_h5, save_h5

__all__ = [
    "NTKEigen",
    "alignment",
    "binary_labels",
    "eigenfunction_labels",
    "fix_signs",
    "load_eigen",
    "ntk_eigendecomposition",
    "save_eigen",
]

#: Largest ``max|Theta - Theta^T|`` accepted, relative to ``max|Theta|`` (float32 Gram matrices
#: computed block by block are symmetric to a few ulps).
SYMMETRY_RTOL = 1e-4

_FORMAT = "tfbdl-ntk-eigen-1"


def _square_matrix(gram, what: str = "gram") -> np.ndarray:
    """``gram`` as a finite float64 ``[N, N]`` array, else ShapeError / InvalidOptionError."""
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ShapeError(f"{what} must be a square [N, N] matrix with N >= 1, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise InvalidOptionError(f"{what} holds NaN or infinite values; recompute the kernel")
    return g


def _check_symmetric(g: np.ndarray, rtol: float, what: str = "gram") -> None:
    scale = float(np.max(np.abs(g)))
    asym = float(np.max(np.abs(g - g.T)))
    if asym > rtol * max(scale, np.finfo(np.float64).tiny):
        raise InvalidOptionError(
            f"{what} is not symmetric: max|K - K^T| = {asym:.3g} against max|K| = {scale:.3g} "
            f"(tolerance {rtol:g} relative); an NTK Gram matrix is symmetric, check how it was assembled")


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry (the first one on ties) is positive.

    ``vectors [N, M] -> [N, M]``; eigenvectors are defined up to sign, this makes the choice
    independent of the LAPACK build.
    """
    v = np.array(vectors, copy=True)
    if v.size == 0:
        return v
    pivots = np.argmax(np.abs(v), axis=0)
    signs = np.where(v[pivots, np.arange(v.shape[1])] < 0, -1.0, 1.0)
    return v * signs[None, :]


def ntk_eigendecomposition(gram, k: int | None = None, *, symmetry_rtol: float = SYMMETRY_RTOL):
    """Eigendecomposition of a symmetric Gram matrix, largest eigenvalues first.

    Args:
        gram: ``[N, N]`` kernel matrix (any float dtype; computed in float64 after
            symmetrising ``(K + K^T) / 2``).
        k: keep only the ``k`` largest eigenpairs (computed directly, cheaper for large ``N``);
            ``None`` for all ``N``.
        symmetry_rtol: accepted ``max|K - K^T| / max|K|``.

    Returns:
        ``(eigenvalues [k], eigenvectors [N, k])``: eigenvalues in descending order (tiny negative
        values from rounding are kept), eigenvectors as orthonormal columns in float64, column
        ``j`` for eigenvalue ``j``, each signed by :func:`fix_signs`.

    Raises:
        ShapeError: not a square matrix. InvalidOptionError: non-finite values, not symmetric,
        or a bad ``k``.
    """
    import scipy.linalg

    g = _square_matrix(gram)
    _check_symmetric(g, float(symmetry_rtol))
    g = 0.5 * (g + g.T)
    n = g.shape[0]
    if k is None:
        k = n
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise InvalidOptionError(f"k must be an integer in [1, {n}] (the number of eigenpairs), got {k!r}")
    k = int(k)
    subset = None if k == n else (n - k, n - 1)
    values, vectors = scipy.linalg.eigh(g, subset_by_index=subset, driver="evr" if subset else "evd")
    order = np.argsort(values, kind="stable")[::-1]
    return values[order], fix_signs(vectors[:, order])


def eigenfunction_labels(eigenvectors, k: int) -> np.ndarray:
    """Labels ``sign(phi_k(x_i)) in {-1, +1}`` of eigenfunction task ``k``.

    ``eigenvectors [N, M]`` (columns, as :func:`ntk_eigendecomposition` returns them), ``k`` a
    0-based column index (``0``: the largest eigenvalue). Tie rule: an exact zero gets ``-1``, as
    the reference's ``binarize_eigenfunctions`` (``(sign + 1) // 2``) puts it in class 0.

    Returns ``int64 [N]``.
    """
    v = np.asarray(eigenvectors)
    if v.ndim != 2:
        raise ShapeError(f"eigenvectors must be [N, M] (one eigenvector per column), got shape {v.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < v.shape[1]:
        raise InvalidOptionError(f"k must be an eigenvector index in [0, {v.shape[1] - 1}], got {k!r}")
    return np.where(v[:, int(k)] > 0, 1, -1).astype(np.int64)


def binary_labels(signs) -> np.ndarray:
    """``{-1, +1}`` labels as ``{0, 1}`` classes (``int64``; ``+1 -> 1``), as the reference trains them."""
    s = np.asarray(signs)
    if not np.all(np.isin(s, (-1, 1))):
        raise InvalidOptionError("binary_labels takes labels in {-1, +1}")
    return (s > 0).astype(np.int64)


def alignment(gram, labels) -> float:
    """Kernel-target alignment ``y^T Theta y / (||Theta||_F ||y||^2)``, in ``[-1, 1]``.

    ``gram [N, N]``, ``labels [N]`` (any real values, e.g. ``{-1, +1}``). It is the cosine between
    ``Theta`` and ``y y^T`` in the Frobenius inner product: 1 exactly when ``Theta`` is a positive
    multiple of ``y y^T``.
    """
    g = _square_matrix(gram)
    y = np.asarray(labels, dtype=np.float64)
    if y.shape != (g.shape[0],):
        raise ShapeError(f"labels must be a vector [N] with N = {g.shape[0]} (the Gram matrix's size), "
                         f"got shape {y.shape}")
    g_norm, y_sq = float(np.linalg.norm(g)), float(y @ y)
    if g_norm == 0.0 or y_sq == 0.0:
        raise InvalidOptionError("alignment is undefined for a zero Gram matrix or zero labels")
    return float(np.clip((y @ g @ y) / (g_norm * y_sq), -1.0, 1.0))


@dataclasses.dataclass(frozen=True)
class NTKEigen:
    """What :func:`load_eigen` returns.

    ``eigenvalues [M]`` (descending), ``eigenvectors [N, M]`` (columns), ``weights`` the initial
    weights of the network (one array per variable, in ``model.weights`` order, so
    ``model.set_weights(list(weights))`` restores them) with their ``weight_names``, ``inputs``
    the ``N`` inputs (or None) and ``attrs`` the free attributes saved with them.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    weights: tuple[np.ndarray, ...]
    weight_names: tuple[str, ...]
    inputs: np.ndarray | None
    attrs: dict[str, Any]


def _weights_of(weights) -> tuple[list[np.ndarray], list[str]]:
    """``(arrays, names)`` from a Keras model/layer (every weight, in ``model.weights`` order) or arrays."""
    if weights is None:
        return [], []
    if hasattr(weights, "weights") and hasattr(weights, "built"):
        if not weights.built:
            raise InvalidOptionError("the model is not built yet; build it before saving its weights")
        return [np.asarray(v.numpy()) for v in weights.weights], [str(v.path) for v in weights.weights]
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise InvalidOptionError("weights must be a Keras model or a sequence of arrays (model.get_weights())")
    arrays = [np.asarray(w) for w in weights]
    return arrays, [f"weight_{i:05d}" for i in range(len(arrays))]


def save_eigen(path: str | os.PathLike, eigenvalues, eigenvectors, *, weights=None, inputs=None,
               attrs: dict | None = None) -> None:
    """Write an eigendecomposition and the network's initial weights to one HDF5 file, atomically.

    Args:
        path: the ``.h5`` file (its folder must exist); replaced all at once.
        eigenvalues: ``[M]``, stored as float64.
        eigenvectors: ``[N, M]`` columns, stored as float64.
        weights: the network whose NTK it is (a built Keras model: every weight, with names)
            or its ``get_weights()`` list; None for none.
        inputs: the ``[N, ...]`` inputs the Gram matrix was computed on (optional).
        attrs: JSON-able attributes (model name, seed, dataset, ...).
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    vectors = np.asarray(eigenvectors, dtype=np.float64)
    if values.ndim != 1 or vectors.ndim != 2 or vectors.shape[1] != values.shape[0]:
        raise ShapeError(f"eigenvalues [M] and eigenvectors [N, M] do not match: {values.shape} and {vectors.shape}")
    arrays: dict[str, np.ndarray] = {"eigenvalues": values, "eigenvectors": vectors}
    w_arrays, w_names = _weights_of(weights)
    for i, w in enumerate(w_arrays):
        arrays[f"weights/{i:05d}"] = w
    if inputs is not None:
        x = np.asarray(inputs)
        if x.ndim == 0 or x.shape[0] != vectors.shape[0]:
            raise ShapeError(f"inputs must hold the N = {vectors.shape[0]} inputs along axis 0, got shape {x.shape}")
        arrays["inputs"] = x
    meta = dict(attrs or {})
    clash = {"format", "weight_names"} & set(meta)
    if clash:
        raise InvalidOptionError(f"attrs may not use the reserved names {sorted(clash)}")
    meta.update({"format": _FORMAT, "weight_names": list(w_names)})
    save_h5(path, arrays, meta)


def load_eigen(path: str | os.PathLike) -> NTKEigen:
    """Read what :func:`save_eigen` wrote. Raises DataFormatError for another kind of file."""
    arrays, attrs = load_h5(path)
    if attrs.get("format") != _FORMAT or "eigenvalues" not in arrays or "eigenvectors" not in arrays:
        raise DataFormatError(f"{path} is not an NTK eigendecomposition written by save_eigen; "
                              "recompute it")
    names = tuple(attrs.pop("weight_names", None) or ())
    attrs.pop("format")
    keys = sorted(k for k in arrays if k.startswith("weights/"))
    if len(keys) != len(names):
        raise DataFormatError(f"{path} lists {len(names)} weight names but holds {len(keys)} weights; recompute it")
    return NTKEigen(eigenvalues=arrays["eigenvalues"], eigenvectors=arrays["eigenvectors"],
                    weights=tuple(arrays[k] for k in keys), weight_names=names,
                    inputs=arrays.get("inputs"), attrs=attrs)
