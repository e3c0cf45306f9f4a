"""``tfbdl convnet-gp``: "Deep Convolutional Networks as shallow Gaussian Processes".

save-kernels computes the kernel matrices block by block into OUT/convnet-gp/<run-id>/kernels.h5
(resumable, shardable); merge-kernels joins shard files; classify runs exact GP classification
on a kernel file; run does all three for the registered experiment.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from pathlib import Path

import click
import numpy as np

from tfbdl.cli.common import data_line, open_run, record_run, typed_option
from tfbdl.cli.options import (FiniteFloatRange, check_hdf5, common_run_options, dataset_name,
                                 shard_option)
from tfbdl.errors import InvalidOptionError, TfbdlError

EXPERIMENT = "convnet-gp"
KERNEL_NAMES = ("convnet_gp", "residual_cnn_gp", "resnet_gp")
DATA_FILE = "data.npz"
KERNEL_FILE = "kernels.h5"
PAPER_ERROR_NOTE = "the paper reports about 1% MNIST test error with all 60,000 training images"


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of a kernel run at one scale (None: the whole split)."""

    n_train: int | None
    n_test: int | None
    block: int


PRESETS = {
    "tiny": Preset(n_train=200, n_test=200, block=100),
    "smoke": Preset(n_train=5000, n_test=None, block=500),
    "paper": Preset(n_train=None, n_test=None, block=200),
}


def resolve(scale: str, n_train, n_test, block) -> Preset:
    """The scale's preset with explicit options overriding it."""
    base = PRESETS[scale]
    preset = Preset(n_train if n_train is not None else base.n_train,
                    n_test if n_test is not None else base.n_test,
                    block if block is not None else base.block)
    for name, value in dataclasses.asdict(preset).items():
        if value is not None and value < 1:
            raise InvalidOptionError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return preset


def load_inputs(dataset: str, scale: str, data_dir, preset: Preset, seed: int, options=None):
    """Training and test images as float [N, H*W*C] in [0, 1], labels, and provenance records.

    A preset size larger than the data is reduced to what exists (noted in the provenance);
    one the user typed (:func:`~tfbdl.cli.common.typed_option`; ``options`` maps a field to the
    option to name instead) that cannot be met is an InvalidOptionError.
    """
    from tfbdl.data import load_for_run

    train = load_for_run(dataset, "train", scale, data_dir)
    test = load_for_run(dataset, "test", scale, data_dir)
    rng = np.random.default_rng(seed)

    def take(loaded, n, field):
        option = (options or {}).get(field, typed_option(field))
        n = None if n is None else loaded.fit_count(n, option=option)
        keep = np.sort(rng.permutation(loaded.labels.size)[:n]) if n is not None else np.arange(loaded.labels.size)
        images = loaded.images[keep].astype(np.float64) / 255.0  # scaled in float64, cast later
        return images.reshape(len(keep), -1), loaded.labels[keep], keep

    x_train, y_train, train_idx = take(train, preset.n_train, "n_train")
    x_test, y_test, test_idx = take(test, preset.n_test, "n_test")
    image_shape = train.images.shape[1:]
    return (x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape,
            [train.provenance, test.provenance], [train.describe(), test.describe()])


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``convnet-gp run`` at ``scale`` reads, sizes fitted to the data here (nothing computed)."""
    return load_inputs("mnist", scale, data_dir, resolve(scale, None, None, None), seed)[7]


def resolve_search_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``convnet-gp search`` at ``scale`` reads (nothing computed)."""
    preset = SEARCH_PRESETS[scale]
    sizes = Preset(n_train=preset.n_train + preset.n_val, n_test=1, block=1)
    return load_inputs("mnist", scale, data_dir, sizes, seed)[7][:1]


def kernel_config(kernel: str, kind: str, dtype: str, dataset: str, scale: str, seed: int,
                  preset: Preset, data_dir) -> dict:
    return {"experiment": EXPERIMENT, "kernel": kernel, "kind": kind, "dtype": dtype, "dataset": dataset,
            "scale": scale, "seed": seed, "data_dir": data_dir, **dataclasses.asdict(preset)}


