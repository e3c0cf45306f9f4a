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

Above ``BLOCKED_ABOVE`` rows the factorisation and the solves are blocked: LAPACK and BLAS are
called on ``PANEL``-wide sub-blocks of the caller's buffer, in place. scipy's f2py wrappers
(``scipy.linalg.blas.dgemm`` etc.) take whole arrays: a sub-block view such as ``A[j:, j:j+b]`` is
not contiguous, so they would silently copy it and write the result to the copy.
``scipy.linalg.cython_blas`` and ``cython_lapack`` export the same routines of scipy's own
OpenBLAS as C functions that take a leading dimension; :class:`_SubBlockBlas` calls them through
``ctypes`` on addresses inside the matrix, so the blocked factorisation allocates nothing of
size N x N, nor even N x panel.
"""

from __future__ import annotations

import ctypes
import functools
import warnings

import numpy as np
import scipy.linalg
from scipy.linalg import cython_blas, cython_lapack

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

#: Above this size the factorisation and the solves are blocked (:func:`_blocked_potrf`,
#: :func:`cho_solve_inplace`): LAPACK ``potrf`` is called on ``PANEL x PANEL`` diagonal blocks only,
#: ``syrk`` on diagonal blocks and ``gemm`` / ``trsm`` on blocks at most N x PANEL. OpenBLAS's
#: threaded ``potrf`` on a whole 20,000 x 20,000 float64 matrix kills the process with a
#: segmentation fault (12,000 works; the threaded ``syrk`` inside it is where OpenBLAS reports such
#: crashes); calls of these sizes stay far from that.
BLOCKED_ABOVE = 8192
PANEL = 1024


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
    """Whether every entry of ``K`` is finite, checked in contiguous blocks of ``_BLOCK`` rows (C
    order) or columns (Fortran order), so the temporaries are O(block * N)."""
    A, _ = _fortran_view(K)
    return all(np.isfinite(A[:, c0:c0 + _BLOCK]).all() for c0 in range(0, A.shape[1], _BLOCK))


class _SubBlockBlas:
    """BLAS ``trsm``/``syrk``/``gemm`` and LAPACK ``potrf`` on sub-blocks of Fortran-ordered arrays,
    in place (scipy's OpenBLAS through ``scipy.linalg.cython_blas``/``cython_lapack``).

    A block is given as ``(M, i, j)``: the sub-matrix of the Fortran-contiguous 2-D array ``M``
    whose top-left entry is ``M[i, j]``, with leading dimension ``M.shape[0]``. float32 arrays use
    the ``s`` routines, float64 the ``d`` ones. The caller keeps the arrays alive and checks bounds.
    """

    def __init__(self, dtype: np.dtype):
        self._prefix = {np.dtype(np.float64): "d", np.dtype(np.float32): "s"}[np.dtype(dtype)]
        self._real = ctypes.c_double if self._prefix == "d" else ctypes.c_float

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _routine(name: str):
        module = cython_lapack if name.endswith("potrf") else cython_blas
        capsule = module.__pyx_capi__[name]
        get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
            ("PyCapsule_GetName", ctypes.pythonapi))
        get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", ctypes.pythonapi))
        address = get_pointer(capsule, get_name(capsule))
        return ctypes.CFUNCTYPE(None)(address)  # arguments are all pointers, passed as such below

    def _call(self, name: str, *args) -> None:
        self._routine(self._prefix + name)(*args)

    @staticmethod
    def _block(M: np.ndarray, i: int, j: int) -> tuple[ctypes.c_void_p, ctypes.c_int]:
        rows = M.shape[0]
        return ctypes.c_void_p(M.ctypes.data + (i + j * rows) * M.itemsize), ctypes.c_int(max(rows, 1))

    @staticmethod
    def _ints(*values: int):
        return [ctypes.byref(ctypes.c_int(v)) for v in values]

    def potrf(self, uplo: str, n: int, a) -> int:
        """Cholesky of the ``n x n`` block ``a`` in place, reading only its ``uplo`` triangle."""
        pa, lda = self._block(*a)
        info = ctypes.c_int(0)
        self._call("potrf", ctypes.c_char_p(uplo.encode()), *self._ints(n), pa, ctypes.byref(lda),
                   ctypes.byref(info))
        return info.value

    def trsm(self, side: str, uplo: str, trans: str, m: int, n: int, a, b) -> None:
        """``b [m, n] := op(a)^-1 b`` (side "L") or ``b op(a)^-1`` (side "R"), a triangular."""
        (pa, lda), (pb, ldb) = self._block(*a), self._block(*b)
        self._call("trsm", *(ctypes.c_char_p(c.encode()) for c in (side, uplo, trans, "N")),
                   *self._ints(m, n), ctypes.byref(self._real(1.0)), pa, ctypes.byref(lda), pb,
                   ctypes.byref(ldb))

    def syrk(self, uplo: str, trans: str, n: int, k: int, alpha: float, a, c) -> None:
        """The ``uplo`` triangle of ``c [n, n] += alpha op(a) op(a)^T`` (op: trans "N" or "T")."""
        (pa, lda), (pc, ldc) = self._block(*a), self._block(*c)
        self._call("syrk", ctypes.c_char_p(uplo.encode()), ctypes.c_char_p(trans.encode()),
                   *self._ints(n, k), ctypes.byref(self._real(alpha)), pa, ctypes.byref(lda),
                   ctypes.byref(self._real(1.0)), pc, ctypes.byref(ldc))

    def gemm(self, trans_a: str, trans_b: str, m: int, n: int, k: int, alpha: float, a, b, c) -> None:
        """``c [m, n] += alpha op(a) op(b)``."""
        (pa, lda), (pb, ldb), (pc, ldc) = self._block(*a), self._block(*b), self._block(*c)
        self._call("gemm", ctypes.c_char_p(trans_a.encode()), ctypes.c_char_p(trans_b.encode()),
                   *self._ints(m, n, k), ctypes.byref(self._real(alpha)), pa, ctypes.byref(lda),
                   pb, ctypes.byref(ldb), ctypes.byref(self._real(1.0)), pc, ctypes.byref(ldc))


def _blocked_potrf(K: np.ndarray, panel: int) -> int:
    """Right-looking blocked lower Cholesky of ``K [N, N]`` in place, in K's own indexing.

    Reads and writes only K's lower triangle and diagonal (the strict upper triangle keeps its
    values, as LAPACK's ``clean=0``), for C- or Fortran-ordered K, and allocates no array: every
    call works on a sub-block of K's buffer (:class:`_SubBlockBlas`). Per panel of ``panel``
    columns: ``potrf`` of the diagonal block, ``trsm`` for the panel below it, then the trailing
    update column block by column block, ``syrk`` on the diagonal blocks (their lower triangles
    only) and one ``gemm`` below each. Returns LAPACK's ``info``: 0 on success, else the 1-based
    order of the first leading minor that is not positive.

    In the Fortran view ``A`` of a C-ordered K (``A = K.T``), K's lower triangle is A's upper one:
    there ``A = U^T U`` with ``U = L^T`` and every step is the transpose of the lower one.
    """
    A, lower = _fortran_view(K)
    n = A.shape[0]
    blas = _SubBlockBlas(A.dtype)
    uplo = "L" if lower else "U"
    for j0 in range(0, n, panel):
        j1 = min(j0 + panel, n)
        jb = j1 - j0
        info = blas.potrf(uplo, jb, (A, j0, j0))
        if info != 0:
            return info if info < 0 else j0 + info
        if j1 == n:
            break
        if lower:  # L21 := A21 L11^-T
            blas.trsm("R", "L", "T", n - j1, jb, (A, j0, j0), (A, j1, j0))
        else:      # U12 := U11^-T A12
            blas.trsm("L", "U", "T", jb, n - j1, (A, j0, j0), (A, j0, j1))
        for c0 in range(j1, n, panel):
            c1 = min(c0 + panel, n)
            if lower:  # A[c0:, c0:c1] -= L[c0:, j] L[c0:c1, j]^T
                blas.syrk("L", "N", c1 - c0, jb, -1.0, (A, c0, j0), (A, c0, c0))
                if c1 < n:
                    blas.gemm("N", "T", n - c1, c1 - c0, jb, -1.0, (A, c1, j0), (A, c0, j0), (A, c1, c0))
            else:      # A[c0:c1, c0:] -= U[j, c0:c1]^T U[j, c0:]
                blas.syrk("U", "T", c1 - c0, jb, -1.0, (A, j0, c0), (A, c0, c0))
                if c1 < n:
                    blas.gemm("T", "N", c1 - c0, n - c1, jb, -1.0, (A, j0, c0), (A, j0, c1), (A, c0, c1))
    return 0


def _blocked_solve(L: np.ndarray, X: np.ndarray, panel: int) -> None:
    """``X [N, P] := K^-1 X`` in place given the lower factor ``L [N, N]`` of K (K = L L^T).

    ``X`` is Fortran-ordered; only L's lower triangle is read, panel by panel: ``trsm`` on the
    ``panel x panel`` diagonal blocks and ``gemm`` with the ``(N - j) x panel`` blocks below them,
    first forward (L Y = X), then backward (L^T X = Y). Allocates nothing.
    """
    A, lower = _fortran_view(L)
    n, p = X.shape
    blas = _SubBlockBlas(A.dtype)
    uplo = "L" if lower else "U"
    # L[r0:, c0:c1] is A's block (r0, c0) when lower, else the transpose of A's block (c0, r0).
    to_l, to_lt = ("N", "T") if lower else ("T", "N")

    def below(j0, j1):  # the block of L under the diagonal block j, as (array, i, j)
        return (A, j1, j0) if lower else (A, j0, j1)

    starts = list(range(0, n, panel))
    for j0 in starts:                       # forward: L Y = X
        j1 = min(j0 + panel, n)
        blas.trsm("L", uplo, to_l, j1 - j0, p, (A, j0, j0), (X, j0, 0))
        if j1 < n:
            blas.gemm(to_l, "N", n - j1, p, j1 - j0, -1.0, below(j0, j1), (X, j0, 0), (X, j1, 0))
    for j0 in reversed(starts):             # backward: L^T X = Y
        j1 = min(j0 + panel, n)
        if j1 < n:
            blas.gemm(to_lt, "N", j1 - j0, p, n - j1, -1.0, below(j0, j1), (X, j1, 0), (X, j0, 0))
        blas.trsm("L", uplo, to_lt, j1 - j0, p, (A, j0, j0), (X, j0, 0))


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
    work in K's buffer; the blocked form allocates nothing beyond it.

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
def cho_solve_inplace(L: np.ndarray, B: np.ndarray, *, panel: int | None = None) -> np.ndarray:
    """Solve ``K X = B`` given the lower Cholesky factor ``L [N, N]`` of K; ``B [N]`` or ``[N, P]``.

    Only L's lower triangle is read (its upper triangle may hold anything, e.g. after
    ``cholesky_inplace(clean=False)``) and L is never copied when contiguous. B is overwritten
    with X when it is writeable with L's dtype and 1-D contiguous or Fortran-ordered; otherwise
    X is a new O(N * P) array. Returns ``X`` with B's shape.

    ``panel``: None solves with two whole-matrix triangular solves up to ``BLOCKED_ABOVE`` rows and
    panel by panel (``PANEL``) above; an integer forces that panel width. Either way nothing of
    size N x N is allocated.
    """
    L = np.asarray(L)
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ShapeError(f"L must be square, got shape {L.shape}")
    if panel is not None and (isinstance(panel, bool) or int(panel) < 1):
        raise ValueError(f"panel must be a positive integer, got {panel!r}")
    if L.dtype not in (np.float32, np.float64):
        L = L.astype(np.float64)
    if not (L.flags.c_contiguous or L.flags.f_contiguous):
        L = np.ascontiguousarray(L)
    B = np.asarray(B)
    n = L.shape[0]
    if B.ndim not in (1, 2) or B.shape[0] != n:
        raise ShapeError(f"B must have shape [{n}] or [{n}, P], got {B.shape}")
    if not (B.dtype == L.dtype and B.flags.writeable and B.flags.f_contiguous):
        B = np.array(B, dtype=L.dtype, order="F")
    X = B.reshape(n, -1, order="F")  # a view: B is Fortran-contiguous
    if X.size:
        width = int(panel) if panel is not None else (PANEL if n > BLOCKED_ABOVE else n)
        _blocked_solve(L, X, width)
    return B
