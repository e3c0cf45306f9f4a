"""``tfbdl bdl rethinking-generalization``: the "rethinking generalization" experiment of Wilson &
Izmailov 2020 ("Bayesian Deep Learning and a Probabilistic Perspective of Generalization").

A fraction of the training labels is corrupted (0 ... 1) and, on the same images and labels:

- GP classifiers with a CNN-GP kernel (the ConvNet GP of :mod:`tfbdl.kernels.presets`): a
  one-vs-all SVGP over all classes and a binary SVGP on two classes. Their ELBO per training
  point, a lower bound on the log marginal likelihood, is reported against the corruption.
- A PreResNet trained on the corrupted labels: train / test accuracy, and the Laplace
  approximation of its log evidence (prior precision matched to the weight decay).

The paper's point: both models can fit the noise, yet their (approximate) marginal likelihood
falls as the labels get noisier, so the evidence tells structured from random labellings.

The inputs are the same at every fraction, only the labels change, so the CNN-GP kernel matrix
of the GP training images is computed once (block by block, resumably, into ``kernel.h5``) and
the GPs look its entries up (:class:`tfbdl.gp.precomputed.PrecomputedKernel`, inputs are image
indices). Every fraction is a sub-run ``fractions/fraction-<f>/`` with its corrupted labels
(``labels.npz``, usable with ``tfbdl bdl swag --label-arr``), its GP results, the network's
per-epoch checkpoints and its results; a rerun skips whatever is finished.

Label corruption: for the classifiers over all classes, exactly ``round(f N)`` labels are
replaced by a different class drawn uniformly (:func:`tfbdl.data.labels.corrupt_labels`). For
the binary task "corrupting a fraction f" means replacing those labels by a fair coin, so that
``f = 1`` is a random labelling (flipping them all would be a perfectly structured one); this is
done exactly by flipping ``round(f N / 2)`` labels.

Reference settings (``izmailovpavel/understandingbdl``, ``experiments/rethinking_generalization``):
PreResNet20 on CIFAR-10 with corrupted label arrays at 10%, 20%, ... 100% of the 50,000 labels,
trained by ``run_swag.py`` (SGD, lr 0.1, wd 3e-4, 300 epochs), evidence by the diagonal Laplace
of ``swag.posteriors.Laplace``; GPs in GPyTorch (RBF kernel, all training points as inducing
points, 100 full-batch Adam steps at lr 0.1), the binary task being airplane vs automobile.
Here the GP kernel is the CNN-GP kernel, and the GP training set is a subset (``n_gp``) of the
network's, since its Gram matrix is N x N.
"""

from __future__ import annotations

import dataclasses
import json

import click
import numpy as np

from tfbdl.cli.bdl.group import bdl
from tfbdl.cli.bdl.presets import RETHINKING_PRESETS, RethinkingPreset
from tfbdl.cli.bdl.rethinking_data import fraction_labels, fraction_name, load_data, parse_classes, parse_fractions
from tfbdl.cli.bdl.rethinking_fit import KERNEL_NORMALISATION, gp_results, kernel_matrix, network_results
from tfbdl.cli.bdl.rethinking_report import CURVES, decreasing, rethinking_figure, rethinking_summary
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import FiniteFloatRange, common_run_options, dataset_name

__all__ = ["EXPERIMENT", "resolve_data", "rethinking_command", "run_rethinking"]

