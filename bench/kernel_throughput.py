#!/usr/bin/env python
"""Throughput of the ConvNet GP kernel on K(X, X) with MNIST-sized inputs.

    python bench/kernel_throughput.py [--n 1024] [--dtypes float32 float64] [--pair-batch 2048]

Prints, per dtype: wall time, matrix entries per second (N^2 / t, although only the upper
triangle is computed), achieved GFLOP/s, and a float32 matmul's GFLOP/s measured in the same run
(TensorFlow and numpy's BLAS) next to the cores' theoretical float32 FMA peak (from /proc/cpuinfo:
8 float32 lanes per 256-bit AVX2 FMA, 2 FMA units, 2 flops per FMA), plus the float32 result's
largest relative difference from float64. Each dtype is timed on its second call at full size:
the compiled step's shapes include N, so the first call at a new N compiles it (seconds).

FLOP model (per pair of images, per layer, what this implementation executes): a k x k "same"
conv on an H x W map as two banded matmuls, 2*H*H*W + 2*H*W*W; the ReLU as 12 flops per location
(arccos, square root and the arithmetic around them counted as one flop each); the readout as
H*W. Only the N(N+1)/2 pairs of the upper triangle are counted.
"""

import argparse
import os
import time

import numpy as np


def matmul_gflops(seconds: float = 2.0, size: int = 2048) -> float:
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32)
    tf.matmul(a, b).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tf.matmul(a, b).numpy()
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def numpy_sgemm_gflops(seconds: float = 2.0, size: int = 2048) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def theoretical_gflops() -> float | None:
    """Cores x clock x 32 float32 flops per cycle (two 8-lane FMA units), if the CPU has AVX2 and FMA."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return None
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "").split()
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    if "avx2" not in flags or "fma" not in flags or not mhz:
        return None
    return len(mhz) * max(mhz) * 1e6 * 32 / 1e9


def flops_per_pair(height=28, width=28, depth=7) -> float:
    conv = 2 * height * height * width + 2 * height * width * width
    relu = 12 * height * width
    return depth * (conv + relu) + height * width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="number of images (N x N kernel matrix)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], help="working dtypes to time")
    parser.add_argument("--pair-batch", type=int, default=None, help="pairs per computation step (default: the kernel's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import tensorflow as tf

    from tfbdl.kernels import paper_kernel

    print(f"ConvNet GP preset, K(X, X) with N = {args.n}, 28x28x1 inputs; TF {tf.__version__}, "
          f"{os.cpu_count()} CPU cores, devices {[d.name for d in tf.config.list_logical_devices()]}")
    peak = matmul_gflops()
    theoretical = theoretical_gflops()
    print(f"float32 matmul (2048^3): TensorFlow {peak:.1f} GFLOP/s, numpy {numpy_sgemm_gflops():.1f} GFLOP/s; "
          f"theoretical FMA peak {'unknown' if theoretical is None else f'{theoretical:.1f} GFLOP/s'}")
    images = np.random.default_rng(args.seed).random((args.n, 784))
    options = {} if args.pair_batch is None else {"pair_batch": args.pair_batch}
    results = {}
    pairs = args.n * (args.n + 1) / 2
    for name in args.dtypes:
        kernel = paper_kernel("convnet_gp", normalise=False, **options)
        x = images.astype(name)
        kernel.K(x).numpy()  # compiles the step for this N
        start = time.perf_counter()
        results[name] = kernel.K(x).numpy()
        seconds = time.perf_counter() - start
        gflops = pairs * flops_per_pair() / seconds / 1e9
        print(f"{name}: {seconds:8.2f} s  {args.n**2 / seconds:10.0f} entries/s  {gflops:7.1f} GFLOP/s "
              f"({100 * gflops / peak:.1f}% of the float32 matmul)")
    if "float32" in results and "float64" in results:
        rel = np.abs(results["float32"] - results["float64"]) / np.abs(results["float64"])
        print(f"float32 vs float64: largest relative difference {rel.max():.2e}")


if __name__ == "__main__":
    main()
