#!/usr/bin/env python
"""In-place Cholesky of a large kernel matrix: the blocked factorisation against LAPACK's own.

    python bench/cholesky_large.py [--n 20000] [--panel 1024] [--reference]

Builds an RBF Gram matrix of N random 10-D points plus 1e-6 on the diagonal (float64, in place,
row block by row block), factorises it with ``tfbdl.gp.cholesky_inplace`` (blocked above
BLOCKED_ABOVE rows) and prints the wall time, the peak resident memory against the matrix's
size, and the largest residual of L L^T - K on a sample of entries. ``--reference`` times
LAPACK ``potrf`` on the whole matrix in a child process with one BLAS thread (the threaded one
crashes OpenBLAS at N = 20,000).
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np


def rbf_matrix(n: int, seed: int = 0, rows: int = 500) -> np.ndarray:
    points = np.random.default_rng(seed).standard_normal((n, 10))
    sq = np.sum(points**2, axis=1)
    K = np.empty((n, n))
    for r0 in range(0, n, rows):
        block = K[r0:r0 + rows]
        np.matmul(points[r0:r0 + rows], points.T, out=block)
        block *= 2.0
        block -= sq[r0:r0 + rows, None]
        block -= sq[None, :]
        np.exp(block / (2.0 * 10.0), out=block)  # lengthscale^2 = 10
    K.flat[:: n + 1] += 1e-6
    return K


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--panel", type=int, default=None, help="panel width (default: the library's)")
    parser.add_argument("--reference", action="store_true", help="also time single-threaded LAPACK potrf")
    parser.add_argument("--lapack-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    K = rbf_matrix(args.n)
    if args.lapack_child:
        import scipy.linalg

        potrf = scipy.linalg.get_lapack_funcs("potrf", (K,))
        start = time.perf_counter()
        _, info = potrf(K.T, lower=0, clean=0, overwrite_a=1)
        print(f"{time.perf_counter() - start:.1f} {info}")
        return
    from tfbdl.gp.cholesky import BLOCKED_ABOVE, PANEL, cholesky_inplace

    sample = np.random.default_rng(1).integers(0, args.n, size=(2000, 2))
    expected = K[sample[:, 0], sample[:, 1]].copy()
    before = peak_rss_bytes()
    start = time.perf_counter()
    L, jitter = cholesky_inplace(K, panel=args.panel)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    got = np.array([L[i] @ L[j] for i, j in sample])  # L is clean (zeros above the diagonal)
    residual = np.max(np.abs(got - expected))
    panel = args.panel or (PANEL if args.n > BLOCKED_ABOVE else None)
    print(f"N = {args.n:,} float64 ({K.nbytes / 2**30:.2f} GiB), {os.cpu_count()} CPU cores; "
          f"{'blocked, panel ' + str(panel) if panel else 'LAPACK potrf on the whole matrix'}")
    print(f"cholesky_inplace: {seconds:.1f} s, jitter {jitter:g}, largest |L L^T - K| on 2,000 entries "
          f"{residual:.2e}; peak resident memory {peak / K.nbytes:.3f} x the matrix "
          f"(before the factorisation {before / K.nbytes:.3f} x)")
    if args.reference:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--lapack-child"], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"single-threaded LAPACK potrf: failed (exit code {out.returncode})")
        else:
            ref_seconds, info = out.stdout.split()
            print(f"single-threaded LAPACK potrf on the whole matrix: {float(ref_seconds):.1f} s (info {info}); "
                  f"blocked / single-threaded = {seconds / float(ref_seconds):.2f}")


if __name__ == "__main__":
    main()
