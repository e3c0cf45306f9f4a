"""``tfbdl bdl prior-correlations``: what a spherical Gaussian prior on a CNN's weights implies
about its functions (Wilson & Izmailov 2020, section 5), for several prior scales alpha:

* how strongly the outputs for two images are correlated a priori, per class pair;
* how strongly the outputs for an image and its perturbed versions (translations and the
  CIFAR-10-C corruptions, intensities 1..5) are correlated a priori;
* what single prior draws predict (their softmax class probabilities) and what their average,
  the prior predictive, predicts.
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from tfbdl.cli.bdl.data import prepare_images
from tfbdl.cli.bdl.group import bdl
from tfbdl.cli.bdl.presets import PRIOR_ALPHAS, PRIOR_PRESETS, PriorPreset
from tfbdl.cli.bdl.priors_perturb import INTENSITIES, per_level_outputs, perturbation_names, perturbed_batch
from tfbdl.cli.bdl.priors_report import perturbation_figure, prior_figure, prior_summary, sample_function_figure
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import common_run_options, dataset_name
from tfbdl.errors import InvalidOptionError

__all__ = ["PRIOR_EXPERIMENT", "SAMPLE_DRAWS", "SAMPLE_IMAGES", "prior_correlations_command", "resolve_data",
           "run_prior_correlations"]

PRIOR_EXPERIMENT = "bdl-prior-correlations"
SAMPLE_IMAGES = 3  # images shown in prior_sample_functions.png
SAMPLE_DRAWS = 6  # single prior draws shown per image


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``bdl prior-correlations`` at ``scale`` reads: the test images, ``per_class`` of each class."""
    from tfbdl.data import load_for_run
    from tfbdl.data.subsets import stratified_indices

    test = load_for_run("mnist", "test", scale, data_dir)
    stratified_indices(test.labels, PRIOR_PRESETS[scale].per_class, seed=seed)
    return [test.provenance]


