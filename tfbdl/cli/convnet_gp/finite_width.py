"""``tfbdl convnet-gp finite-width``: random finite CNNs against the infinite-width GP.

The cnn-gp release's ``exp_random_nn`` draws random finite CNNs of the paper's architectures with
3, 10, 30 and 100 channels (10,000 networks, 100 MNIST images) and compares the covariance of
their outputs with the NNGP kernel. Here, for each architecture (:mod:`tfbdl.kernels.presets`) and
width, networks are drawn with the kernel's weight and bias variances per fan-in
(:mod:`tfbdl.kernels.finite`, many at once), and two estimates of their output covariance over a
fixed set of MNIST images are compared with the raw kernel matrix: the plain one (the mean of
``f(x) f(x')`` over networks, as the release) and the readout-averaged one (each network's
covariance over its last readout's weights, whose noise falls with the width). The draws are split
into independent replicates whose spread is the Monte Carlo band. Resumable per (architecture,
width): each finishes into ``draws/<kernel>-w<width>.npz``.

Against the release (``exp_random_nn/run.bash``, ``random_comparison.py``, the ``configs``): the
widths, the 10,000 networks and the 100 images (the first of its training range, official
training images 5,000 onwards) are its own, as are the three MNIST architectures of its README's
figures. Three differences: its ``run.bash`` also lists the CIFAR-10 ResNet config, left out as
this command is MNIST only; the ResNet GP's networks have ``width`` channels in every stage where
the release's have 1, 2 and 4 times it (the layer descriptions carry no channel multiplier; the
limit is the same kernel); and the 10,000 networks are split into replicates for the band.
"""

from __future__ import annotations

import dataclasses
import time
import zlib

import click
import numpy as np

from tfbdl.cli.common import open_run, record_run, typed_option
from tfbdl.cli.convnet_gp.cli import convnet_gp
from tfbdl.cli.convnet_gp.presets import KERNEL_NAMES
from tfbdl.cli.options import comma_separated, common_run_options
from tfbdl.errors import InvalidOptionError

__all__ = ["CHANNELS_PER_CALL", "FINITE_EXPERIMENT", "FINITE_PRESETS", "FinitePreset", "batch_size", "checkpoints",
           "draw_unit", "finite_width_command", "load_images", "parse_widths", "resolve_data", "resolve_preset",
           "run_finite_width", "unit_file"]

FINITE_EXPERIMENT = "convnet-gp-finite-width"

#: Channels of the concatenated networks of one vectorised call (bounds its memory).
CHANNELS_PER_CALL = 512


@dataclasses.dataclass(frozen=True)
class FinitePreset:
    """Architectures, images, widths, networks drawn at each width and replicates at one scale."""

    kernels: tuple[str, ...]
    images: int
    widths: tuple[int, ...]
    draws: tuple[int, ...]  # one per width
    replicates: int


FINITE_PRESETS = {
    "tiny": FinitePreset(("convnet_gp",), 8, (3, 10, 30), (128, 64, 16), 2),
    "smoke": FinitePreset(KERNEL_NAMES, 8, (3, 10, 30, 100), (1024, 512, 128, 32), 4),
    "paper": FinitePreset(KERNEL_NAMES, 100, (3, 10, 30, 100), (10000, 10000, 10000, 10000), 4),
}


def parse_widths(ctx, param, value):
    """Callback of ``--widths``: ``"3,10,30"`` -> (3, 10, 30), sorted; None stays None."""
    if value is None:
        return None
    try:
        widths = comma_separated(value)
    except ValueError:
        widths = []
    if not widths or widths[0] < 1:
        raise click.BadParameter(f"must be comma-separated channel counts >= 1 (e.g. 3,10,30), got {value!r}",
                                 ctx=ctx, param=param)
    return widths


def resolve_preset(scale: str, kernels, widths, draws, replicates, images) -> FinitePreset:
    """The scale's preset with the options given overriding it; ``draws`` applies to every width."""
    base = FINITE_PRESETS[scale]
    widths = widths or base.widths
    if draws is None:  # a width between the preset's takes the draws of the next narrower one
        draws = tuple(([d for pw, d in zip(base.widths, base.draws) if pw <= w] or [base.draws[0]])[-1]
                      for w in widths)
    else:
        draws = (draws,) * len(widths)
    preset = FinitePreset(tuple(kernels) or base.kernels, images or base.images, tuple(widths), draws,
                          replicates or base.replicates)
    bad = [d for d in preset.draws if d % preset.replicates]
    if bad:
        raise InvalidOptionError(f"--draws {bad[0]} must be a multiple of --replicates {preset.replicates} "
                                 "(each replicate draws the same number of networks)")
    return preset


