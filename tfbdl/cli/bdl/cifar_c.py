"""``tfbdl bdl make-cifar-c``: the CIFAR-10-C corruptions of the test set, as files.

Every corruption (Hendrycks & Dietterich) at severities 1-5 of (part of) the test images is
written as ``corrupted/<name>.npz``, with a grid figure of one image under each of them.
"""

from __future__ import annotations

import click
import numpy as np

from tfbdl.cli.bdl.group import bdl
from tfbdl.cli.common import open_run, record_run, typed_option
from tfbdl.cli.options import common_run_options, dataset_name

__all__ = ["CORRUPT_EXPERIMENT", "CORRUPT_SIZES", "make_cifar_c_command", "resolve_data", "run_make_cifar_c"]

CORRUPT_EXPERIMENT = "bdl-cifar-c"
CORRUPT_SIZES = {"tiny": 200, "smoke": 2000, "paper": None}  # test images corrupted (None: all)


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``bdl make-cifar-c`` at ``scale`` reads (nothing corrupted)."""
    from tfbdl.data import load_for_run

    test = load_for_run("cifar10", "test", scale, data_dir)
    if CORRUPT_SIZES[scale] is not None:
        test.fit_count(CORRUPT_SIZES[scale])
    return [test.provenance]


def run_make_cifar_c(*, dataset: str, scale: str, out: str, data_dir, seed: int, resume: bool, n_images,
                     texture_dir=None):
    """Write every corruption at severities 1-5 of the test images as .npz files in the run."""
    import os

    from tfbdl.data import load_for_run
    from tfbdl.data.corruptions import CORRUPTIONS, FROST_DIR_ENV, make_corrupted_set

    texture_dir = texture_dir or os.environ.get(FROST_DIR_ENV)
    names = [n for n in CORRUPTIONS if n != "frost" or texture_dir]
    config = {"experiment": CORRUPT_EXPERIMENT, "dataset": dataset, "scale": scale, "seed": seed,
              "data_dir": data_dir, "n_images": n_images, "corruptions": names}
    run = open_run(CORRUPT_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    test = load_for_run(dataset, "test", scale, data_dir)
    n_images = test.fit_count(n_images, option=typed_option("n_images")) if n_images is not None else None
    run.record_data([test.provenance])
    keep = np.arange(test.labels.size) if n_images is None else \
        np.sort(np.random.default_rng(seed).permutation(test.labels.size)[:n_images])
    images, labels = test.images[keep], test.labels[keep]
    paths = make_corrupted_set(images, labels, run.file("corrupted"), names=names, seed=seed,
                               texture_dir=texture_dir)
    _corruption_grid(run, images[0], paths)
    skipped = "" if "frost" in names else (f" frost was skipped: it needs the reference's frost texture images in "
                                           f"${FROST_DIR_ENV} (or --texture-dir).")
    run.finish(f"{len(names)} corruptions x 5 severities of {len(labels)} test images of {test.describe()}, "
               f"written to `corrupted/<name>.npz` (arrays severity_1..severity_5, labels, seed, and source_sha256: "
               f"the SHA-256 fingerprint of the clean images, so a rerun on other images recomputes instead of "
               f"reusing).{skipped}\n")
    record_run(run)
    return run


def _corruption_grid(run, clean: np.ndarray, paths: dict) -> None:
    """``corruptions.png``: the clean image, then its severities 1-5, a row per corruption."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(len(paths), 6, figsize=(6 * 0.9, len(paths) * 0.9), squeeze=False)
    for row, (name, path) in enumerate(paths.items()):
        with np.load(path) as data:
            frames = [clean] + [data[f"severity_{k}"][0] for k in range(1, 6)]
        for col, frame in enumerate(frames):
            ax = axes[row, col]
            ax.imshow(frame[..., 0] if frame.shape[-1] == 1 else frame, cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
        axes[row, 0].text(-3, clean.shape[0] / 2, name, ha="right", va="center", fontsize=6)
    fig.suptitle("clean, then severities 1-5", fontsize=8)
    fig.subplots_adjust(top=1 - 0.35 / fig.get_figheight())  # title close to the grid
    save_figure(fig, run.file("corruptions.png"))


@bdl.command("make-cifar-c")
@click.option("--dataset", default="cifar10", show_default=True, callback=dataset_name,
              help="Whose test images to corrupt; at tiny/smoke an absent CIFAR-10 is replaced (REPORT.md says so).")
@click.option("--n-images", type=click.IntRange(min=1), default=None,
              help="Test images to corrupt (default: scale preset).")
@click.option("--texture-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with the frost texture images (else $TFBDL_FROST_DIR; frost is skipped without them).")
@common_run_options
def make_cifar_c_command(dataset, n_images, texture_dir, scale, out, data_dir, seed, resume):
    """The CIFAR-10-C corruptions (Hendrycks & Dietterich) of the test set, 5 severities each."""
    run = run_make_cifar_c(dataset=dataset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                           n_images=n_images or CORRUPT_SIZES[scale], texture_dir=texture_dir)
    click.echo(f"corrupted sets written to {run.path / 'corrupted'}")
