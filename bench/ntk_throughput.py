#!/usr/bin/env python
"""Throughput of the empirical NTK strategies on LeNet5 with CIFAR-sized (32x32x3) inputs.

    python bench/ntk_throughput.py [--n 1000] [--block-size 50] [--classes 1] [--budget 120]
    python bench/ntk_throughput.py --suite [--block-size 50] [--strategies vmap_jacobian structured]

Model: ``tfbdl.nn.lenet5(classes, (32, 32, 3))`` (20-50 conv, 500 dense; 652,571 parameters for
one output; the linearised-networks code's own LeNet is the smaller 6-16-120-84 one). The
default of one output is that paper's setting for the NTK eigenfunctions (a scalar-output
network); ``--classes 10 --output trace`` sums the ten logits' NTKs and costs about ten times
more. Inputs: the first N Fashion-MNIST test images, zero-padded
from 28x28 to 32x32 and repeated over three channels, as a stand-in for CIFAR-10 (random
uniform images when Fashion-MNIST is not on disk; the header says which). Speed does not
depend on the pixel values.

For each strategy, Θ(X, X) for X the N images is computed with ``compute_ntk`` (upper-triangle
blocks, mirrored). Entries per second are N² / seconds (the whole matrix, although only its
upper triangle is computed), after the functions are traced. A strategy is first timed on 3
blocks (3 * block-size images: 6 block pairs); when that predicts more than ``--budget``
seconds for all N images, the N-image figure is extrapolated from it (marked "extrapolated":
nb = N / block-size blocks give nb (nb + 1) / 2 block pairs, each costing a sixth of the
3-block time; the machine's other load makes this good to a factor of about 2) instead of
measured. The speed-up is over the ``jacobian`` strategy (plain ``tape.jacobian``), and the
3-block results of every strategy are compared with its (largest absolute difference, and
relative to the largest entry); ``structured / vmap_jacobian`` is printed when both ran.
``--suite`` runs the quoted configurations one after the other: one output (trace) at N = 400
and N = 2000, ten outputs (trace and full) at N = 400.
"""

import argparse
import os
import time

import numpy as np


def images(n: int, data_dir, seed: int) -> tuple[np.ndarray, str]:
    """``[n, 32, 32, 3]`` float32 in [0, 1]: padded Fashion-MNIST, or uniform noise."""
    try:
        from tfbdl.data.datasets import load_dataset

        raw, _ = load_dataset("fashion_mnist", "test", data_dir, download=False, progress=False)
        if len(raw) >= n:
            x = np.pad(raw[:n].astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2), (0, 0)))
            return np.repeat(x, 3, axis=-1), "Fashion-MNIST test images padded to 32x32x3"
    except Exception as e:  # noqa: BLE001  (any reason the data set is missing: fall back)
        reason = f" ({type(e).__name__})"
    else:
        reason = f" (only {len(raw)} Fashion-MNIST images)"
    x = np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)
    return x, "uniform random images" + reason


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run(args, classes: int, output, n: int, x_all: np.ndarray, source: str) -> dict:
    """Time every strategy on one configuration; print and return entries/s per strategy."""
    import tensorflow as tf

    from tfbdl.nn import count_params, lenet5
    from tfbdl.ntk.empirical import choose_strategy, compute_ntk

    model = lenet5(classes, (32, 32, 3), seed=args.seed)
    x = x_all[:n]
    bs = args.block_size
    nb = -(-n // bs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nLeNet5 ({classes} output(s), {count_params(model):,} parameters) on {source}; "
          f"N = {n}, block size {bs} ({nb} x {nb} blocks, {nb * (nb + 1) // 2} computed), "
          f"output {output!r}, {args.dtype}")
    print(f"TF {tf.__version__}, {os.cpu_count()} CPU cores, load average {load:.1f} at start")
    kw = dict(block_size=bs, dtype=args.dtype, output=output, progress=False)
    calib = x[:min(n, 3 * bs)]
    m = -(-len(calib) // bs)  # blocks in the calibration run
    rates, small = {}, {}
    for name in args.strategies:
        _, trace_s = timed(lambda: compute_ntk(model, calib, strategy=name, **kw))  # traces, warms up
        small[name], t2 = timed(lambda: compute_ntk(model, calib, strategy=name, **kw))
        estimate = t2 / (m * (m + 1) / 2) * nb * (nb + 1) / 2
        if estimate <= args.budget:
            _, seconds = timed(lambda: compute_ntk(model, x, strategy=name, **kw))
            how = f"measured on all {n}; the 3-block extrapolation said {estimate:.1f} s"
        else:
            seconds = estimate
            how = f"extrapolated from {len(calib)} images ({t2:.1f} s), estimate over --budget"
        rates[name] = n**2 / seconds
        print(f"{name:>14}: {seconds:8.1f} s  {rates[name]:10.0f} entries/s  "
              f"[{how}; first 3-block run with tracing {trace_s:.1f} s]", flush=True)
    if "jacobian" in rates:
        base = small["jacobian"]
        for name in rates:
            diff = np.abs(small[name] - base)
            print(f"{name:>14}: speed-up over jacobian {rates[name] / rates['jacobian']:6.1f}x, "
                  f"largest difference from it {diff.max():.1e} absolute, "
                  f"{diff.max() / np.abs(base).max():.1e} relative to max |Θ|")
    if "structured" in rates and "vmap_jacobian" in rates:
        print(f"    structured / vmap_jacobian: {rates['structured'] / rates['vmap_jacobian']:.1f}x")
    if not args.no_choose:
        best, choose_s = timed(lambda: choose_strategy(model, x, bs, dtype=args.dtype, output=output))
        print(f"choose_strategy picks {best!r} ({choose_s:.1f} s to measure; cached afterwards)")
    return rates


#: ``--suite``: (outputs, output, N) of the figures quoted in bench/README.md.
SUITE = ((1, "trace", 400), (1, "trace", 2000), (10, "trace", 400), (10, "full", 400))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images (N x N NTK)")
    parser.add_argument("--block-size", type=int, default=50, help="images per block")
    parser.add_argument("--classes", type=int, default=1, help="LeNet5 outputs")
    parser.add_argument("--output", default="trace", help="'trace', 'full' or an output index")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--strategies", nargs="+", default=["jacobian", "vmap_jacobian", "ntk_vector", "structured"])
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds allowed per strategy for all N images; above it, extrapolate")
    parser.add_argument("--suite", action="store_true",
                        help="instead of --n/--classes/--output: one output (trace) at N = 400 and 2000, "
                             "ten outputs (trace and full) at N = 400")
    parser.add_argument("--no-choose", action="store_true", help="skip timing choose_strategy")
    parser.add_argument("--data-dir", default=None, help="folder with fashion_mnist/ (default: TFBDL_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    output = int(args.output) if args.output.isdigit() else args.output
    configs = SUITE if args.suite else ((args.classes, output, args.n),)
    x, source = images(max(n for _, _, n in configs), args.data_dir, args.seed)
    summary = [(c, o, n, run(args, c, o, n, x, source)) for c, o, n in configs]
    if len(summary) > 1:
        print("\nentries/s: " + "; ".join(f"{c} output(s) {o} N={n}: " + ", ".join(
            f"{k} {v:,.0f}" for k, v in r.items()) for c, o, n, r in summary))


if __name__ == "__main__":
    main()
