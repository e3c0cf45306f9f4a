"""In-place Cholesky with jitter, and exact GP classification on centred one-hot targets."""

import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.linalg

from tfbdl.errors import InvalidOptionError, TfbdlError
from tfbdl.gp import (
    JitterWarning,
    NotPositiveDefiniteError,
    centred_targets,
    cho_solve_inplace,
    cholesky_inplace,
    classify,
    fit_predict,
    noise_grid,
    restore_from_upper,
    select_noise,
)


@pytest.fixture
def small_blocks(monkeypatch):
    """Row blocks of 64, so that the O(block * N) temporaries are small next to N^2 here."""
    from tfbdl.gp import cholesky, exact

    monkeypatch.setattr(cholesky, "_BLOCK", 64)
    monkeypatch.setattr(exact, "_BLOCK", 64)


def random_spd(n, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, n))
    return X @ X.T + n * np.eye(n)


def rbf(a, b, lengthscale=1.0):
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / lengthscale**2)


def blobs(n, seed):
    """Three well separated 2-D Gaussian blobs, labels 0, 1, 2 in turn."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    y = np.arange(n) % 3
    return centres[y] + 0.8 * rng.standard_normal((n, 2)), y


# ----------------------------------------------------------------------------- cholesky

@pytest.mark.parametrize("order", ["C", "F"])
def test_cholesky_matches_numpy_in_place(order):
    K0 = random_spd(60)
    K = np.array(K0, order=order)
    with warnings.catch_warnings():
        warnings.simplefilter("error", JitterWarning)
        L, jitter = cholesky_inplace(K)
    assert jitter == 0.0
    assert np.shares_memory(L, K)
    np.testing.assert_allclose(L, np.linalg.cholesky(K0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("panel", [1, 7, 16, 60, 100])
def test_blocked_cholesky_equals_lapack(order, panel):
    """The blocked form (used above BLOCKED_ABOVE rows) gives LAPACK's factor, touches only the
    lower triangle, and works in float32 too."""
    K0 = random_spd(60, seed=5)
    K = np.array(K0, order=order)
    L, jitter = cholesky_inplace(K, panel=panel, clean=False)
    assert jitter == 0.0 and np.shares_memory(L, K)
    np.testing.assert_allclose(np.tril(L), np.linalg.cholesky(K0), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(np.triu(K, 1), np.triu(K0, 1))  # the strict upper triangle untouched
    K32 = np.array(K0, dtype=np.float32, order=order)
    L32, _ = cholesky_inplace(K32, panel=panel)
    assert L32.dtype == np.float32
    np.testing.assert_allclose(L32, np.linalg.cholesky(K0), rtol=1e-4, atol=1e-4)


def test_blocked_cholesky_jitter_and_failure_restore_the_matrix():
    X = np.random.default_rng(6).standard_normal((50, 5))
    K0 = X @ X.T  # rank 5: the first attempts fail inside a later panel
    K = K0.copy()
    with pytest.warns(JitterWarning):
        L, jitter = cholesky_inplace(K, panel=8)
    np.testing.assert_allclose(L @ L.T, K0 + jitter * np.eye(50), atol=1e-9 * np.mean(np.diag(K0)))
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    eig = np.linspace(1.0, 2.0, 30)
    eig[-1] = -0.5
    K0 = (Q * eig) @ Q.T
    K0 = (K0 + K0.T) / 2
    K = K0.copy()
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        cholesky_inplace(K, panel=8, max_tries=3)
    np.testing.assert_array_equal(K, K0)
    with pytest.raises(ValueError, match="panel"):
        cholesky_inplace(K0.copy(), panel=0)


def test_blocked_cholesky_is_the_default_above_the_threshold(monkeypatch):
    from tfbdl.gp import cholesky

    monkeypatch.setattr(cholesky, "BLOCKED_ABOVE", 40)
    monkeypatch.setattr(cholesky, "PANEL", 16)
    calls = []
    original = cholesky._blocked_potrf
    monkeypatch.setattr(cholesky, "_blocked_potrf", lambda K, panel: calls.append(panel) or original(K, panel))
    K0 = random_spd(60, seed=8)
    L, _ = cholesky_inplace(K0.copy())
    assert calls == [16]
    np.testing.assert_allclose(L, np.linalg.cholesky(K0), rtol=1e-10, atol=1e-10)
    cholesky_inplace(random_spd(30))  # at or below the threshold: LAPACK on the whole matrix
    assert calls == [16]


def test_cholesky_overwrite_false_keeps_input():
    K0 = random_spd(30, seed=1)
    K = K0.copy()
    L, _ = cholesky_inplace(K, overwrite=False)
    assert not np.shares_memory(L, K)
    np.testing.assert_array_equal(K, K0)
    np.testing.assert_allclose(L @ L.T, K0, rtol=1e-10)


def test_rank_deficient_matrix_gets_jitter_and_warns():
    X = np.random.default_rng(0).standard_normal((50, 5))
    K0 = X @ X.T
    K = K0.copy()
    with pytest.warns(JitterWarning, match="jitter"):
        L, jitter = cholesky_inplace(K)
    assert jitter > 0
    assert np.shares_memory(L, K)
    np.testing.assert_array_equal(np.triu(L, 1), 0)
    np.testing.assert_allclose(L @ L.T, K0 + jitter * np.eye(50), atol=1e-9 * np.mean(np.diag(K0)))


def test_negative_eigenvalue_raises_named_error_and_restores_matrix():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    eig = np.linspace(1.0, 2.0, 20)
    eig[0] = -0.5
    K0 = (Q * eig) @ Q.T
    K0 = (K0 + K0.T) / 2  # exactly symmetric, so restoring it from one triangle is exact
    assert (np.diag(K0) > 0).all()  # positive diagonal: only the factorisation can tell
    K = K0.copy()
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite") as info:
        cholesky_inplace(K, max_tries=4)
    assert isinstance(info.value, TfbdlError)
    assert not isinstance(info.value, np.linalg.LinAlgError)
    np.testing.assert_array_equal(K, K0)


def test_nonfinite_and_bad_diagonal_raise():
    K = random_spd(5)
    K[1, 0] = np.nan
    with pytest.raises(NotPositiveDefiniteError, match="NaN"):
        cholesky_inplace(K)
    with pytest.raises(NotPositiveDefiniteError, match="diagonal"):
        cholesky_inplace(-np.eye(3))


def test_failed_factorisation_leaves_upper_triangle_intact():
    """The retry design relies on LAPACK potrf (clean=0) never touching the other triangle."""
    X = np.random.default_rng(3).standard_normal((700, 4))  # more than one 512-row block
    K0 = X @ X.T
    K = K0.copy()
    potrf = scipy.linalg.get_lapack_funcs("potrf", (K,))
    _, info = potrf(K.T, lower=0, clean=0, overwrite_a=1)
    assert info > 0
    np.testing.assert_array_equal(np.triu(K, 1), np.triu(K0, 1))
    restore_from_upper(K, np.diag(K0))
    np.testing.assert_array_equal(K, K0)


def test_cholesky_allocates_no_second_matrix(small_blocks):
    X = np.random.default_rng(4).standard_normal((800, 6))
    K = X @ X.T  # rank deficient: several attempts, each restoring K in place
    tracemalloc.start()
    try:
        with pytest.warns(JitterWarning):
            L, jitter = cholesky_inplace(K)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert jitter > 0 and np.shares_memory(L, K)
    assert peak < K.nbytes / 4


def test_cho_solve_inplace_solves_and_overwrites():
    K0 = random_spd(40, seed=5)
    B = np.random.default_rng(5).standard_normal((40, 3))
    L, _ = cholesky_inplace(K0.copy(), clean=False)  # upper triangle keeps K: must be ignored
    expected = np.linalg.solve(K0, B)
    Bf = np.asfortranarray(B)
    X = cho_solve_inplace(L, Bf)
    np.testing.assert_allclose(X, expected, rtol=1e-9)
    assert np.shares_memory(X, Bf)
    np.testing.assert_allclose(cho_solve_inplace(L, B[:, 0].copy()), expected[:, 0], rtol=1e-9)


@pytest.mark.parametrize("order", ["C", "F"])
def test_blocked_cholesky_allocates_no_panel(order, small_blocks):
    """The blocked factorisation works in K's buffer: no temporary near one N x panel block."""
    n, panel = 600, 64
    K0 = random_spd(n, seed=9)
    K = np.array(K0, order=order)
    tracemalloc.start()
    try:
        L, _ = cholesky_inplace(K, panel=panel, clean=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * panel * K.itemsize / 4
    np.testing.assert_allclose(np.tril(L), np.linalg.cholesky(K0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ["C", "F"])
def test_restore_from_upper_in_either_order_in_place(order, small_blocks):
    K0 = random_spd(600, seed=14)
    K = np.array(K0, order=order)
    K[np.tril_indices(600)] = -1.0  # lower triangle and diagonal overwritten, as by a factorisation
    tracemalloc.start()
    try:
        restore_from_upper(K, np.diag(K0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(K, K0)
    assert peak < 64 * 600 * K.itemsize / 2  # well below one 64-row block of K


@pytest.mark.parametrize("l_order", ["C", "F"])
@pytest.mark.parametrize("panel", [1, 7, 16, 45, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_solve_matches_numpy_in_place(l_order, panel, dtype):
    """Panel-by-panel solves (used above BLOCKED_ABOVE rows) give K^-1 B for C- and Fortran-ordered
    factors whose upper triangle holds K, write into B, and copy neither L nor B."""
    K0 = random_spd(45, seed=10)
    L, _ = cholesky_inplace(np.array(K0, dtype=dtype, order=l_order), clean=False)
    B0 = np.random.default_rng(10).standard_normal((45, 4))
    expected = np.linalg.solve(K0, B0)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    B = np.array(B0, dtype=dtype, order="F")
    X = cho_solve_inplace(L, B, panel=panel)
    assert X.dtype == dtype and np.shares_memory(X, B)
    np.testing.assert_allclose(X, expected, rtol=tol, atol=tol)
    b = B0[:, 1].astype(dtype)
    x = cho_solve_inplace(L, b, panel=panel)
    assert np.shares_memory(x, b)
    np.testing.assert_allclose(x, expected[:, 1], rtol=tol, atol=tol)
    Bc = np.ascontiguousarray(B0)  # C-ordered: solved in a copy, B kept
    Xc = cho_solve_inplace(L, Bc, panel=panel)
    np.testing.assert_array_equal(Bc, B0)
    np.testing.assert_allclose(Xc, expected, rtol=tol, atol=tol)


def test_solve_is_blocked_above_the_threshold_and_checks_panel(monkeypatch):
    from tfbdl.gp import cholesky

    monkeypatch.setattr(cholesky, "BLOCKED_ABOVE", 40)
    monkeypatch.setattr(cholesky, "PANEL", 16)
    calls = []
    original = cholesky._blocked_solve
    monkeypatch.setattr(cholesky, "_blocked_solve", lambda L, X, panel: calls.append(panel) or original(L, X, panel))
    K0 = random_spd(60, seed=11)
    L, _ = cholesky_inplace(K0.copy())
    B = np.ones((60, 2), order="F")
    np.testing.assert_allclose(cho_solve_inplace(L, B), np.linalg.solve(K0, np.ones((60, 2))), rtol=1e-9)
    K1 = random_spd(30, seed=12)
    cho_solve_inplace(cholesky_inplace(K1.copy())[0], np.ones(30))
    assert calls == [16, 30]  # at or below the threshold: one panel, i.e. two whole-matrix solves
    with pytest.raises(ValueError, match="panel"):
        cho_solve_inplace(L, B, panel=0)
    assert cho_solve_inplace(L, np.ones((60, 0))).shape == (60, 0)


def test_blocked_solve_allocates_nothing():
    n = 2000
    L, _ = cholesky_inplace(random_spd(n, seed=13), panel=256)
    B = np.asfortranarray(np.random.default_rng(13).standard_normal((n, 3)))
    tracemalloc.start()
    try:
        cho_solve_inplace(L, B, panel=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < B.nbytes / 4


# ----------------------------------------------------------------------------- exact GP

def test_centred_targets_are_plus_minus_one_as_in_reference():
    Y = centred_targets(np.array([0, 2, 1]), 3)
    np.testing.assert_array_equal(Y, [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]])
    assert Y.dtype == np.float64
    with pytest.raises(InvalidOptionError):
        centred_targets(np.array([0, 3]), 3)


def test_fit_predict_equals_closed_form():
    rng = np.random.default_rng(6)
    X, Xt = rng.standard_normal((40, 3)), rng.standard_normal((7, 3))
    y = rng.integers(0, 4, 40)
    Kxx, Kxt = rbf(X, X), rbf(X, Xt)
    noise = 0.05
    expected = Kxt.T @ np.linalg.solve(Kxx + noise * np.eye(40), centred_targets(y, 4))
    K = Kxx.copy()
    np.testing.assert_allclose(fit_predict(K, Kxt, y, 4, noise), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(K, Kxx)  # overwrite=False by default
    np.testing.assert_allclose(fit_predict(K, Kxt, y, 4, noise, overwrite=True), expected,
                               rtol=1e-8, atol=1e-10)


def test_classify_blobs():
    X, y = blobs(60, seed=0)
    Xt, yt = blobs(90, seed=1)
    result = classify(rbf(X, X, 2.0), rbf(X, Xt, 2.0), y, yt, 3, val_fraction=0.2, seed=0)
    assert result.test_accuracy >= 0.95
    assert result.test_error == pytest.approx(1 - result.test_accuracy)
    assert result.predictions.shape == (90,) and result.mean.shape == (90, 3)
    assert len(result.validation) == len(noise_grid(np.eye(2)))
    assert result.noise in [row["noise"] for row in result.validation]


# 1-D points 0 (class 0), 0.2 (class 1), 1.0 (class 1); validation point at -1. A near-noiseless
# GP extrapolates the steep +1 -> -1 step and says class 0 there; with noise 1e3 the mean is the
# kernel-weighted vote, which says class 1. So the best grid value is fixed by the label at -1.
_X1 = np.array([[0.0], [0.2], [1.0], [-1.0]])


@pytest.mark.parametrize("val_label, best", [(0, 1e-6), (1, 1e3)])
@pytest.mark.parametrize("overwrite", [False, True])
def test_select_noise_picks_the_best_value(val_label, best, overwrite):
    K = rbf(_X1, _X1)
    y = np.array([0, 1, 1, val_label])
    K0 = K.copy()
    chosen, table = select_noise(K, y, [0, 1, 2], [3], 2, [1e-6, 1e3], overwrite=overwrite)
    assert chosen == best
    assert [row["noise"] for row in table] == [1e-6, 1e3]
    assert sorted(row["val_accuracy"] for row in table) == [0.0, 1.0]
    np.testing.assert_array_equal(K, K0)  # workspace restored exactly


def test_select_noise_ties_go_to_larger_noise():
    X, y = blobs(30, seed=2)
    K = rbf(X, X, 2.0)
    chosen, table = select_noise(K, y, np.arange(20), np.arange(20, 30), 3, [1e-4, 1e-3])
    assert [row["val_accuracy"] for row in table] == [1.0, 1.0]
    assert chosen == 1e-3


def test_select_noise_in_place_matches_copy_and_restores(small_blocks):
    """Unsorted indices, points in neither set, F order and > one block of rows."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((700, 4))
    y = rng.integers(0, 3, 700)
    Kxx = rbf(X, X, 1.5)
    perm = rng.permutation(700)
    tr, va = perm[:500], perm[500:650]
    grid = [1e-3, 1e-1, 1.0]
    best_copy, table_copy = select_noise(Kxx, y, tr, va, 3, grid)
    K = np.asfortranarray(Kxx)
    tracemalloc.start()
    try:
        best, table = select_noise(K, y, tr, va, 3, grid, overwrite=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert best == best_copy
    assert [r["val_accuracy"] for r in table] == [r["val_accuracy"] for r in table_copy]
    np.testing.assert_array_equal(K, Kxx)
    assert peak < Kxx.nbytes / 4


def test_classify_overwrite_uses_no_second_matrix(small_blocks):
    X, y = blobs(600, seed=3)
    Xt, yt = blobs(30, seed=4)
    Kxx, Kxt = rbf(X, X, 2.0), rbf(X, Xt, 2.0)
    grid = [1e-4, 1e-2, 1.0]
    reference = classify(Kxx, Kxt, y, yt, 3, grid=grid, seed=1)
    K = Kxx.copy()
    tracemalloc.start()
    try:
        result = classify(K, Kxt, y, yt, 3, grid=grid, seed=1, overwrite=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < Kxx.nbytes / 4
    assert result.noise == reference.noise
    np.testing.assert_allclose(result.mean, reference.mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(reference.predictions, result.predictions)


def test_classify_explicit_validation_and_single_value():
    X, y = blobs(45, seed=5)
    Xt, yt = blobs(15, seed=6)
    Kxx, Kxt = rbf(X, X, 2.0), rbf(X, Xt, 2.0)
    result = classify(Kxx, Kxt, y, yt, 3, val_idx=np.arange(9), grid=[1e-3, 1e-1])
    assert len(result.validation) == 2
    single = classify(Kxx, Kxt, y, yt, 3, grid=[1e-2])
    assert single.validation == [] and single.noise == 1e-2
    with pytest.raises(InvalidOptionError):
        select_noise(Kxx, y, np.arange(10), np.arange(5, 15), 3, [1e-2])


def test_import_is_cheap():
    code = "import sys, tfbdl.gp; assert 'tensorflow' not in sys.modules and 'gpflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_read_only_kernel_is_copied_not_written():
    X, y = blobs(30, seed=7)
    Xt, yt = blobs(9, seed=8)
    Kxx, Kxt = rbf(X, X, 2.0), rbf(X, Xt, 2.0)
    K = Kxx.copy()
    K.flags.writeable = False
    result = classify(K, Kxt, y, yt, 3, grid=[1e-3, 1e-1], overwrite=True)
    np.testing.assert_array_equal(K, Kxx)
    assert result.test_accuracy >= 0.9
    R = random_spd(10)
    R0 = R.copy()
    R.flags.writeable = False
    L, _ = cholesky_inplace(R)
    assert not np.shares_memory(L, R)
    np.testing.assert_array_equal(R, R0)
