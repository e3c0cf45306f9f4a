"""A GPflow kernel that looks its values up in a Gram matrix computed beforehand.

Expensive kernels (the infinite-width CNN kernels of :mod:`tfbdl.kernels`) cost far more per
pair than a GP's own linear algebra. When every input the GP will ever see is known in advance
(a fixed training set whose labels change, as in the corrupted-label experiments), compute their
Gram matrix ``G [N, N]`` once and give the GP *indices* instead of images:

    X = np.arange(N, dtype=np.float64)[:, None]          # [N, 1]: input i is training image i
    kernel = PrecomputedKernel(G)                          # k(i, j) = variance * G[i, j]
    model = gpflow.models.SVGP(kernel, likelihood, X[inducing], ...)

The ``variance`` is a positive ``gpflow.Parameter``, so the kernel's scale can still be trained
by the (variational) marginal likelihood. Indices are stored as floats (GPflow's inputs are
float arrays) and rounded; they are not differentiable, so inducing inputs must stay fixed.
"""

from __future__ import annotations

import gpflow
import numpy as np
import tensorflow as tf
from check_shapes import check_shapes

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.shapes import declare_shapes
from tfbdl.validate import positive_number

__all__ = ["PrecomputedKernel", "gram_constant", "index_inputs"]


@declare_shapes("gram: [N, N]", "return: [N, N]")
def gram_constant(gram, *, check_symmetric: bool = True) -> tf.Tensor:
    """A checked Gram matrix ``[N, N]`` as a constant of GPflow's float type.

    Pass the result to several :class:`PrecomputedKernel` s to share one copy of the matrix.
    Raises ShapeError for a non-square matrix, InvalidOptionError for non-finite or asymmetric
    values (relative tolerance 1e-6 of the largest entry).
    """
    array = np.asarray(gram, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ShapeError(f"the Gram matrix must be square [N, N] with N >= 1, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidOptionError("the Gram matrix has NaN or infinite entries; recompute it")
    if check_symmetric:
        scale = float(np.max(np.abs(array))) or 1.0
        asym = float(np.max(np.abs(array - array.T))) / scale
        if asym > 1e-6:
            raise InvalidOptionError(f"the Gram matrix is not symmetric (max |G - G^T| / max |G| = {asym:.2e})")
    return tf.constant(array, dtype=gpflow.default_float())


@declare_shapes("indices: [N]", "return: [N, 1]")
def index_inputs(indices) -> np.ndarray:
    """Integer indices ``[n]`` -> the float inputs ``[n, 1]`` a :class:`PrecomputedKernel` takes."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ShapeError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    return idx.astype(np.float64)[:, None]


class PrecomputedKernel(gpflow.kernels.Kernel):
    """``k(i, j) = variance * G[i, j]`` for inputs ``X [n, 1]`` holding indices into ``G [N, N]``.

    ``gram`` is a numpy array (checked and copied) or a tensor from :func:`gram_constant`
    (used as is, so several kernels can share it). ``K`` gathers rows and columns, ``K_diag``
    the diagonal; an index outside ``0 .. N-1`` raises an error.
    """

    def __init__(self, gram, variance: float = 1.0, *, name: str | None = None):
        super().__init__(name=name)
        self.gram = gram if isinstance(gram, tf.Tensor) else gram_constant(gram)
        if self.gram.shape.rank != 2 or self.gram.shape[0] != self.gram.shape[1]:
            raise ShapeError(f"the Gram matrix must be square [N, N], got shape {self.gram.shape}")
        if self.gram.dtype != gpflow.default_float():
            self.gram = tf.cast(self.gram, gpflow.default_float())
        self.gram_diag = tf.linalg.diag_part(self.gram)
        variance = positive_number(variance, "variance")
        self.variance = gpflow.Parameter(variance, transform=gpflow.utilities.positive())

    @property
    def size(self) -> int:
        """``N``, the number of points the Gram matrix covers."""
        return int(self.gram.shape[0])

    def _indices(self, X) -> tf.Tensor:
        """Float inputs ``[n, 1]`` -> int32 indices ``[n]``, checked to lie in ``0 .. N-1``."""
        X = tf.convert_to_tensor(X)
        if X.shape.rank != 2 or X.shape[-1] != 1:
            raise ShapeError(f"inputs must be indices as floats [n, 1], got shape {X.shape}")
        idx = tf.cast(tf.round(X[:, 0]), tf.int32)
        tf.debugging.assert_non_negative(idx, message="PrecomputedKernel: negative index")
        tf.debugging.assert_less(idx, self.size, message=f"PrecomputedKernel: index >= N = {self.size}")
        return idx

    @check_shapes("X: [N, 1]", "X2: [M, 1]", "return: [N, M]")
    def K(self, X, X2=None):
        rows = self._indices(X)
        cols = rows if X2 is None else self._indices(X2)
        return self.variance * tf.gather(tf.gather(self.gram, rows), cols, axis=1)

    @check_shapes("X: [N, 1]", "return: [N]")
    def K_diag(self, X):
        return self.variance * tf.gather(self.gram_diag, self._indices(X))