def batch_size(width: int, per_replicate: int) -> int:
    """Networks per vectorised call: the largest divisor of ``per_replicate`` that keeps the call's
    channels within :data:`CHANNELS_PER_CALL` (so batches never straddle two replicates)."""
    cap = max(1, CHANNELS_PER_CALL // width)
    return max(d for d in range(1, min(cap, per_replicate) + 1) if per_replicate % d == 0)


def unit_file(kernel: str, width: int) -> str:
    """The run-folder file of one (architecture, width)."""
    return f"draws/{kernel}-w{width}.npz"


def load_images(scale: str, data_dir, count: int):
    """The first ``count`` MNIST training images of the training pool ``[N, 28, 28, 1]`` in [0, 1],
    their indices and labels, and the provenance record (a list of one). As the release, whose
    images are the first batch of its training range: official training images 5,000 onwards when
    the 60,000 are there (:func:`~tfbdl.cli.convnet_gp.data.training_pool`)."""
    from tfbdl.cli.convnet_gp.data import training_pool
    from tfbdl.data import load_for_run

    train = load_for_run("mnist", "train", scale, data_dir)
    pool, pool_text = training_pool(train.labels.size)
    n = train.fit_count(count, option=typed_option("images"), available=pool.size)
    train.note(f"{scale} asked for the release's images: the first {n:,} of {pool_text}")
    keep = pool[:n]
    return train.images[keep].astype(np.float64) / 255.0, keep, train.labels[keep], [train.provenance]


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``convnet-gp finite-width`` at ``scale`` reads (nothing computed; the images do not
    depend on ``seed``)."""
    return load_images(scale, data_dir, FINITE_PRESETS[scale].images)[3]


def checkpoints(total: int) -> list[int]:
    """Numbers of networks at which a replicate's running estimate is recorded: 1, 2, 4, ..., ``total``."""
    return [2**k for k in range(64) if 2**k < total] + [total]


def draw_unit(networks, images, kernel_matrix, keys, batch: int, replicates: int) -> dict:
    """Draw the networks of ``keys [S, 2]``, ``batch`` at a time, on ``images [N, H, W, C]``.

    Returns ``outputs [S, N]`` (output 0); the readout-averaged kernels' sum ``kernel_sum`` and sum of
    squares ``kernel_sq`` ``[N, N]``; ``network_distance [S]``, each network's ``||K_network - K|| / ||K||``
    for the raw kernel matrix ``K [N, N]``; and ``kernel_curve [replicates, P]``, the distance of each
    replicate's running mean of the readout-averaged kernels after ``curve_draws [P]`` networks. The
    ``S / replicates`` networks of a replicate are consecutive, and ``batch`` divides their number.
    """
    per_replicate, scale = len(keys) // replicates, np.linalg.norm(kernel_matrix)
    points = checkpoints(per_replicate)
    outputs, distances, curve = [], [], np.zeros((replicates, len(points)))
    total, squares, running = 0.0, 0.0, 0.0
    for start in range(0, len(keys), batch):
        f, k = networks(images, keys[start:start + batch])
        k = k.numpy().astype(np.float64)
        outputs.append(f.numpy()[:, :, 0].astype(np.float64))
        distances.append(np.linalg.norm(k - kernel_matrix, axis=(1, 2)) / scale)
        total, squares = total + k.sum(0), squares + np.square(k).sum(0)
        replicate, first = divmod(start, per_replicate)
        cumulative = (0.0 if first == 0 else running) + np.cumsum(k, axis=0)
        for column, count in enumerate(points):
            if first < count <= first + len(k):
                mean = cumulative[count - first - 1] / count
                curve[replicate, column] = np.linalg.norm(mean - kernel_matrix) / scale
        running = cumulative[-1]
    return {"outputs": np.concatenate(outputs), "kernel_sum": total, "kernel_sq": squares,
            "network_distance": np.concatenate(distances), "kernel_curve": curve, "curve_draws": np.asarray(points),
            "batch": np.asarray(batch)}


def _analytic(run, kernel: str, x: np.ndarray) -> np.ndarray:
    """The raw NNGP kernel matrix [N, N] of ``kernel`` on ``x`` (computed once, then read back)."""
    path = run.file(f"analytic/{kernel}.npy")
    if not run.is_done(f"analytic/{kernel}"):
        from tfbdl.io import atomic_path
        from tfbdl.kernels import paper_kernel

        start = time.perf_counter()
        matrix = paper_kernel(kernel, x.shape[1:], normalise=False).K(x.reshape(len(x), -1)).numpy()
        with atomic_path(path) as temp, open(temp, "wb") as handle:
            np.save(handle, matrix)
        run.mark_done(f"analytic/{kernel}", {"seconds": time.perf_counter() - start})
    return np.load(path)


def _draw_width(run, kernel: str, width: int, draws: int, preset: FinitePreset, x: np.ndarray,
                kernel_matrix: np.ndarray, seed: int) -> None:
    """Draw one (architecture, width) and save it; skipped when an earlier run finished it."""
    key = f"{kernel}/w{width}"
    if run.is_done(key):
        click.echo(f"{kernel} width {width}: done earlier, kept")
        return
    from tfbdl.io import atomic_path
    from tfbdl.kernels import paper_network
    from tfbdl.kernels.finite import RandomNetworks, draw_keys

    per_replicate = draws // preset.replicates
    batch = batch_size(width, per_replicate)
    networks = RandomNetworks(paper_network(kernel), x.shape[1:], width)
    keys = draw_keys(seed, draws, stream=zlib.crc32(key.encode()))
    start = time.perf_counter()
    data = draw_unit(networks, x.astype(np.float32), kernel_matrix, keys, batch, preset.replicates)
    seconds = time.perf_counter() - start
    with atomic_path(run.file(unit_file(kernel, width))) as temp:
        np.savez(temp, **data)
    run.mark_done(key, {"seconds": seconds, "draws": draws, "batch": batch,
                        "parameters": networks.parameter_count})
    mean = data["outputs"].T @ data["outputs"] / draws
    click.echo(f"{kernel} width {width}: {draws} networks in {seconds:.1f} s; output covariance "
               f"{np.linalg.norm(mean - kernel_matrix) / np.linalg.norm(kernel_matrix):.3f} from K, one network's "
               f"kernel {data['network_distance'].mean():.3f}")


def run_finite_width(*, preset: FinitePreset, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Draw every (architecture, width) not yet done, then the metrics, figure and summary."""
    from tfbdl.cli.convnet_gp.finite_width_report import finite_figure, finite_metrics, finite_summary

    # "image_set": runs from before the images were the release's first ones get other run ids
    config = {"experiment": FINITE_EXPERIMENT, "dataset": "mnist", "image_set": "first", "scale": scale, "seed": seed,
              "data_dir": data_dir, **dataclasses.asdict(preset)}
    run = open_run(FINITE_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    x, indices, labels, provenance = load_images(scale, data_dir, preset.images)
    run.record_data(provenance)
    if not run.file("images.npz").exists():
        from tfbdl.io import atomic_path

        with atomic_path(run.file("images.npz")) as temp:
            np.savez(temp, indices=indices, labels=labels)
    analytic = {kernel: _analytic(run, kernel, x) for kernel in preset.kernels}
    for kernel in preset.kernels:
        for width, draws in zip(preset.widths, preset.draws):
            _draw_width(run, kernel, width, draws, preset, x, analytic[kernel], seed)
    units = {(kernel, width): dict(np.load(run.file(unit_file(kernel, width)))) for kernel in preset.kernels
             for width in preset.widths}
    seconds = {unit: run.done_info(f"{unit[0]}/w{unit[1]}")["seconds"] for unit in units}
    metrics = finite_metrics(preset, analytic, units, seconds)
    run.write_metrics(metrics)
    finite_figure(run, preset, metrics, units, analytic)
    run.finish(finite_summary(run, preset, metrics))
    record_run(run)
    return run


@convnet_gp.command("finite-width")
@click.option("--kernel", "kernels", type=click.Choice(KERNEL_NAMES), multiple=True,
              help="An architecture whose random finite networks are drawn; repeat for several (default: the "
                   "scale's preset: convnet_gp at tiny, all three at smoke and paper).")
@click.option("--widths", default=None, callback=parse_widths,
              help="Comma-separated channel counts of the hidden layers (default: 3,10,30 at tiny; 3,10,30,100 at "
                   "smoke and paper, as the release).")
@click.option("--draws", type=click.IntRange(min=2), default=None,
              help="Random networks drawn at every width, a multiple of --replicates (default: the scale's preset, "
                   "fewer at larger widths; tiny 128,64,16, smoke 1024,512,128,32, paper 10,000).")
@click.option("--replicates", type=click.IntRange(min=2), default=None,
              help="Independent groups the draws are split into; their spread is the Monte Carlo band "
                   "(default: 2 at tiny, 4 at smoke and paper).")
@click.option("--images", type=click.IntRange(min=2), default=None,
              help="MNIST training images the output covariance is measured on (default: 8 at tiny and smoke, "
                   "100 at paper, as the release).")
@common_run_options
def finite_width_command(kernels, widths, draws, replicates, images, scale, out, data_dir, seed, resume):
    """Random finite CNNs against the infinite-width GP: the output covariance of random networks with
    growing channel counts, its distance to the NNGP kernel matrix, with Monte Carlo bands.

    Kill it at any time: the same command resumes from the first (architecture, width) not finished.
    """
    preset = resolve_preset(scale, kernels, widths, draws, replicates, images)
    run = run_finite_width(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"convnet-gp finite-width run written to {run.path}")