EXPERIMENT = "bdl-rethinking-generalization"


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``bdl rethinking-generalization`` at ``scale`` reads, sizes fitted to the data here."""
    return load_data(RETHINKING_PRESETS[scale], scale, data_dir, seed).provenance


def run_rethinking(*, preset: RethinkingPreset, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Every fraction's GPs and network (each resumable), then metrics, figure and summary."""
    from tfbdl.io import RunDir

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **dataclasses.asdict(preset), "kernel_normalisation": KERNEL_NORMALISATION}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    data = load_data(preset, scale, data_dir, seed)
    run.record_data(data.provenance)
    frac_runs = {f: RunDir.open(run.path, "fractions", fraction_name(f), {**config, "fraction": f})
                 for f in preset.fractions}
    labels = {f: fraction_labels(r, data, f, seed) for f, r in frac_runs.items()}

    if not all(r.is_done("gp") for r in frac_runs.values()):
        from tfbdl.gp.precomputed import gram_constant

        click.echo(f"CNN-GP kernel of {data.n_gp} images", err=True)
        gram = kernel_matrix(run, preset, data)
        shared = gram_constant(gram)  # normalised by the kernel itself; the GPs learn a variance
        mean_diagonal = float(np.mean(np.diag(gram)))
        for f, r in frac_runs.items():
            if not r.is_done("gp"):
                result = {**gp_results(shared, preset, data, labels[f], f, seed), "gram_mean_diagonal": mean_diagonal}
                r.write_json("gp.json", result)
                r.mark_done("gp", {"ova_elbo_per_point": result["ova_elbo_per_point"]})

    for f, r in frac_runs.items():
        if not r.is_done("network"):
            click.echo(f"network on labels with a fraction {f:g} corrupted", err=True)
            result = network_results(r, preset, data, labels[f], seed)
            r.write_json("network.json", result)
            r.mark_done("network", {"laplace_log_evidence": result["laplace_log_evidence"]})
            r.finish()

    rows = [_row(f, r) for f, r in frac_runs.items()]
    metrics = {"rows": rows, "num_classes": data.num_classes, "n_train": int(data.y_train.size),
               "n_test": int(data.y_test.size), "n_gp": data.n_gp, "n_binary": int(data.binary_index.size),
               "classes": list(preset.classes), "laplace": preset.laplace,
               "prior_precision": rows[0]["prior_precision"],
               "decreasing": {key: decreasing(r[key] for r in rows) for key in CURVES}}
    run.write_metrics(metrics)
    rethinking_figure(run, preset, metrics)
    run.finish(rethinking_summary(run, preset, metrics))
    record_run(run)
    return run


def _row(fraction: float, frac_run) -> dict:
    """One fraction's numbers from its sub-run's JSON files."""
    gp = json.loads(frac_run.file("gp.json").read_text())
    net = json.loads(frac_run.file("network.json").read_text())
    return {"fraction": fraction, **net, **{k: v for k, v in gp.items() if k != "seconds"},
            "gp_seconds": gp["seconds"], "network_seconds": net["seconds"]}


@bdl.command("rethinking-generalization")
@click.option("--dataset", default=None, callback=dataset_name,
              help="Training / test images (default: scale preset, cifar10; at tiny/smoke an absent CIFAR-10 is "
                   "replaced and REPORT.md says so).")
@click.option("--fractions", default=None,
              help="Comma-separated fractions of corrupted labels in [0, 1], e.g. 0,0.5,1 (default: scale preset).")
@click.option("--n-train", type=click.IntRange(min=10), default=None,
              help="Training images for the network, a seeded random subset (default: scale preset).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Test images for the test accuracy.")
@click.option("--n-gp", type=click.IntRange(min=10), default=None,
              help="The first N training images are the GPs' training set (its Gram matrix is N x N).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Network training epochs.")
@click.option("--lr-init", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Initial learning rate (decayed to 1% by the reference's SGD schedule).")
@click.option("--wd", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Weight decay wd * |w|^2 in the loss; the Laplace prior precision is 2 N wd.")
@click.option("--laplace", type=click.Choice(["last-layer", "diagonal"]), default=None,
              help="Laplace approximation of the network's evidence (diagonal: every weight, slow on a CPU).")
@click.option("--svgp-steps", type=click.IntRange(min=1), default=None, help="Optimisation steps of each SVGP.")
@click.option("--num-inducing", type=click.IntRange(min=1), default=None,
              help="Inducing points (training images, fixed) of the one-vs-all SVGP.")
@click.option("--kernel-depth", type=click.IntRange(min=1), default=None,
              help="Convolutional layers of the ConvNet GP kernel.")
@click.option("--classes", default=None, help="The two classes of the binary GP task, e.g. 0,1.")
@common_run_options
def rethinking_command(dataset, fractions, n_train, n_test, n_gp, epochs, lr_init, wd, laplace, svgp_steps,
                       num_inducing, kernel_depth, classes, scale, out, data_dir, seed, resume):
    """Corrupted labels: GP ELBO and PreResNet Laplace evidence fall as more labels are corrupted."""
    base = RETHINKING_PRESETS[scale]
    overrides = {"dataset": dataset, "n_train": n_train, "n_test": n_test, "n_gp": n_gp, "epochs": epochs,
                 "lr_init": lr_init, "weight_decay": wd, "svgp_steps": svgp_steps, "num_inducing": num_inducing,
                 "kernel_depth": kernel_depth,
                 "fractions": parse_fractions(fractions) if fractions is not None else None,
                 "classes": parse_classes(classes) if classes is not None else None,
                 "laplace": laplace.replace("-", "_") if laplace is not None else None}
    preset = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if n_train is not None and n_gp is None and preset.n_gp is not None and preset.n_gp > n_train:
        preset = dataclasses.replace(preset, n_gp=None)
    run = run_rethinking(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"bdl rethinking-generalization run written to {run.path}")
