"""Exact GP classification by regression on centred one-hot targets (numpy/scipy only).

As in Garriga-Alonso, Aitchison & Rasmussen (ICLR 2019) and their code
(``cambridge-mlg/cnn-gp``, ``exp_mnist_resnet/classify_gp.py``; ``rhaps0dy/convnets-as-gps``,
``classify_gp.py``): the targets are one-hot labels centred to **+1 for the class and -1
elsewhere** (the references build ``Y = -ones; Y[i, y_i] = 1``, resp. ``Y[Y == 0] = -1``), the
posterior mean ``Kxt^T (Kxx + noise I)^{-1} Y`` is computed with one Cholesky solve, and the
predicted class is its argmax. (Any targets ``a * onehot + b`` give the same argmax, since
the constant ``b`` shifts every column of a row equally.)

The references add a fixed ``--jitter`` (cnn-gp: absolute, default 0; convnets-as-gps:
times the mean of Kxx, default 0) and pick nothing on the validation set. Here the noise is
chosen on a validation split, as the paper chose the kernel's hyperparameters: every value of
a grid (default: 0 and 1e-8 ... 1e-1 times the mean diagonal of Kxx) is fitted on the training
part and scored by validation accuracy (:func:`select_noise`); :func:`classify` then refits on
the whole training set with the best value.

Memory: the kernel matrix is never copied when ``overwrite=True``; the validation selection
permutes and packs the train-train block inside the caller's buffer and puts it back afterwards
(see :func:`select_noise`). A repeated Cholesky per grid value is used instead of one
eigendecomposition: ``eigh`` needs a second N x N array for the eigenvectors (and ``syevd``
2 N^2 workspace) and is many times slower than a Cholesky, so for grids of up to a few tens of
values the Cholesky route is both smaller and faster.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Sequence

import numpy as np

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.gp.cholesky import (
    NotPositiveDefiniteError,
    cho_solve_inplace,
    cholesky_inplace,
    restore_from_upper,
)
from tfbdl.shapes import declare_shapes

__all__ = [
    "DEFAULT_RELATIVE_GRID",
    "ExactGPResult",
    "centred_targets",
    "classify",
    "fit_predict",
    "noise_grid",
    "select_noise",
]

#: Noise values tried by default, as multiples of the mean diagonal of Kxx.
DEFAULT_RELATIVE_GRID = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

_BLOCK = 256


@dataclasses.dataclass
class ExactGPResult:
    """Outcome of :func:`classify`.

    ``validation`` holds one dict per grid value (``noise``, ``relative_noise``, ``jitter``,
    ``val_accuracy``); ``predictions [Nt]`` are argmax classes and ``mean [Nt, C]`` the
    posterior mean; ``noise`` is the chosen value and ``jitter_used`` what the final Cholesky
    had to add on top of it.
    """

    test_accuracy: float
    test_error: float
    noise: float
    jitter_used: float
    validation: list[dict]
    predictions: np.ndarray
    mean: np.ndarray


def _labels(y, num_classes: int, name: str = "y_train") -> np.ndarray:
    """Integer labels ``[N]`` checked to lie in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeError(f"{name} must be integer labels of shape [N], got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.array_equal(y, np.round(y)):
            raise ShapeError(f"{name} must hold integer class labels")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise InvalidOptionError(
            f"{name} has labels in [{y.min()}, {y.max()}], outside [0, {num_classes}): "
            "check num_classes")
    return y


@declare_shapes("y: [N]", "return: [N, C]")
def centred_targets(y, num_classes: int) -> np.ndarray:
    """Regression targets ``[N, C]`` float64: +1 in the label's column, -1 elsewhere (as the
    reference code builds them)."""
    y = _labels(y, num_classes)
    Y = -np.ones((y.size, num_classes), dtype=np.float64)
    Y[np.arange(y.size), y] = 1.0
    return Y


@declare_shapes("Kxx: [N, N]", "relative: [G]", "return: [G]")
def noise_grid(Kxx: np.ndarray, relative: Sequence[float] = DEFAULT_RELATIVE_GRID) -> np.ndarray:
    """Absolute noise values ``[G]``: ``relative`` times the mean diagonal of ``Kxx [N, N]``.

    (convnets-as-gps scaled its jitter by the mean of all entries of Kxx; the mean diagonal,
    the average prior variance, costs O(N) and also sets the scale of the jitter.)
    """
    scale = float(np.mean(np.diagonal(Kxx), dtype=np.float64))
    return np.asarray(relative, dtype=np.float64) * scale


def _check_square(Kxx) -> np.ndarray:
    Kxx = np.asarray(Kxx)
    if Kxx.ndim != 2 or Kxx.shape[0] != Kxx.shape[1]:
        raise ShapeError(f"Kxx must be square [N, N], got shape {Kxx.shape}")
    return Kxx


def _fit(Kxx: np.ndarray, Y: np.ndarray, noise: float, *, overwrite: bool,
         jitter: float | None, max_tries: int) -> tuple[np.ndarray, float]:
    """``alpha = (Kxx + noise I)^{-1} Y`` ``[N, C]`` and the jitter the Cholesky added.

    With ``overwrite`` (and a contiguous float array) Kxx is destroyed; otherwise one float64
    copy is factorised.
    """
    usable = (Kxx.dtype in (np.float32, np.float64) and Kxx.flags.writeable
              and (Kxx.flags.c_contiguous or Kxx.flags.f_contiguous))
    K = Kxx if (overwrite and usable) else np.array(Kxx, dtype=np.float64, order="C")
    if noise:
        K.flat[:: K.shape[0] + 1] += noise
    L, jit = cholesky_inplace(K, jitter=jitter, max_tries=max_tries, overwrite=True, clean=False)
    alpha = cho_solve_inplace(L, np.asfortranarray(Y, dtype=L.dtype))
    return alpha.astype(np.float64, copy=False), jit


@declare_shapes("Kxx: [N, N]", "Kxt: [N, T]", "y_train: [N]", "return: [T, C]")
def fit_predict(Kxx, Kxt, y_train, num_classes: int, noise: float, *, overwrite: bool = False,
                jitter: float | None = None, max_tries: int = 8) -> np.ndarray:
    """Posterior mean ``[Nt, C]`` = ``Kxt^T (Kxx + noise I)^{-1} Y`` with Y the centred targets.

    ``Kxx [N, N]`` train-train kernel, ``Kxt [N, Nt]`` train-test kernel, ``y_train [N]`` labels.
    Predictions are ``argmax(mean, axis=1)``. Memory: with ``overwrite=True`` Kxx is destroyed
    (it holds the Cholesky factor) and peak memory is Kxx plus O((N + Nt) * C); otherwise (or
    when Kxx is read-only, non-contiguous or not float) one N x N float64 copy is made.
    """
    Kxx = _check_square(Kxx)
    Kxt = np.asarray(Kxt)
    n = Kxx.shape[0]
    if Kxt.ndim != 2 or Kxt.shape[0] != n:
        raise ShapeError(f"Kxt must have shape [{n}, Nt], got {Kxt.shape}")
    Y = centred_targets(y_train, num_classes)
    if Y.shape[0] != n:
        raise ShapeError(f"y_train has {Y.shape[0]} labels but Kxx is {n}x{n}")
    alpha, _ = _fit(Kxx, Y, float(noise), overwrite=overwrite, jitter=jitter, max_tries=max_tries)
    return Kxt.T @ alpha


# --------------------------------------------------------------------- in-place block split

def _permute_rows(K: np.ndarray, perm: np.ndarray) -> None:
    """``K[:] = K[perm]`` in place, following the permutation's cycles with one row buffer."""
    seen = np.zeros(perm.size, dtype=bool)
    for start in range(perm.size):
        if seen[start] or perm[start] == start:
            seen[start] = True
            continue
        tmp = K[start].copy()
        i = start
        while True:
            seen[i] = True
            j = perm[i]
            if j == start:
                K[i] = tmp
                break
            K[i] = K[j]
            i = j


def _permute_symmetric(K: np.ndarray, perm: np.ndarray) -> None:
    """``K[:] = K[perm][:, perm]`` in place for a C-ordered ``K [N, N]`` (O(block * N) extra)."""
    if np.array_equal(perm, np.arange(perm.size)):
        return
    for r0 in range(0, K.shape[0], _BLOCK):
        K[r0:r0 + _BLOCK] = K[r0:r0 + _BLOCK][:, perm]
    _permute_rows(K, perm)


@contextlib.contextmanager
def _packed_split(K: np.ndarray, first: np.ndarray, second: np.ndarray
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Inside C-ordered ``K [N, N]``, yield ``(K[first][:, first], K[second][:, first])`` as a
    C-contiguous ``[n1, n1]`` array and a ``[n2, n1]`` view, with no copy; K is put back on exit.

    K is permuted symmetrically so that ``first`` then ``second`` lead; the ``first`` block's
    rows are then moved to the start of the buffer (row i from offset ``i*N`` to ``i*n1``,
    which never overwrites a row not yet moved). The rows of ``second`` lie past offset
    ``n1*N`` and stay intact, and the overwritten ``K[first][:, rest]`` entries are restored
    from them by symmetry. The caller must leave the packed block as it found it.
    """
    n = K.shape[0]
    n1 = first.size
    rest = np.setdiff1d(np.arange(n), np.concatenate([first, second]))
    perm = np.concatenate([first, second, rest]).astype(np.intp)
    flat = K.reshape(-1)
    _permute_symmetric(K, perm)
    try:
        for i in range(1, n1):
            flat[i * n1:(i + 1) * n1] = flat[i * n:i * n + n1]
        packed = flat[: n1 * n1].reshape(n1, n1)
        yield packed, K[n1:n1 + second.size, :n1]
    finally:
        for i in range(n1 - 1, 0, -1):
            flat[i * n:i * n + n1] = flat[i * n1:(i + 1) * n1]
        for r0 in range(0, n1, _BLOCK):
            r1 = min(r0 + _BLOCK, n1)
            K[r0:r1, n1:] = K[n1:, r0:r1].T
        _permute_symmetric(K, np.argsort(perm).astype(np.intp))


# --------------------------------------------------------------------- noise selection

def _indices(idx, n: int, name: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise InvalidOptionError(f"{name} is empty")
    if idx.min() < 0 or idx.max() >= n:
        raise InvalidOptionError(f"{name} has indices outside [0, {n})")
    if np.unique(idx).size != idx.size:
        raise InvalidOptionError(f"{name} has repeated indices")
    return idx


@declare_shapes("Kxx: [N, N]", "y_train: [N]", "grid: [G]")
def select_noise(Kxx, y_train, train_idx, val_idx, num_classes: int, grid: Sequence[float], *,
                 overwrite: bool = False, jitter: float | None = None, max_tries: int = 8
                 ) -> tuple[float, list[dict]]:
    """Pick the noise variance from ``grid`` with the best validation accuracy.

    For each absolute noise value in ``grid`` (in order), the GP is fitted on
    ``Kxx[train_idx][:, train_idx]`` and scored by the accuracy of its argmax predictions on
    ``val_idx``. Ties go to the larger noise (better conditioned). A grid value whose
    factorisation fails even with jitter is recorded with ``val_accuracy = nan``.

    Returns ``(best_noise, table)``; ``table`` has one dict per grid value with ``noise``,
    ``relative_noise`` (over the mean train diagonal), ``jitter`` (added by the Cholesky) and
    ``val_accuracy``.

    Memory: with ``overwrite=True`` and a writeable contiguous float ``Kxx``, the train block is packed
    inside Kxx's own buffer (Kxx is used as workspace and restored exactly before returning,
    also on error): peak is Kxx plus O(N * (C + 512)). Otherwise the train block is copied
    (``n_train^2`` float64) and Kxx is only read.
    """
    Kxx = _check_square(Kxx)
    n = Kxx.shape[0]
    y = _labels(y_train, num_classes)
    if y.size != n:
        raise ShapeError(f"y_train has {y.size} labels but Kxx is {n}x{n}")
    tr = _indices(train_idx, n, "train_idx")
    va = _indices(val_idx, n, "val_idx")
    if np.intersect1d(tr, va).size:
        raise InvalidOptionError("train_idx and val_idx overlap")
    grid = [float(g) for g in grid]
    if not grid or min(grid) < 0:
        raise InvalidOptionError(f"grid must be a non-empty list of noise values >= 0, got {grid}")

    Ytr = centred_targets(y[tr], num_classes)
    yva = y[va]

    base = Kxx.T if (Kxx.flags.f_contiguous and not Kxx.flags.c_contiguous) else Kxx
    in_place = (overwrite and base.flags.c_contiguous and base.flags.writeable
                and base.dtype in (np.float32, np.float64))
    if in_place:
        split = _packed_split(base, tr, va)
    else:
        split = contextlib.nullcontext((np.array(Kxx[np.ix_(tr, tr)], dtype=np.float64, order="C"),
                                        np.asarray(Kxx[np.ix_(va, tr)], dtype=np.float64)))
    table = []
    with split as (Ktt, Kvt):
        diag = np.diagonal(Ktt).copy()
        scale = float(np.mean(diag))
        try:
            for noise in grid:
                row = {"noise": noise, "relative_noise": noise / scale if scale > 0 else np.nan,
                       "jitter": np.nan, "val_accuracy": np.nan}
                Ktt.flat[:: Ktt.shape[0] + 1] = diag + noise
                try:
                    L, jit = cholesky_inplace(Ktt, jitter=jitter, max_tries=max_tries,
                                              overwrite=True, clean=False)
                except NotPositiveDefiniteError:
                    table.append(row)
                    continue
                alpha = cho_solve_inplace(L, np.asfortranarray(Ytr, dtype=L.dtype))
                pred = np.argmax(Kvt @ alpha, axis=1)
                row["jitter"] = jit
                row["val_accuracy"] = float(np.mean(pred == yva))
                table.append(row)
                restore_from_upper(Ktt, diag)
        finally:
            restore_from_upper(Ktt, diag)
    scores = np.array([r["val_accuracy"] for r in table])
    if np.isnan(scores).all():
        raise NotPositiveDefiniteError(
            f"no noise value in {grid} gave a positive definite train block; add larger noise "
            "values to the grid, or check the kernel matrix (float64, symmetric)")
    best = max(range(len(table)), key=lambda i: (np.nan_to_num(scores[i], nan=-1.0), grid[i]))
    return grid[best], table


@declare_shapes("Kxx: [N, N]", "Kxt: [N, T]", "y_train: [N]", "y_test: [T]")
def classify(Kxx, Kxt, y_train, y_test, num_classes: int, *, val_fraction: float = 0.1,
             val_idx=None, grid: Sequence[float] | None = None, seed: int = 0,
             overwrite: bool = False, jitter: float | None = None, max_tries: int = 8
             ) -> ExactGPResult:
    """Exact GP classification as in the paper: choose the noise on a validation split, refit on
    all of ``Kxx``, predict the test set.

    ``Kxx [N, N]`` train-train kernel, ``Kxt [N, Nt]`` train-test kernel, ``y_train [N]``,
    ``y_test [Nt]`` labels. The validation points are ``val_idx`` or a seeded random
    ``val_fraction`` of the training set; ``grid`` holds absolute noise values (default
    :func:`noise_grid` of Kxx). With a single grid value (or ``val_fraction=0`` and no
    ``val_idx``) no selection is run.

    Memory: with ``overwrite=True`` Kxx is used in place and destroyed (it ends holding the
    Cholesky factor): peak is the one N x N matrix plus Kxt plus O(N * (C + 512)), e.g. 3.2 GB
    for N = 20,000 in float64. With ``overwrite=False`` (or a read-only / non-contiguous Kxx)
    Kxx is untouched and one N x N float64 copy is added.
    """
    Kxx = _check_square(Kxx)
    Kxt = np.asarray(Kxt)
    n = Kxx.shape[0]
    if Kxt.ndim != 2 or Kxt.shape[0] != n:
        raise ShapeError(f"Kxt must have shape [{n}, Nt], got {Kxt.shape}")
    y = _labels(y_train, num_classes)
    yt = _labels(y_test, num_classes, "y_test")
    if y.size != n or yt.size != Kxt.shape[1]:
        raise ShapeError(f"labels ({y.size} train, {yt.size} test) do not match Kxx {Kxx.shape} "
                         f"and Kxt {Kxt.shape}")
    grid = list(noise_grid(Kxx)) if grid is None else [float(g) for g in grid]
    if not grid:
        raise InvalidOptionError("grid is empty")

    if val_idx is None and not 0.0 <= val_fraction < 1.0:
        raise InvalidOptionError(f"val_fraction must be in [0, 1), got {val_fraction}")
    table: list[dict] = []
    noise = grid[0]
    if len(grid) > 1 and (val_idx is not None or val_fraction > 0):
        if val_idx is None:
            n_val = max(1, int(round(val_fraction * n)))
            val_idx = np.sort(np.random.default_rng(seed).choice(n, size=n_val, replace=False))
        va = _indices(val_idx, n, "val_idx")
        tr = np.setdiff1d(np.arange(n), va)
        noise, table = select_noise(Kxx, y, tr, va, num_classes, grid, overwrite=overwrite,
                                    jitter=jitter, max_tries=max_tries)

    alpha, jit = _fit(Kxx, centred_targets(y, num_classes), noise, overwrite=overwrite,
                      jitter=jitter, max_tries=max_tries)
    mean = Kxt.T @ alpha
    pred = np.argmax(mean, axis=1)
    acc = float(np.mean(pred == yt)) if yt.size else float("nan")
    return ExactGPResult(test_accuracy=acc, test_error=1.0 - acc, noise=float(noise),
                         jitter_used=float(jit), validation=table, predictions=pred, mean=mean)
