"""In-place Cholesky factorisation with escalating jitter (numpy/scipy only).

Infinite-width CNN kernel matrices are large (N = 20,000 in float64 is 3.2 GB), have entries
of order 1e12 and are badly conditioned, so the factorisation must neither copy the matrix nor
die with an unexplained ``LinAlgError``. :func:`cholesky_inplace` calls LAPACK ``potrf``
directly on the caller's buffer and, when it fails, restores the matrix from the triangle that
``potrf`` never touches, adds jitter to the diagonal and tries again.

Why not ``scipy.linalg.cholesky(overwrite_a=True)``: it passes ``clean=1`` to ``potrf``, which
zeroes the other triangle *even when the factorisation fails*, so a retry would need a full
copy of the matrix. With ``clean=0`` (used here) a lower factorisation reads and writes only
the lower triangle and diagonal; the strict upper triangle keeps the original values (checked
in the tests), so the O(N) diagonal is all that has to be saved.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from tfbdl.errors import JitterWarning, ShapeError, TfbdlError
from tfbdl.shapes import declare_shapes

__all__ = [
    "BLOCKED_ABOVE",
    "NotPositiveDefiniteError",
    "PANEL",
    "cho_solve_inplace",
    "cholesky_inplace",
    "restore_from_upper",
]

#: Rows processed at a time by the O(N^2) helpers, so their temporaries stay O(block * N).
_BLOCK = 512

#: Above this size the factorisation is blocked (:func:`_blocked_potrf`): LAPACK ``potrf`` is called
#: on ``PANEL x PANEL`` diagonal blocks only and the large updates are matrix products. OpenBLAS's
#: threaded ``potrf`` on a whole 20,000 x 20,000 float64 matrix kills the process with a
#: segmentation fault (12,000 works); blocks of these sizes stay far from that.
BLOCKED_ABOVE = 8192
PANEL = 1024
_UPDATE_ROWS = 4096  # rows per trailing-update product, so its temporary is at most 4096 x PANEL


class NotPositiveDefiniteError(TfbdlError):
    """A matrix could not be Cholesky-factorised even after adding the largest jitter tried."""


def _fortran_view(K: np.ndarray) -> tuple[np.ndarray, int]:
    """A Fortran-ordered view of ``K`` and the ``lower`` flag that makes LAPACK work on K's lower
    triangle (in K's own indexing). For C-ordered K this is ``K.T`` with ``lower=0``."""
    if K.flags.c_contiguous:
        return K.T, 0
    if K.flags.f_contiguous:
        return K, 1
    raise ValueError("matrix must be C- or Fortran-contiguous")  # callers ensure this


@declare_shapes("K: [N, N]", "diag: [N]", "return: [N, N]")
def restore_from_upper(K: np.ndarray, diag: np.ndarray) -> np.ndarray:
    """Rebuild a symmetric ``K [N, N]`` in place from its strict upper triangle and ``diag [N]``.

    Undoes a (failed or finished) in-place lower Cholesky, which leaves the strict upper
    triangle untouched. Works on row blocks, so no temporary is larger than ``512 x N``.
    """
    n = K.shape[0]
    for r0 in range(0, n, _BLOCK):
        r1 = min(r0 + _BLOCK, n)
        if r0 > 0:
            K[r0:r1, :r0] = K[:r0, r0:r1].T
        block = K[r0:r1, r0:r1]
        il = np.tril_indices(r1 - r0, -1)
        block[il] = block.T[il]
    K.flat[:: n + 1] = diag
    return K


def _zero_upper(K: np.ndarray) -> None:
    """Set the strict upper triangle of ``K [N, N]`` to zero, block by block."""
    n = K.shape[0]
    for r0 in range(0, n, _BLOCK):
        r1 = min(r0 + _BLOCK, n)
        K[r0:r1, r1:] = 0
        block = K[r0:r1, r0:r1]
        block[np.triu_indices(r1 - r0, 1)] = 0


def _all_finite(K: np.ndarray) -> bool:
    """Whether every entry of ``K`` is finite, checked in row blocks (O(block * N) temporaries)."""
    return all(np.isfinite(K[r0:r0 + _BLOCK]).all() for r0 in range(0, K.shape[0], _BLOCK))


def _blocked_potrf(K: np.ndarray, panel: int) -> int:
    """Right-looking blocked lower Cholesky of ``K [N, N]`` in place, in K's own indexing.

    Reads and writes only K's lower triangle and diagonal (the strict upper triangle keeps its
    values, as LAPACK's ``clean=0``), for C- or Fortran-ordered K. Per panel of ``panel`` columns:
    ``potrf`` of a copy of the diagonal block, a triangular solve in place for the panel below it
    (one ``(N - j) x panel`` temporary), and the trailing update as matrix products column block by
    column block (``_UPDATE_ROWS`` rows at a time), the diagonal blocks' lower triangles only. Returns LAPACK's ``info``: 0 on
    success, else the 1-based order of the first leading minor that is not positive.
    """
    n = K.shape[0]
    potrf = scipy.linalg.get_lapack_funcs("potrf", (K,))
    for j0 in range(0, n, panel):
        j1 = min(j0 + panel, n)
        lower = np.tril_indices(j1 - j0)
        diagonal = np.array(K[j0:j1, j0:j1], order="F")
        factor, info = potrf(diagonal, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            return info if info < 0 else j0 + info
        K[j0:j1, j0:j1][lower] = factor[lower]
        if j1 == n:
            break
        # L21 = A21 L11^-T, solved in place in one (N - j1) x panel copy (Fortran-ordered A21^T)
        below = scipy.linalg.solve_triangular(factor, np.array(K[j1:, j0:j1]).T, lower=True,
                                              overwrite_b=True, check_finite=False).T
        K[j1:, j0:j1] = below
        for c0 in range(j1, n, panel):
            c1 = min(c0 + panel, n)
            rows = below[c0 - j1:c1 - j1]                                     # L21 rows of this block
            update = rows @ rows.T
            block_lower = np.tril_indices(c1 - c0)
            K[c0:c1, c0:c1][block_lower] -= update[block_lower]
            for r0 in range(c1, n, _UPDATE_ROWS):                             # bounded product temporaries
                r1 = min(r0 + _UPDATE_ROWS, n)
                K[r0:r1, c0:c1] -= below[r0 - j1:r1 - j1] @ rows.T
    return 0


@declare_shapes("K: [N, N]", "return[0]: [N, N]", "return[1]: []")
def cholesky_inplace(K: np.ndarray, *, jitter: float | None = None, max_tries: int = 8,
                     overwrite: bool = True, clean: bool = True, panel: int | None = None,
                     name: str | None = None) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor ``L [N, N]`` of a symmetric ``K [N, N]``, adding jitter if needed.

    With ``overwrite=True`` (default) **K is destroyed**: the factor is written into K's own
    buffer and returned (``np.shares_memory(L, K)``), so peak memory is the one N x N matrix
    plus O(N). This needs K writeable, C- or Fortran-contiguous, float32/float64; otherwise (or
    with ``overwrite=False``) one copy is made and factorised instead, K staying intact.

    Only K's lower triangle and diagonal are read (K is assumed symmetric). The first attempt
    adds nothing. After each failure K is restored from its untouched strict upper triangle
    and saved diagonal, and ``jitter`` (default ``1e-10 * mean(diag K)``) is added to the
    diagonal, multiplied by 10 on each of up to ``max_tries`` further attempts. Success after
    jitter emits a :class:`~tfbdl.errors.JitterWarning` giving the amount, absolute and relative
    (``name`` says what the matrix is in that message, e.g. ``"Laplace precision"``).

    ``clean=False`` leaves the strict upper triangle holding the original K (instead of zeros),
    so that :func:`restore_from_upper` can rebuild K afterwards; solves only read the lower
    triangle, so :func:`cho_solve_inplace` works either way.

    ``panel``: None calls LAPACK ``potrf`` on the whole matrix up to ``BLOCKED_ABOVE`` rows and the
    blocked factorisation (:func:`_blocked_potrf`, panels of ``PANEL``) above, where OpenBLAS's
    threaded ``potrf`` crashes; an integer forces the blocked form with that panel width. Both
    keep one N x N buffer; the blocked form adds an ``N x panel`` temporary.

    Returns ``(L, jitter_used)``; ``jitter_used`` is the absolute amount added (0.0 if none).
    Raises :class:`NotPositiveDefiniteError` when the diagonal is not positive, entries are not
    finite, or the last attempt fails; K is then restored (its diagonal as given).
    """
    K = np.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ShapeError(f"cholesky_inplace needs a square matrix, got shape {K.shape}")
    if int(max_tries) < 0:
        raise ValueError(f"max_tries must be >= 0, got {max_tries}")
    usable = (K.flags.c_contiguous or K.flags.f_contiguous) and K.flags.writeable
    if not overwrite or K.dtype not in (np.float32, np.float64) or not usable:
        dtype = K.dtype if K.dtype in (np.float32, np.float64) else np.float64
        K = np.array(K, dtype=dtype, order="C", copy=True)
    n = K.shape[0]
    if n == 0:
        return K, 0.0
    if panel is not None and (isinstance(panel, bool) or int(panel) < 1):
        raise ValueError(f"panel must be a positive integer, got {panel!r}")
    blocked = int(panel) if panel is not None else (PANEL if n > BLOCKED_ABOVE else None)
    A, lower = _fortran_view(K)
    potrf = scipy.linalg.get_lapack_funcs("potrf", (A,))

    diag = np.diagonal(K).copy()
    mean_diag = float(np.mean(diag, dtype=np.float64))
    if not (np.isfinite(diag).all() and _all_finite(K)):
        raise NotPositiveDefiniteError(
            "the matrix has NaN or infinite entries; recompute the kernel (in float64) and check "
            "its inputs before factorising it")
    if mean_diag <= 0 or (diag < 0).any():
        raise NotPositiveDefiniteError(
            f"the matrix has a negative or zero diagonal (min {diag.min():.3g}, mean {mean_diag:.3g}); "
            "it is not a covariance matrix: check the kernel and that the right matrix was passed")
    jitter0 = 1e-10 * mean_diag if jitter is None else float(jitter)
    if not jitter0 > 0:
        raise ValueError(f"jitter must be > 0, got {jitter}")

    added = 0.0
    info = 0
    for attempt in range(int(max_tries) + 1):
        if attempt > 0:
            added = jitter0 * 10.0 ** (attempt - 1)
            restore_from_upper(K, diag + added)
        if blocked is None:
            _, info = potrf(A, lower=lower, clean=0, overwrite_a=1)
        else:
            info = _blocked_potrf(K, blocked)
        if info == 0:
            break
        if info < 0:  # an argument was invalid: a bug here, not the user's matrix
            raise RuntimeError(f"LAPACK potrf rejected argument {-info}")
    else:
        restore_from_upper(K, diag)
        raise NotPositiveDefiniteError(
            f"Cholesky of the {n}x{n} matrix failed (leading minor {info} not positive) even "
            f"with jitter {added:.3g} = {added / mean_diag:.1e} x mean diagonal {mean_diag:.3g} "
            f"after {max_tries} jittered tries; the matrix is not positive definite: compute the "
            "kernel in float64, check it is symmetric, or add more noise to the diagonal "
            "(larger jitter or max_tries)")
    if added > 0:
        what = f"the {n}x{n} {name}" if name else f"a {n}x{n} matrix"
        warnings.warn(JitterWarning(
            f"added jitter {added:.3g} ({added / mean_diag:.1e} x mean diagonal {mean_diag:.3g}) "
            f"to the diagonal of {what} before its Cholesky factorisation succeeded"),
            stacklevel=2)
    if clean:
        _zero_upper(K)
    return K, added


@declare_shapes("L: [N, N]", "B: [N, p...]", "return: [N, p...]")
def cho_solve_inplace(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``K X = B`` given the lower Cholesky factor ``L [N, N]`` of K; ``B [N]`` or ``[N, P]``.

    Only L's lower triangle is read (its upper triangle may hold anything, e.g. after
    ``cholesky_inplace(clean=False)``) and L is never copied when contiguous. B is overwritten
    with X when it is 1-D or Fortran-ordered with L's dtype; otherwise X is a new O(N * P) array.
    Returns ``X`` with B's shape.
    """
    L = np.asarray(L)
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ShapeError(f"L must be square, got shape {L.shape}")
    if not (L.flags.c_contiguous or L.flags.f_contiguous):
        L = np.ascontiguousarray(L)
    B = np.asarray(B)
    if B.ndim not in (1, 2) or B.shape[0] != L.shape[0]:
        raise ShapeError(f"B must have shape [{L.shape[0]}] or [{L.shape[0]}, P], got {B.shape}")
    if B.dtype != L.dtype:
        B = B.astype(L.dtype)
    A, lower = _fortran_view(L)
    B2 = B.reshape(B.shape[0], -1, order="F")
    potrs = scipy.linalg.get_lapack_funcs("potrs", (A, B2))
    X, info = potrs(A, B2, lower=lower, overwrite_b=1)
    if info != 0:
        raise RuntimeError(f"LAPACK potrs rejected argument {-info}")
    return X.reshape(B.shape, order="F")
