"""The convnet-gp learning curve: exact-GP test error on MNIST for growing training sets.

The paper (Garriga-Alonso, Aitchison & Rasmussen, ICLR 2019, Table 1) fits 50,000 MNIST images and
tests on all 10,000. Its code (``cambridge-mlg/cnn-gp``, ``configs/mnist_paper_convnet_gp.py``) takes
official training images 5,000-54,999 for training and the other 10,000 for validation. Here the
training sets are nested prefixes of one seeded permutation of that pool, so one kernel file for the
largest size serves every size: ``Kxx`` of the largest set (its leading ``n x n`` block is the
kernel of the first ``n``) and ``Kxt`` against the test images. Both are computed block by block
into a resumable HDF5 file; each size's result is saved as soon as it is measured, so a killed run
resumes where it stopped.

Two classification rules are reported per size: the reference's (``classify_gp.py``: solve with
the fixed jitter 0, the smallest jitter that factorises added only if needed) and the package's
(the noise chosen on 10% of the training images held out, as ``convnet-gp run``).
"""

from __future__ import annotations

import time

import click
import numpy as np

from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.convnet_gp.data import load_curve_inputs
from tfbdl.cli.convnet_gp.presets import CURVE_EXPERIMENT, CURVE_FILE, DATA_FILE, KERNEL_FILE
from tfbdl.cli.convnet_gp.report import curve_figure, curve_summary, projection
from tfbdl.cli.options import comma_separated
from tfbdl.errors import InvalidOptionError

__all__ = ["classify_size", "compute_timed", "parse_sizes", "run_learning_curve"]


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """``"1000,2000,5000"`` -> (1000, 2000, 5000), sorted and checked; None stays None."""
    if text is None:
        return None
    try:
        sizes = comma_separated(text)
    except ValueError:
        raise InvalidOptionError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 2:
        raise InvalidOptionError(f"--sizes needs at least one size >= 2, got {text!r}")
    return sizes


def classify_size(Kxx_full: np.ndarray, Kxt_full: np.ndarray, y_train, y_test, n: int, seed: int) -> dict:
    """Both rules' test errors with the first ``n`` training images (copies the leading block).

    ``Kxx_full [N, N]``, ``Kxt_full [N, Nt]``, ``y_train [N]``, ``y_test [Nt]``, ``n <= N``.
    """
    from tfbdl.gp.exact import classify

    num_classes = 10
    start = time.perf_counter()
    reference = classify(np.array(Kxx_full[:n, :n]), Kxt_full[:n], y_train[:n], y_test, num_classes,
                         grid=[0.0], overwrite=True)
    chosen = classify(np.array(Kxx_full[:n, :n]), Kxt_full[:n], y_train[:n], y_test, num_classes,
                      val_fraction=0.1, seed=seed, overwrite=True)
    return {"n_train": n, "n_test": int(y_test.size), "test_error_reference_rule": reference.test_error,
            "jitter_reference_rule": float(reference.jitter_used),
            "test_error_chosen_noise": chosen.test_error, "chosen_noise": chosen.noise,
            "seconds_classify": time.perf_counter() - start}


def compute_timed(run, kernel: str, image_shape, x_train, x_test, block: int, config: dict) -> dict:
    """Compute (or finish) the kernel file; the entries this process computed and its seconds,
    added to those of earlier processes (``kernel-partial`` in progress.json) so that the rate
    stays honest across kills."""
    from tfbdl.kernels import paper_kernel
    from tfbdl.kernels.blocks import callables_from_gpflow, compute_kernel_file, kernel_file_status

    path = run.file(KERNEL_FILE)
    total = x_train.shape[0] * (x_train.shape[0] + 1) // 2 + x_train.shape[0] * x_test.shape[0]
    fraction_before = 0.0
    if path.exists():
        status = kernel_file_status(path)
        fraction_before = status["done"] / max(status["total"], 1)
    earlier = run.done_info("kernel-partial") or {"seconds": 0.0, "entries": 0}
    pair_fn, diag_fn = callables_from_gpflow(paper_kernel(kernel, image_shape, normalise=False))
    start = time.perf_counter()
    try:
        compute_kernel_file(path, pair_fn, diag_fn, x_train, x_test, block=block, config=config)
    finally:
        status = kernel_file_status(path) if path.exists() else {"done": 0, "total": 1}
        computed = int(round(total * (status["done"] / max(status["total"], 1) - fraction_before)))
        timing = {"seconds": earlier["seconds"] + time.perf_counter() - start,
                  "entries": earlier["entries"] + max(computed, 0)}
        run.mark_done("kernel-partial", timing)
    return timing


def run_learning_curve(*, kernel: str, dataset: str, sizes, n_test, block: int, dtype: str, scale: str, out: str,
                       data_dir, seed: int, resume: bool):
    """Kernel file for the largest size, then one row per size in ``learning_curve.csv``; figure, summary."""
    from tfbdl.kernels.blocks import read_kernels

    (x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape, used, provenance) = load_curve_inputs(
        dataset, scale, data_dir, sizes, n_test, seed)
    config = {"experiment": CURVE_EXPERIMENT, "kernel": kernel, "dataset": dataset, "scale": scale, "seed": seed,
              "sizes": list(used), "n_test": int(y_test.size), "block": block, "dtype": dtype,
              "data_dir": data_dir}
    run = open_run(CURVE_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    run.record_data(provenance)
    if run.is_complete:
        record_run(run)
        return run
    if not run.file(DATA_FILE).exists():
        from tfbdl.io import atomic_path

        with atomic_path(run.file(DATA_FILE)) as temp:
            np.savez(temp, train_indices=train_idx, test_indices=test_idx, y_train=y_train, y_test=y_test)
    if not run.is_done("kernel"):
        timing = compute_timed(run, kernel, image_shape, x_train.astype(dtype), x_test.astype(dtype), block, config)
        run.mark_done("kernel", timing)
    path = run.file(KERNEL_FILE)
    kernels = read_kernels(path, names=("Kxx", "Kxt"))
    for n in used:
        if run.is_done(f"n={n}"):
            continue
        row = classify_size(kernels["Kxx"], kernels["Kxt"], y_train, y_test, n, seed)
        run.append_metrics_row(row, CURVE_FILE)
        run.mark_done(f"n={n}")
        click.echo(f"n = {n:,}: test error {100 * row['test_error_reference_rule']:.2f}% (reference rule), "
                   f"{100 * row['test_error_chosen_noise']:.2f}% (noise chosen on validation)")
    rows = sorted(run.read_metrics_rows(CURVE_FILE), key=lambda r: r["n_train"])
    timing = run.done_info("kernel")
    run.write_metrics({"rows": rows, "kernel": timing, "projection": projection(timing, int(y_test.size))})
    curve_figure(run, kernel, rows)
    run.finish(curve_summary(run, kernel, rows, timing, int(y_test.size)))
    record_run(run)
    return run