def run_prior_correlations(*, dataset: str, scale: str, out: str, data_dir, seed: int, resume: bool,
                           preset: PriorPreset, texture_dir=None):
    """Class-pair and perturbation correlations of LeNet5 outputs under N(0, alpha^2 I) weights,
    and the class probabilities of prior draws, for each alpha."""
    import os

    from tfbdl.data import load_for_run
    from tfbdl.data.corruptions import FROST_DIR_ENV
    from tfbdl.data.subsets import first_per_class, stratified_indices

    texture_dir = texture_dir or os.environ.get(FROST_DIR_ENV)
    test = load_for_run(dataset, "test", scale, data_dir)
    names, skipped = perturbation_names(test.images.shape[-1], texture_dir)
    config = {"experiment": PRIOR_EXPERIMENT, "dataset": dataset, "scale": scale, "seed": seed,
              "data_dir": data_dir, **dataclasses.asdict(preset), "alphas": list(PRIOR_ALPHAS),
              "perturbations": names}
    run = open_run(PRIOR_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    run.record_data([test.provenance])
    keep = stratified_indices(test.labels, preset.per_class, seed=seed)
    images, y = test.images[keep], test.labels[keep]
    shown = _shown_images(y)
    clean = images[first_per_class(y, preset.perturb_per_class)]
    pairs, levels, samples = _prior_parts(images, y, test.num_classes, clean, names, preset, seed, texture_dir, shown)
    run.write_metrics({"class_pairs": {str(a): m.tolist() for a, m in pairs.items()},
                       "perturbations": {str(a): v for a, v in levels.items()},
                       "sample_functions": {str(a): v for a, v in samples.items()},
                       "shown_labels": y[shown].tolist(), "intensities": [0, *INTENSITIES]})
    prior_figure(run, pairs)
    perturbation_figure(run, levels)
    sample_function_figure(run, samples, images[shown], y[shown])
    run.finish(prior_summary(test, preset, pairs, levels, samples, skipped))
    record_run(run)
    return run


def _prior_parts(images, labels, num_classes: int, clean, names, preset: PriorPreset, seed: int, texture_dir,
                 shown) -> tuple[dict, dict, dict]:
    """Per alpha: the class-pair matrix, the perturbation correlations and the sample-function
    statistics, all from one LeNet5 and the same seeded weight draws."""
    from tfbdl.bayes.priors import class_pair_correlations, prior_outputs
    from tfbdl.nn import lenet5

    x = prepare_images(images, "lenet5")
    x_perturbed = prepare_images(perturbed_batch(clean, names, seed, texture_dir), "lenet5")
    model = lenet5(num_classes=num_classes, input_shape=x.shape[1:], seed=seed)
    pairs, levels, samples = {}, {}, {}
    for alpha in PRIOR_ALPHAS:
        outputs = prior_outputs(model, x, alpha=alpha, num_samples=preset.draws, seed=seed)
        pairs[alpha] = class_pair_correlations(outputs, labels, num_classes)
        samples[alpha] = _sample_functions(outputs, shown)
        # The same seed gives the same first draws: these are the class-pair part's first draws.
        perturbed = prior_outputs(model, x_perturbed, alpha=alpha, num_samples=preset.perturb_draws, seed=seed)
        levels[alpha] = _perturbation_correlations(perturbed, len(clean), names)
    return pairs, levels, samples


def _perturbation_correlations(outputs: np.ndarray, n_images: int, names) -> dict:
    """``{name: {"matrix": [6, 6] mean over images, "clean_std": [6] spread over images of the
    correlation with the clean image}}`` from the prior outputs of :func:`perturbed_batch`."""
    from tfbdl.bayes.priors import level_correlations

    result = {}
    for name, per_level in zip(names, per_level_outputs(outputs, n_images, len(names))):
        corr = level_correlations(per_level)  # [N, 6, 6]
        result[name] = {"matrix": corr.mean(axis=0).tolist(), "clean_std": corr[:, 0].std(axis=0).tolist()}
    return result


def _sample_functions(outputs: np.ndarray, shown) -> dict:
    """Entropies and top-class probability of prior draws (logits [S, N, C]), and the class
    probabilities of the first draws and of the prior predictive for the ``shown`` images."""
    from scipy.special import log_softmax

    from tfbdl.bayes.priors import softmax_entropies

    per_draw, predictive = softmax_entropies(outputs)
    probs = np.exp(log_softmax(outputs, axis=-1))
    return {"entropy_per_draw": float(per_draw.mean()), "entropy_predictive": float(predictive.mean()),
            "top_probability_per_draw": float(probs.max(axis=2).mean()),
            "shown_draws": probs[:SAMPLE_DRAWS, shown].tolist(),
            "shown_predictive": probs[:, shown].mean(axis=0).tolist()}


def _shown_images(labels: np.ndarray) -> np.ndarray:
    """Indices of the first image of each of the first SAMPLE_IMAGES classes."""
    return np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)[:SAMPLE_IMAGES]])


@bdl.command("prior-correlations")
@click.option("--dataset", default="mnist", show_default=True, callback=dataset_name,
              help="Images whose prior output correlations are shown.")
@click.option("--per-class", type=click.IntRange(min=2), default=None, help="Images per class (default: scale preset).")
@click.option("--draws", type=click.IntRange(min=2), default=None, help="Prior weight draws (default: scale preset).")
@click.option("--perturb-per-class", type=click.IntRange(min=1), default=None,
              help="Images per class perturbed at intensities 1-5 (default: scale preset).")
@click.option("--perturb-draws", type=click.IntRange(min=2), default=None,
              help="Prior weight draws for the perturbation correlations (default: scale preset).")
@click.option("--texture-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with the frost texture images (else $TFBDL_FROST_DIR; frost is skipped without them).")
@common_run_options
def prior_correlations_command(dataset, per_class, draws, perturb_per_class, perturb_draws, texture_dir, scale, out,
                               data_dir, seed, resume):
    """LeNet5 under spherical Gaussian priors (alpha 0.02, 0.1, 1): output correlations per class pair and
    under perturbations, and the class probabilities of prior draws."""
    base = PRIOR_PRESETS[scale]
    per_class = per_class or base.per_class
    preset = PriorPreset(per_class=per_class, draws=draws or base.draws,
                         perturb_per_class=perturb_per_class or min(base.perturb_per_class, per_class),
                         perturb_draws=perturb_draws or base.perturb_draws)
    if preset.perturb_per_class > preset.per_class:
        raise InvalidOptionError(f"--perturb-per-class {preset.perturb_per_class} is more than --per-class "
                                 f"{preset.per_class}: the perturbed images are some of the class-pair images")
    run = run_prior_correlations(dataset=dataset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                                 preset=preset, texture_dir=texture_dir)
    click.echo(f"prior correlations written to {run.path}")
