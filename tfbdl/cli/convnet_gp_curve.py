"""``tfbdl convnet-gp learning-curve``: exact-GP test error on MNIST for growing training sets.

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

import dataclasses
import time

import click
import numpy as np

from tfbdl.cli.common import data_line, open_run, record_run, typed_option
from tfbdl.cli.convnet_gp import KERNEL_NAMES, convnet_gp
from tfbdl.cli.options import common_run_options, dataset_name
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "convnet-gp-curve"
KERNEL_FILE = "kernels.h5"
DATA_FILE = "data.npz"  # training / test indices (into the official splits) and labels, in kernel order
CURVE_FILE = "learning_curve.csv"

#: The reference's training pool within the official 60,000 training images (cnn-gp's train_range).
REFERENCE_TRAIN_RANGE = (5000, 55000)

#: Paper, Table 1: MNIST test error (%) with 50,000 training images.
PAPER_TEST_ERROR = {"convnet_gp": 1.03, "residual_cnn_gp": 0.96, "resnet_gp": 0.84}
PAPER_N_TRAIN = 50000


@dataclasses.dataclass(frozen=True)
class CurvePreset:
    """Training sizes (ascending) and test images (None: all) of a learning curve at one scale."""

    sizes: tuple[int, ...]
    n_test: int | None
    block: int


CURVE_PRESETS = {
    "tiny": CurvePreset(sizes=(50, 100, 200), n_test=200, block=100),
    "smoke": CurvePreset(sizes=(500, 1000, 2000, 5000, 7000), n_test=None, block=500),
    "paper": CurvePreset(sizes=(1000, 2000, 5000, 10000, 20000, 50000), n_test=None, block=500),
}


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """``"1000,2000,5000"`` -> (1000, 2000, 5000), sorted and checked; None stays None."""
    if text is None:
        return None
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InvalidOptionError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 2:
        raise InvalidOptionError(f"--sizes needs at least one size >= 2, got {text!r}")
    return tuple(sizes)


def training_pool(n_images: int) -> tuple[np.ndarray, str]:
    """Indices of the training pool and how it was chosen: the reference's 5,000-54,999 when the
    official 60,000 images are there, else every image (an embedded subset)."""
    if n_images >= REFERENCE_TRAIN_RANGE[1]:
        return np.arange(*REFERENCE_TRAIN_RANGE), "official training images 5,000-54,999 (the reference's split)"
    return np.arange(n_images), f"all {n_images:,} training images here (not the official 60,000)"


def load_curve_inputs(dataset: str, scale: str, data_dir, sizes: tuple[int, ...], n_test: int | None, seed: int):
    """Nested training images ``[max(sizes), D]`` in [0, 1], test images ``[Nt, D]``, labels, indices,
    image shape, provenance and the sizes actually used (a preset's larger sizes dropped, noted)."""
    from tfbdl.data import load_for_run

    train = load_for_run(dataset, "train", scale, data_dir)
    test = load_for_run(dataset, "test", scale, data_dir)
    pool, pool_text = training_pool(train.labels.size)
    train.note(f"training sets drawn from {pool_text}")
    largest = train.fit_count(max(sizes), option=typed_option("sizes"), available=pool.size)
    used = tuple(n for n in sizes if n <= largest) or (largest,)
    if used != sizes:
        train.note(f"sizes {', '.join(f'{n:,}' for n in sizes if n not in used)} dropped: "
                       f"the pool has {pool.size:,} images")
    order = pool[np.random.default_rng(seed).permutation(pool.size)[:used[-1]]]
    if n_test is None:
        test_idx = np.arange(test.labels.size)
    else:
        n = test.fit_count(n_test, option=typed_option("n_test"))
        test_idx = np.sort(np.random.default_rng(seed + 1).permutation(test.labels.size)[:n])

    def flat(images, idx):
        return (images[idx].astype(np.float64) / 255.0).reshape(len(idx), -1)

    return (flat(train.images, order), train.labels[order], order, flat(test.images, test_idx),
            test.labels[test_idx], test_idx, train.images.shape[1:], used, [train.provenance, test.provenance])


def classify_size(Kxx_full: np.ndarray, Kxt_full: np.ndarray, y_train, y_test, n: int, seed: int) -> dict:
    """Both rules' test errors with the first ``n`` training images (copies the leading block)."""
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
    config = {"experiment": EXPERIMENT, "kernel": kernel, "dataset": dataset, "scale": scale, "seed": seed,
              "sizes": list(used), "n_test": int(y_test.size), "block": block, "dtype": dtype,
              "data_dir": data_dir}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
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
    _figure(run, kernel, rows)
    run.finish(_summary(run, kernel, rows, timing, int(y_test.size)))
    record_run(run)
    return run


def projection(timing: dict, n_test: int, n_train: int = PAPER_N_TRAIN, n_val: int = 10000) -> dict:
    """Hours the paper's kernel matrices (train x train, x validation, x test) would take at the
    entries per second this run measured."""
    rate = timing["entries"] / max(timing["seconds"], 1e-9)
    entries = n_train * (n_train + 1) // 2 + n_train * (n_test + n_val)
    return {"entries_per_second": rate, "paper_entries": entries, "paper_hours": entries / rate / 3600}


def _figure(run, kernel: str, rows: list[dict]) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    n = [r["n_train"] for r in rows]
    ax.loglog(n, [100 * r["test_error_reference_rule"] for r in rows], marker="o", label="ours, reference rule")
    ax.loglog(n, [100 * r["test_error_chosen_noise"] for r in rows], marker="s", ls="--",
              label="ours, noise chosen on validation")
    ax.loglog([PAPER_N_TRAIN], [PAPER_TEST_ERROR[kernel]], marker="*", ms=12, ls="none", color="k",
              label=f"paper ({PAPER_TEST_ERROR[kernel]}% at 50,000)")
    ax.set_xlabel("training images")
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title(f"{kernel}: exact GP, {rows[0]['n_test']:,} test images", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, run.file("learning_curve.png"))


def _summary(run, kernel: str, rows: list[dict], timing: dict, n_test: int) -> str:
    import json

    used = data_line(json.loads(run.file("config.json").read_text(encoding="utf-8")).get("data") or [])
    proj = projection(timing, n_test)
    lines = [f"{kernel} learning curve: exact GP classification of {n_test:,} MNIST test images.", "",
             "| training images | test error, reference rule (jitter 0) | test error, noise chosen on validation "
             "| classify time |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['n_train']:,} | {100 * r['test_error_reference_rule']:.2f}% | "
              f"{100 * r['test_error_chosen_noise']:.2f}% | {r['seconds_classify']:.0f} s |" for r in rows]
    lines += ["", f"Paper (Table 1): {PAPER_TEST_ERROR[kernel]}% with {PAPER_N_TRAIN:,} training images.",
              f"Kernel matrices: {timing['entries']:,} entries in {timing['seconds'] / 60:.1f} min this run "
              f"({proj['entries_per_second']:,.0f} entries/s); the paper's 50,000 x (50,000 + 10,000 validation "
              f"+ 10,000 test) would take {proj['paper_hours']:.0f} h at that rate.",
              f"Data: {used}.", ""]
    return "\n".join(lines)


@convnet_gp.command("learning-curve")
@click.option("--kernel", type=click.Choice(KERNEL_NAMES), default="convnet_gp", show_default=True,
              help="The paper's architecture whose infinite-width (NNGP) kernel is used.")
@click.option("--dataset", default="mnist", show_default=True, callback=dataset_name,
              help="Dataset name (see `tfbdl data info`).")
@click.option("--sizes", default=None,
              help="Comma-separated training sizes, nested prefixes of one seeded draw from the training pool "
                   "(default: the scale's preset; smoke 500,...,7000, about an hour on 2 cores; paper up to 50000).")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Test images (default: all 10,000 at smoke and paper).")
@click.option("--block", type=click.IntRange(min=1), default=None,
              help="Kernel block size: each task computes at most block x block entries.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Working precision of the kernel (stored as float64; float32 is within ~1e-6 relative).")
@common_run_options
def learning_curve_command(kernel, dataset, sizes, n_test, block, dtype, scale, out, data_dir, seed, resume):
    """Exact-GP test error against the number of training images, with the paper's point.

    One kernel file for the largest size serves all sizes (nested training sets); kill it at any
    time and rerun the same command to resume.
    """
    preset = CURVE_PRESETS[scale]
    chosen_sizes = parse_sizes(sizes) or preset.sizes
    run = run_learning_curve(kernel=kernel, dataset=dataset, sizes=chosen_sizes,
                             n_test=n_test if n_test is not None else preset.n_test,
                             block=block or preset.block, dtype=dtype, scale=scale, out=out, data_dir=data_dir,
                             seed=seed, resume=resume)
    click.echo(f"convnet-gp learning curve written to {run.path}")
