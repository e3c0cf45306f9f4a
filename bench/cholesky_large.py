#!/usr/bin/env python
"""In-place Cholesky of a large kernel matrix: the blocked factorisation against LAPACK's own.

    python bench/cholesky_large.py [--n 20000] [--panel 1024] [--reference] [--rhs 10]
    python bench/cholesky_large.py --projection-only [--chol-seconds 71.0 --chol-n 20000]

Builds an RBF Gram matrix of N random 10-D points plus 1e-6 on the diagonal (float64, in place,
row block by row block, with no temporary larger than O(N)), factorises it with
``tfbdl.gp.cholesky_inplace`` (blocked above BLOCKED_ABOVE rows), solves for ``--rhs`` right-hand
sides with ``cho_solve_inplace``, and prints the wall times, the peak resident memory of the whole
process against the matrix's size (with where it comes from: the interpreter and libraries, the
matrix's construction, the factorisation, the solve), the largest residual of L L^T - K on a
sample of entries and the solve's relative residual. ``--reference`` times LAPACK ``potrf`` on the
whole matrix in a child process with one BLAS thread (the threaded one crashes OpenBLAS at
N = 20,000). Only numpy and scipy are imported (no TensorFlow), so the baseline is small.

Then it prints a projection to the full-MNIST ConvNet GP (50,000 training rows, 20,000
validation + test rows): kernel time from the ConvNet GP kernel's entries/s (bench/
kernel_throughput.py's figure, ``--kernel-rate32/64``), Cholesky time from the N^3 scaling of the
run above, memory; and for one H100/H200-class GPU from assumed throughputs, printed as such.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

#: bench/kernel_throughput.py at N = 1,024 on the 2-core CPU (README "Measured"): N^2 / seconds.
KERNEL_RATE32 = 87_700.0
KERNEL_RATE64 = 51_000.0
KERNEL_RATE_N = 1024
#: Float32 matmul GFLOP/s measured in that same run (the CPU's practical peak).
CPU_MATMUL_GFLOPS = 207.0

#: Assumptions for one H100/H200-class GPU (SXM; H200 has the H100's compute and 141 GB memory).
GPU_PEAK_TFLOPS = {"float32": 67.0, "float64": 34.0}   # vector (non-tensor-core) peaks: the kernel
# cuSOLVER potrf at N = 50,000: half of the 67 TFLOP/s FP32 / FP64-tensor-core peak
GPU_POTRF_TFLOPS = {"float32": 33.0, "float64": 33.0}
GPU_MEMORY_GB = {"H100": 80.0, "H200": 141.0}
GPU_HOST_LINK_GBS = 25.0                               # host <-> device copies (PCIe 5 x16, effective)


def rbf_matrix(n: int, seed: int = 0, rows: int = 256) -> np.ndarray:
    """``exp(-|x_i - x_j|^2 / 20) [n, n]`` for n standard normal 10-D points, plus 1e-6 I; built in
    place so that the only temporaries are O(n)."""
    points = np.random.default_rng(seed).standard_normal((n, 10))
    sq = np.sum(points**2, axis=1)
    K = np.empty((n, n))
    for r0 in range(0, n, rows):
        block = K[r0:r0 + rows]
        np.matmul(points[r0:r0 + rows], points.T, out=block)
        block *= 2.0
        block -= sq[r0:r0 + rows, None]
        block -= sq[None, :]
        block *= 1.0 / (2.0 * 10.0)  # lengthscale^2 = 10
        np.exp(block, out=block)
    K.flat[:: n + 1] += 1e-6
    return K


def rss_bytes() -> tuple[int, int]:
    """(current, peak) resident memory of this process in bytes, from /proc (peak: getrusage)."""
    current = 0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) * 1024
    except OSError:
        pass
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def pairs_per_second(entries_per_second: float, n: int = KERNEL_RATE_N) -> float:
    """kernel_throughput.py reports N^2 / t although only the N (N + 1) / 2 upper pairs are computed."""
    return entries_per_second * (n + 1) / (2 * n)


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def projection(chol_seconds: float, chol_n: int, overhead_gb: float, rate32: float, rate64: float,
               n_train: int = 50_000, n_other: int = 20_000, grid: int = 9, val_fraction: float = 0.1) -> None:
    """Print the projected time and memory of the full-MNIST exact ConvNet GP, CPU (from the
    measurements) and one GPU (from the assumptions above). ``overhead_gb``: the measured peak
    resident memory beyond the matrix (interpreter, libraries, O(N) buffers), added to K_train."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from kernel_throughput import flops_per_pair  # numpy only at import

    flop_pair = flops_per_pair()
    pairs_train = n_train * (n_train + 1) / 2
    pairs_cross = n_other * n_train
    pairs = pairs_train + pairs_cross
    n_fit = int(round((1 - val_fraction) * n_train))
    cpu_chol = chol_seconds * (n_train / chol_n) ** 3
    cpu_select = grid * chol_seconds * (n_fit / chol_n) ** 3
    cpu_gflops = chol_n**3 / 3 / chol_seconds / 1e9
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    cpu_fraction = {d: pairs_per_second(r) * flop_pair / 1e9 / CPU_MATMUL_GFLOPS
                    for d, r in (("float32", rate32), ("float64", rate64))}

    print()
    print(f"Projection: full-MNIST ConvNet GP, K_train {n_train:,} x {n_train:,} and cross blocks "
          f"{n_other:,} x {n_train:,} ({pairs / 1e9:.2f}e9 kernel pairs, {flop_pair / 1e6:.2f} MFLOP each)")
    print(f"CPU ({os.cpu_count()} cores, {ram_gb:.0f} GB): kernel from {rate32:,.0f} / {rate64:,.0f} entries/s "
          f"(float32 / float64, kernel_throughput.py), Cholesky from {chol_seconds:.1f} s at N = {chol_n:,} "
          f"({cpu_gflops:.0f} GFLOP/s) scaled as N^3, Cholesky peak K_train + {overhead_gb:.2f} GB measured overhead")
    rows = []
    for dtype, rate, size in (("float32", rate32, 4), ("float64", rate64, 8)):
        kernel = pairs / pairs_per_second(rate)
        k_train_gb = n_train**2 * size / 1e9
        cross_gb = n_other * n_train * size / 1e9
        rows.append((f"CPU {dtype}", _hours(pairs_train / pairs_per_second(rate)), _hours(kernel),
                     _hours(cpu_chol) + (" (float64 timing)" if dtype == "float32" else ""),
                     _hours(cpu_select), f"{k_train_gb:.1f} + {cross_gb:.1f}",
                     f"{k_train_gb + overhead_gb:.1f}",
                     "yes" if k_train_gb + overhead_gb < 0.9 * ram_gb else "no"))
    for dtype, size in (("float32", 4), ("float64", 8)):
        rate = GPU_PEAK_TFLOPS[dtype] * 1e12 * cpu_fraction["float32"]
        kernel = pairs * flop_pair / rate
        chol = n_train**3 / 3 / (GPU_POTRF_TFLOPS[dtype] * 1e12)
        select = grid * n_fit**3 / 3 / (GPU_POTRF_TFLOPS[dtype] * 1e12)
        k_train_gb = n_train**2 * size / 1e9
        cross_gb = n_other * n_train * size / 1e9
        fits = ", ".join(f"{name} {'yes' if k_train_gb < 0.9 * mem else 'no'}" for name, mem in GPU_MEMORY_GB.items())
        rows.append((f"GPU {dtype} (assumed)", _hours(pairs_train * flop_pair / rate), _hours(kernel),
                     f"{chol:.1f} s + {k_train_gb / GPU_HOST_LINK_GBS:.1f} s copy", f"{select:.0f} s",
                     f"{k_train_gb:.1f} + {cross_gb:.1f}", f"{k_train_gb:.1f}", fits))
    header = ("where", "kernel K_train", "all kernels", "Cholesky 50k", f"noise selection ({grid} x {n_fit // 1000}k)",
              "K_train + cross GB", "Cholesky peak GB", "K_train fits")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print(f"GPU assumptions (not measured): the kernel sustains the same fraction of the vector peak "
          f"({GPU_PEAK_TFLOPS['float32']:.0f} TFLOP/s FP32, {GPU_PEAK_TFLOPS['float64']:.0f} FP64) as it does "
          f"of the float32 matmul on this CPU ({100 * cpu_fraction['float32']:.1f}%); cuSOLVER potrf "
          f"sustains {GPU_POTRF_TFLOPS['float64']:.0f} TFLOP/s; K_train crosses a {GPU_HOST_LINK_GBS:.0f} GB/s "
          f"host link once; memory {', '.join(f'{k} {v:.0f} GB' for k, v in GPU_MEMORY_GB.items())}.")
    print("The cross blocks need not be resident: the prediction Kxt^T alpha can read them block by "
          "block; the Cholesky peak is K_train (in place) plus the measured overhead.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--panel", type=int, default=None, help="panel width (default: the library's)")
    parser.add_argument("--rhs", type=int, default=10, help="right-hand sides solved after the factorisation")
    parser.add_argument("--reference", action="store_true", help="also time single-threaded LAPACK potrf")
    parser.add_argument("--kernel-rate32", type=float, default=KERNEL_RATE32, help="kernel entries/s, float32")
    parser.add_argument("--kernel-rate64", type=float, default=KERNEL_RATE64, help="kernel entries/s, float64")
    parser.add_argument("--projection-only", action="store_true",
                        help="print only the projection, from --chol-seconds at --chol-n")
    parser.add_argument("--chol-seconds", type=float, default=71.0, help="measured Cholesky seconds at --chol-n")
    parser.add_argument("--chol-n", type=int, default=20000)
    parser.add_argument("--overhead-gb", type=float, default=0.1,
                        help="with --projection-only: peak memory beyond the matrix, GB")
    parser.add_argument("--lapack-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.projection_only:
        projection(args.chol_seconds, args.chol_n, args.overhead_gb, args.kernel_rate32, args.kernel_rate64)
        return

    if args.lapack_child:
        import scipy.linalg

        K = rbf_matrix(args.n)
        potrf = scipy.linalg.get_lapack_funcs("potrf", (K,))
        start = time.perf_counter()
        _, info = potrf(K.T, lower=0, clean=0, overwrite_a=1)
        print(f"{time.perf_counter() - start:.1f} {info}")
        return
    from tfbdl.gp.cholesky import BLOCKED_ABOVE, PANEL, cho_solve_inplace, cholesky_inplace

    imported = rss_bytes()[1]
    K = rbf_matrix(args.n)
    built = rss_bytes()
    sample = np.random.default_rng(1).integers(0, args.n, size=(2000, 2))
    expected = K[sample[:, 0], sample[:, 1]].copy()
    start = time.perf_counter()
    L, jitter = cholesky_inplace(K, panel=args.panel)
    seconds = time.perf_counter() - start
    factored = rss_bytes()
    B = np.asfortranarray(np.random.default_rng(2).standard_normal((args.n, args.rhs)))
    B0 = B.copy()
    start = time.perf_counter()
    X = cho_solve_inplace(L, B, panel=args.panel)
    solve_seconds = time.perf_counter() - start
    solved = rss_bytes()
    assert np.shares_memory(X, B)
    got = np.array([L[i] @ L[j] for i, j in sample])  # L is clean (zeros above the diagonal)
    residual = np.max(np.abs(got - expected))
    solve_residual = np.max(np.abs(L @ (L.T @ X) - B0)) / np.max(np.abs(B0))
    panel = args.panel or (PANEL if args.n > BLOCKED_ABOVE else None)
    mb = K.nbytes
    print(f"N = {args.n:,} float64 ({mb / 2**30:.2f} GiB), {os.cpu_count()} CPU cores; "
          f"{'blocked, panel ' + str(panel) if panel else 'LAPACK potrf on the whole matrix'}; "
          f"TensorFlow imported: {'tensorflow' in sys.modules}")
    print(f"cholesky_inplace: {seconds:.1f} s ({args.n**3 / 3 / seconds / 1e9:.0f} GFLOP/s), jitter {jitter:g}, "
          f"largest |L L^T - K| on 2,000 entries {residual:.2e}")
    print(f"cho_solve_inplace, {args.rhs} right-hand sides: {solve_seconds:.2f} s, "
          f"max |K X - B| / max |B| = {solve_residual:.1e}, X written into B")
    print(f"peak resident memory {solved[1] / mb:.3f} x the matrix for the whole process: interpreter, numpy "
          f"and scipy {imported / mb:.3f} x; after building K {built[1] / mb:.3f} x; after the factorisation "
          f"{factored[1] / mb:.3f} x (resident {factored[0] / mb:.3f} x); after the solve {solved[1] / mb:.3f} x")
    if args.reference:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        del K, L, X, B, B0  # the child builds its own matrix
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--lapack-child"], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"single-threaded LAPACK potrf: failed (exit code {out.returncode})")
        else:
            ref_seconds, info = out.stdout.split()
            print(f"single-threaded LAPACK potrf on the whole matrix: {float(ref_seconds):.1f} s (info {info}); "
                  f"blocked / single-threaded = {seconds / float(ref_seconds):.2f}")
    projection(seconds, args.n, (solved[1] - mb) / 1e9, args.kernel_rate32, args.kernel_rate64)


if __name__ == "__main__":
    main()
