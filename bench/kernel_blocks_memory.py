#!/usr/bin/env python
"""Peak memory of block-wise kernel files: bounded by a block, not by N^2.

    python bench/kernel_blocks_memory.py [--sizes 1000 2000 4000] [--block 200] [--n-test 1000]

Each size runs in a fresh process (so its peak RSS, from resource.getrusage, is its own) that
computes a kernel file for a cheap RBF kernel with ``compute_kernel_file``. The table shows the
process's resident memory before computing (interpreter, numpy, h5py, the inputs), its peak
while computing, and the size the full Kxx + Kxt would take in memory: the peak barely moves
while the full matrices grow as N^2.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

BLOCKS_PY = pathlib.Path(__file__).resolve().parents[1] / "tfbdl" / "kernels" / "blocks.py"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rbf_pair(X1, X2=None):
    X2 = X1 if X2 is None else X2
    sq = (X1**2).sum(1)[:, None] + (X2**2).sum(1)[None, :] - 2.0 * X1 @ X2.T
    return np.exp(-0.5 * np.maximum(sq, 0.0) / X1.shape[1])


def rbf_diag(X):
    return np.ones(len(X), dtype=X.dtype)


def worker(n: int, n_test: int, block: int, dim: int, folder: str) -> dict:
    # Load the module from its file: the package ``tfbdl.kernels`` imports TensorFlow and GPflow,
    # whose own footprint (and import-time peak) would hide what the block loop uses.
    spec = importlib.util.spec_from_file_location("kernel_blocks_bench", BLOCKS_PY)
    blocks = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = blocks
    spec.loader.exec_module(blocks)
    import click  # noqa: F401  (imported lazily by blocks; counted in "before", not in the growth)
    import h5py  # noqa: F401

    rng = np.random.default_rng(0)
    X, Xt = rng.standard_normal((n, dim)), rng.standard_normal((n_test, dim))
    before = _peak_mb()
    start = time.perf_counter()
    path = blocks.compute_kernel_file(pathlib.Path(folder) / f"k{n}.h5", rbf_pair, rbf_diag, X, Xt,
                                      block=block, config={"kernel": "rbf"}, progress=False)
    seconds = time.perf_counter() - start
    status = blocks.kernel_file_status(path)
    assert status["complete"], status
    return {
        "n": n, "tasks": status["total"], "seconds": seconds, "before_mb": before, "peak_mb": _peak_mb(),
        "full_mb": (n * n + n * n_test) * 8 / 2**20, "block_mb": block * block * 8 / 2**20,
        "disk_mb": os.stat(path).st_blocks * 512 / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000], help="numbers of training points N")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--dim", type=int, default=64, help="input features")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.n_test, args.block, args.dim, args.folder)))
        return
    print(f"block {args.block} (one float64 block: {args.block**2 * 8 / 2**20:.2f} MB), "
          f"{args.n_test} test points, {args.dim} features")
    print(f"{'N':>6}{'tasks':>7}{'seconds':>9}{'RSS before':>12}{'peak RSS':>10}{'growth':>8}"
          f"{'full Kxx+Kxt':>14}{'file on disk':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--worker", str(n), "--n-test", str(args.n_test),
                   "--block", str(args.block), "--dim", str(args.dim), "--folder", folder]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(f"{r['n']:>6}{r['tasks']:>7}{r['seconds']:>9.1f}{r['before_mb']:>9.0f} MB{r['peak_mb']:>7.0f} MB"
                  f"{r['peak_mb'] - r['before_mb']:>5.0f} MB{r['full_mb']:>11.0f} MB{r['disk_mb']:>11.0f} MB")


if __name__ == "__main__":
    main()