def save_kernels(*, kernel: str, kind: str, dtype: str, dataset: str, scale: str, out: str, data_dir, seed: int,
                 resume: bool, preset: Preset, shard=(0, 1), progress: bool = True):
    """Compute (or resume) this shard's kernel blocks; returns (run, kernel file path, seconds)."""
    from tfbdl.io import atomic_path

    config = kernel_config(kernel, kind, dtype, dataset, scale, seed, preset, data_dir)
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    (x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape,
     provenance, described) = load_inputs(dataset, scale, data_dir, preset, seed)
    import tensorflow as tf  # after the data: a missing or corrupt file fails without waiting for TensorFlow

    from tfbdl.kernels import paper_kernel
    from tfbdl.kernels.blocks import callables_from_gpflow, compute_kernel_file

    run.record_data(provenance)
    if not run.file(DATA_FILE).exists():
        with atomic_path(run.file(DATA_FILE)) as temp:
            np.savez(temp, y_train=y_train, y_test=y_test, train_indices=train_idx, test_indices=test_idx,
                     image_shape=np.asarray(image_shape), described=np.asarray(described))
    gp_kernel = paper_kernel(kernel, image_shape, kind=kind, normalise=False)
    pair_fn, diag_fn = callables_from_gpflow(gp_kernel)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    start = time.perf_counter()
    path = compute_kernel_file(run.file(KERNEL_FILE), pair_fn, diag_fn, x_train.astype(dtype), x_test.astype(dtype),
                               block=preset.block, shard=shard, config=config, progress=progress,
                               devices=gpus if len(gpus) > 1 else None)
    return run, path, time.perf_counter() - start


