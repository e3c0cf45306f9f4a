"""The ``tfbdl convnet-gp`` group and its commands: options parsed here, the work done by the
package's other modules (save-kernels and merge-kernels: :mod:`.kernels`; classify:
:mod:`.classify`; run: :mod:`.experiment`; search: :mod:`.search`; learning-curve: :mod:`.curve`)."""

from __future__ import annotations

from pathlib import Path

import click

from tfbdl.cli.convnet_gp.classify import check_kernel_file, classify_file
from tfbdl.cli.convnet_gp.curve import parse_sizes, run_learning_curve
from tfbdl.cli.convnet_gp.experiment import run_experiment
from tfbdl.cli.convnet_gp.kernels import merge_shards, save_kernels
from tfbdl.cli.convnet_gp.presets import CURVE_PRESETS, KERNEL_NAMES, SEARCH_PRESETS, SearchPreset, resolve
from tfbdl.cli.convnet_gp.search import run_search
from tfbdl.cli.options import FiniteFloatRange, common_run_options, dataset_name, shard_option

__all__ = ["classify_command", "convnet_gp", "kernel_options", "learning_curve_command", "merge_kernels_command",
           "run_command", "save_kernels_command", "search_command"]


@click.group("convnet-gp")
def convnet_gp():
    """Deep Convolutional Networks as shallow Gaussian Processes (Garriga-Alonso et al. 2019)."""


def kernel_options(function):
    """The options of ``save-kernels`` and ``run``: kernel, data sizes, block and precision."""
    options = [
        click.option("--kernel", type=click.Choice(KERNEL_NAMES), default="convnet_gp", show_default=True,
                     help="The paper's architecture whose infinite-width kernel is computed."),
        click.option("--kind", type=click.Choice(["nngp", "ntk"]), default="nngp", show_default=True,
                     help="NNGP (the paper's GP) or the neural tangent kernel of the same network."),
        click.option("--dataset", default="mnist", show_default=True, callback=dataset_name,
                     help="Dataset name (see `tfbdl data info`); at tiny/smoke an absent one is replaced by "
                          "the closest available and the report says so."),
        click.option("--n-train", type=int, default=None, help="Training images (default: the scale's preset)."),
        click.option("--n-test", type=int, default=None, help="Test images (default: the scale's preset)."),
        click.option("--block", type=int, default=None,
                     help="Block size: each task computes at most block x block entries, which bounds memory."),
        click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
                     help="Working precision of the kernel computation (stored as float64)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@convnet_gp.command("save-kernels")
@kernel_options
@shard_option("Compute only shard i of n (0-based, e.g. 2/8) into its own file; join them with merge-kernels.")
@common_run_options
def save_kernels_command(kernel, kind, dataset, n_train, n_test, block, dtype, shard, scale, out, data_dir, seed,
                         resume):
    """Compute Kxx (upper-triangle blocks), Kxt and the diagonals into one HDF5 file, block by block.

    Kill it at any time: the same command resumes from the first block not written.
    """
    preset = resolve(scale, n_train, n_test, block)
    from tfbdl.kernels.blocks import kernel_file_status

    run, path, seconds = save_kernels(kernel=kernel, kind=kind, dtype=dtype, dataset=dataset, scale=scale, out=out,
                                      data_dir=data_dir, seed=seed, resume=resume, preset=preset, shard=shard)
    status = kernel_file_status(path)
    click.echo(f"{path}: {status['done']}/{status['total']} tasks done ({seconds:.1f} s this run)")


@convnet_gp.command("merge-kernels")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def merge_kernels_command(run_dir):
    """Join the shard files kernels.shard-*-of-N.h5 in RUN_DIR into RUN_DIR/kernels.h5."""
    merged, count = merge_shards(run_dir)
    click.echo(f"merged {count} shard(s) into {merged}")


@convnet_gp.command("classify")
@click.option("--kernels", "kernel_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A complete kernel file written by save-kernels (or merge-kernels).")
@click.option("--val-fraction", type=FiniteFloatRange(0.0, 0.9), default=0.1, show_default=True,
              help="Fraction of the training set held out to choose the noise; 0 skips the selection.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the validation split.")
def classify_command(kernel_file, val_fraction, seed):
    """Exact GP classification (regression on centred one-hot targets) from a kernel file."""
    check_kernel_file(kernel_file)
    from tfbdl.io import atomic_write_json

    result = classify_file(kernel_file, val_fraction=val_fraction, seed=seed)
    atomic_write_json(kernel_file.parent / "classification.json", result)
    click.echo(f"test accuracy {result['test_accuracy']:.4f} (error {100 * result['test_error']:.2f}%) on "
               f"{result['n_test']} test images, {result['n_train']} training images, noise {result['noise']:.3g}")


@convnet_gp.command("run")
@kernel_options
@common_run_options
def run_command(kernel, kind, dataset, n_train, n_test, block, dtype, scale, out, data_dir, seed, resume):
    """The registered experiment: kernel matrices, exact GP classification, summary and figures."""
    run = run_experiment(kernel=kernel, kind=kind, dataset=dataset, preset=resolve(scale, n_train, n_test, block),
                         dtype=dtype, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"convnet-gp run written to {run.path}")


@convnet_gp.command("search")
@click.option("--dataset", default="mnist", show_default=True, callback=dataset_name,
              help="Dataset name (see `tfbdl data info`).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Random-search trials (default: scale preset).")
@click.option("--n-train", type=click.IntRange(min=2), default=None, help="Images the GP is fitted on per trial.")
@click.option("--n-val", type=click.IntRange(min=1), default=None, help="Held-out training images that score a trial.")
@click.option("--ml-steps", type=click.IntRange(min=0), default=None,
              help="L-BFGS iterations of marginal-likelihood optimisation from the best trial (0: none).")
@click.option("--ml-points", type=click.IntRange(min=2), default=None,
              help="Training images in the marginal-likelihood fit (its memory grows with their square).")
@common_run_options
def search_command(dataset, trials, n_train, n_val, ml_steps, ml_points, scale, out, data_dir, seed, resume):
    """Hyperparameter search as in the paper: random depth and variances, results in search.csv
    (resumable: finished trials are kept), then marginal-likelihood optimisation of the best."""
    base = SEARCH_PRESETS[scale]
    preset = SearchPreset(trials or base.trials, n_train or base.n_train, n_val or base.n_val,
                          base.ml_steps if ml_steps is None else ml_steps, ml_points or base.ml_points)
    run = run_search(dataset=dataset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume, preset=preset)
    click.echo(f"search written to {run.path}")


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
