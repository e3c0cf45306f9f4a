"""What both sides of compare_peers.py share (numpy only: it runs in either environment).

A side is run as ``python SIDE.py SPEC.json``. The spec names the case, the inputs file (``.npz``
written by the driver: images and, for NTK cases, the model's weights in Keras order) and the
result file to write: ``values`` (the kernel matrix), ``warmup_s`` (tracing / compilation and a
first untimed pass, excluded from the timings) and ``seconds`` (one timed run per repeat).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

# The LeNet5 of tfbdl.nn.lenet: conv 5x5 (20) + ReLU + max-pool 2, conv 5x5 (50) + ReLU + max-pool 2,
# flatten (h, w, c), dense 500 + ReLU, dense K. Keras weight order: kernel, bias per layer.
LENET_LAYERS = ("conv1", "conv2", "fc1", "logits")


def read_spec() -> dict:
    with open(sys.argv[1]) as f:
        return json.load(f)


def block_bounds(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def upper_blocks(n: int, block: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (row, column) block pairs on and above the diagonal, row by row."""
    bounds = block_bounds(n, block)
    return [(r, c) for i, r in enumerate(bounds) for c in bounds[i:]]


def mirror(out: np.ndarray, kf: int, block: int) -> np.ndarray:
    """Fill the blocks below the diagonal of ``out`` ``[n*kf, n*kf]`` from those above it."""
    n = out.shape[0] // kf
    for (r0, r1), (c0, c1) in upper_blocks(n, block):
        if c0 > r0:
            out[c0 * kf:c1 * kf, r0 * kf:r1 * kf] = out[r0 * kf:r1 * kf, c0 * kf:c1 * kf].T
    return out


def warmup_inputs(x: np.ndarray, block: int) -> list[np.ndarray]:
    """Inputs whose block plan contains every block shape the full run will see."""
    n = len(x)
    rest = n % block
    out = [x[:min(n, 2 * block)]]
    if rest and n > block:
        out.append(np.concatenate([x[:block], x[n - rest:]]))
    return out


def run_timed(compute, x: np.ndarray, warmups: list[np.ndarray], repeats: int):
    """Run ``compute`` on each of ``warmups`` (untimed: tracing, compilation), then time ``repeats``
    runs on ``x``. Returns ``(values, warm-up seconds, [seconds per repeat])``."""
    start = time.perf_counter()
    for w in warmups:
        compute(w)
    warmup = time.perf_counter() - start
    seconds, values = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        values = compute(x)
        seconds.append(time.perf_counter() - start)
    return values, warmup, seconds


def write_result(spec: dict, values: np.ndarray, warmup: float, seconds: list[float], info: str) -> None:
    np.savez(spec["result"], values=values, warmup_s=warmup, seconds=np.asarray(seconds), info=info)