def classify_file(kernel_file: Path, *, val_fraction: float, seed: int) -> dict:
    """Exact GP classification from a complete kernel file and the labels saved beside it."""
    from tfbdl.gp.exact import classify
    from tfbdl.kernels.blocks import read_kernels

    data_path = kernel_file.parent / DATA_FILE
    if not data_path.exists():
        raise TfbdlError(f"{data_path} is missing: classify reads the labels that save-kernels writes beside "
                         "the kernel file; rerun save-kernels for this run")
    with np.load(data_path, allow_pickle=False) as data:
        y_train, y_test = data["y_train"], data["y_test"]
    kernels = read_kernels(kernel_file, names=("Kxx", "Kxt"))
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    start = time.perf_counter()
    result = classify(kernels["Kxx"], kernels["Kxt"], y_train, y_test, num_classes, val_fraction=val_fraction,
                      seed=seed, overwrite=True)
    chosen = [row for row in result.validation if row["noise"] == result.noise]
    relative = chosen[0]["relative_noise"] if chosen else float("nan")
    return {"test_accuracy": result.test_accuracy, "test_error": result.test_error, "noise": result.noise,
            "relative_noise": relative,
            "jitter_used": result.jitter_used, "validation": result.validation, "n_train": int(y_train.size),
            "n_test": int(y_test.size), "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- commands
@click.group("convnet-gp")
def convnet_gp():
    """Deep Convolutional Networks as shallow Gaussian Processes (Garriga-Alonso et al. 2019)."""


def _kernel_options(function):
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
@_kernel_options
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
    shards = sorted(run_dir.glob("kernels.shard-*-of-*.h5"))
    if not shards:
        raise TfbdlError(f"no shard files kernels.shard-*-of-*.h5 in {run_dir}; run save-kernels --shard i/n first")
    for shard in shards:
        check_hdf5(shard, "RUN_DIR: the shard file", "the shard files that save-kernels --shard i/n wrote")
    from tfbdl.kernels.blocks import merge_kernel_files

    merged = merge_kernel_files(shards, run_dir / KERNEL_FILE)
    click.echo(f"merged {len(shards)} shard(s) into {merged}")


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


def check_kernel_file(kernel_file: Path) -> None:
    """``--kernels``: an HDF5 kernel file with save-kernels' labels (data.npz) beside it; checked before
    GPflow is imported, so a wrong file fails at once."""
    what = "the kernels.h5 that save-kernels (or merge-kernels) wrote"
    check_hdf5(kernel_file, "--kernels", what)
    try:
        status = importlib.import_module("tfbdl.kernels.blocks").kernel_file_status(kernel_file)
    except TfbdlError as error:
        raise InvalidOptionError(f"--kernels: {error}") from None
    index, count = status["shard"]
    if count > 1:
        raise InvalidOptionError(f"--kernels {kernel_file} is shard {index} of {count}: finish every shard (rerun the "
                                 "same save-kernels commands to resume), then merge them with merge-kernels and "
                                 "classify the merged kernels.h5")
    if not status["complete"]:
        raise InvalidOptionError(f"--kernels {kernel_file} is incomplete: {status['done']} of {status['total']} "
                                 "tasks are done; rerun the same save-kernels command to resume it")
    if not (kernel_file.parent / DATA_FILE).is_file():
        raise InvalidOptionError(f"--kernels {kernel_file}: {DATA_FILE} is missing beside it; give {what} in its "
                                 "run folder (classify reads the labels save-kernels writes there)")


@convnet_gp.command("run")
@_kernel_options
@common_run_options
def run_command(kernel, kind, dataset, n_train, n_test, block, dtype, scale, out, data_dir, seed, resume):
    """The registered experiment: kernel matrices, exact GP classification, summary and figures."""
    run = run_experiment(kernel=kernel, kind=kind, dataset=dataset, preset=resolve(scale, n_train, n_test, block),
                         dtype=dtype, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"convnet-gp run written to {run.path}")


def run_experiment(*, kernel, kind, dataset, preset, dtype, scale, out, data_dir, seed, resume):
    run, path, seconds = save_kernels(kernel=kernel, kind=kind, dtype=dtype, dataset=dataset, scale=scale, out=out,
                                      data_dir=data_dir, seed=seed, resume=resume, preset=preset)
    if run.is_complete:
        record_run(run)
        return run
    result = classify_file(path, val_fraction=0.1, seed=seed)
    result["kernel_seconds_this_run"] = seconds
    run.write_metrics(result)
    _figures(run, path, result)
    run.finish(_summary(run, kernel, kind, result))
    record_run(run)
    return run


def _figures(run, kernel_file: Path, result: dict) -> None:
    from tfbdl.kernels.blocks import read_kernels
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    rows = [r for r in result["validation"] if r.get("val_accuracy") is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(4.5, 3))
        noise = [max(r["relative_noise"], 1e-10) for r in rows]
        ax.semilogx(noise, [100 * r["val_accuracy"] for r in rows], marker="o")
        ax.set_xlabel("noise / mean diag(Kxx)  (0 drawn at 1e-10)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("Noise chosen on the validation split", fontsize=9)
        save_figure(fig, run.file("validation_noise.png"))
    with np.load(kernel_file.parent / DATA_FILE) as data:
        y_train = data["y_train"]
    Kxx = read_kernels(kernel_file, names=("Kxx",))["Kxx"]
    first = np.argsort(y_train[:300], kind="stable")
    sub = Kxx[np.ix_(first, first)]
    d = np.sqrt(np.diag(sub))
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    image = ax.imshow(sub / d[:, None] / d[None, :], cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("Kernel correlations, training images sorted by class", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, run.file("kernel_correlation.png"))


def _summary(run, kernel: str, kind: str, result: dict) -> str:
    config = json.loads(run.file("config.json").read_text())
    used = data_line(config["data"])
    full = config["data"][0]["source"].startswith("full") and config["data"][0]["dataset"] == "mnist"
    size_note = (f"this run fits {result['n_train']:,} training images, so its error is higher"
                 if not (full and result["n_train"] >= 60000) else "this run uses all of them")
    return (
        f"{kernel} ({kind}) kernel, exact GP classification on {result['n_train']} training and "
        f"{result['n_test']} test images.\n\n"
        f"| test error | test accuracy | noise (chosen on validation) | jitter added | classify time |\n"
        f"|---:|---:|---:|---:|---:|\n"
        f"| {100 * result['test_error']:.2f}% | {100 * result['test_accuracy']:.2f}% | {result['noise']:.3g} "
        f"({result['relative_noise']:.2g} x mean diag Kxx) | "
        f"{result['jitter_used']:.3g} | {result['seconds']:.1f} s |\n\n"
        f"Data: {used}. For reference, {PAPER_ERROR_NOTE}; {size_note}.\n"
    )


# --------------------------------------------------------------------------- hyperparameter search
SEARCH_EXPERIMENT = "convnet-gp-search"
# Ranges of the random search over the ConvNet GP family (depth, and the variances per patch
# element), sampled log-uniformly for the variances.
SEARCH_SPACE = {"depth": (1, 8, "int"), "var_weight": (0.1, 10.0, "log"), "var_bias": (0.1, 10.0, "log")}


@dataclasses.dataclass(frozen=True)
class SearchPreset:
    trials: int
    n_train: int
    n_val: int
    ml_steps: int
    # Points of the marginal-likelihood fit: its gradient keeps every layer's maps for all
    # n (n + 1) / 2 pairs (about 0.4 MB per pair for the ConvNet GP on 28x28 images).
    ml_points: int


SEARCH_PRESETS = {
    "tiny": SearchPreset(trials=3, n_train=60, n_val=60, ml_steps=3, ml_points=40),
    "smoke": SearchPreset(trials=10, n_train=500, n_val=500, ml_steps=20, ml_points=100),
    "paper": SearchPreset(trials=100, n_train=5000, n_val=5000, ml_steps=100, ml_points=300),
}


def run_search(*, dataset, scale, out, data_dir, seed, resume, preset: SearchPreset):
    """Random search scored by exact-GP validation accuracy, then marginal-likelihood optimisation."""
    from tfbdl.gp.exact import classify
    from tfbdl.gp.hyperparams import optimize_marginal_likelihood, random_search
    from tfbdl.kernels import ConvNetKernel
    from tfbdl.kernels.presets import convnet_gp

    config = {"experiment": SEARCH_EXPERIMENT, "dataset": dataset, "scale": scale, "seed": seed,
              "data_dir": data_dir, "space": SEARCH_SPACE, **dataclasses.asdict(preset)}
    run = open_run(SEARCH_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    sizes = Preset(n_train=preset.n_train + preset.n_val, n_test=1, block=1)
    typed = typed_option("n_train") or typed_option("n_val")
    x, y, _, _, _, _, image_shape, provenance, _ = load_inputs(
        dataset, scale, data_dir, sizes, seed, {"n_train": "--n-train + --n-val" if typed else None})
    run.record_data(provenance[:1])
    order = np.random.default_rng(seed).permutation(y.size)
    train, val = order[:preset.n_train], order[preset.n_train:]
    num_classes = int(y.max() + 1)

    def network(params):
        return convnet_gp(depth=int(params["depth"]), var_weight=float(params["var_weight"]),
                          var_bias=float(params["var_bias"]))

    def evaluate(params) -> float:
        kernel = ConvNetKernel(network(params), image_shape, normalise=False)
        Kxx = kernel.K(x[train]).numpy()
        Kxv = kernel.K(x[train], x[val]).numpy()
        return classify(Kxx, Kxv, y[train], y[val], num_classes, val_fraction=0.1, seed=seed,
                        overwrite=True).test_accuracy

    rows = random_search(evaluate, SEARCH_SPACE, preset.trials, seed, csv_path=run.file("search.csv"))
    best = rows[0]
    metrics = {"best": best, "trials": rows}
    if preset.ml_steps > 0:
        kernel = ConvNetKernel(network(best), image_shape, normalise=False)
        noise = 1e-4 * float(np.mean(kernel.K_diag(x[train]).numpy()))
        metrics["marginal_likelihood"] = optimize_marginal_likelihood(
            kernel, x[train], y[train], noise_variance=noise, steps=preset.ml_steps, method="scipy",
            num_classes=num_classes, max_points=min(preset.ml_points, preset.n_train), seed=seed)
    run.write_metrics(metrics)
    _search_figure(run, rows)
    run.finish(_search_summary(rows, metrics.get("marginal_likelihood"), preset))
    record_run(run)
    return run


def _search_figure(run, rows) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = ax.scatter([r["var_weight"] for r in rows], [100 * r["score"] for r in rows],
                        c=[r["depth"] for r in rows], cmap="viridis")
    ax.set_xscale("log")
    ax.set_xlabel("var_weight (per patch element)")
    ax.set_ylabel("validation accuracy (%)")
    fig.colorbar(points, ax=ax, label="depth")
    ax.set_title("Random search over the ConvNet GP family", fontsize=9)
    save_figure(fig, run.file("search.png"))


def _search_summary(rows, ml, preset: SearchPreset) -> str:
    lines = [f"Random search over depth and variances of the ConvNet GP, {len(rows)} trials, scored by exact-GP "
             f"accuracy on {preset.n_val} held-out training images ({preset.n_train} to fit).", "",
             "| rank | depth | var_weight | var_bias | validation accuracy |", "|---:|---:|---:|---:|---:|"]
    for rank, row in enumerate(rows[:5], 1):
        lines.append(f"| {rank} | {int(row['depth'])} | {row['var_weight']:.3g} | {row['var_bias']:.3g} | "
                     f"{100 * row['score']:.1f}% |")
    if ml:
        lines += ["", f"Marginal-likelihood optimisation of the best setting on {ml['num_points']} images: "
                      f"log marginal likelihood {ml['lml_before']:.4g} → {ml['lml_after']:.4g}."]
    return "\n".join(lines) + "\n"


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
