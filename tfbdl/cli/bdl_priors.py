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

from tfbdl.cli.bdl_generalization import bdl, prepare_images
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import common_run_options, dataset_name
from tfbdl.errors import InvalidOptionError

PRIOR_EXPERIMENT = "bdl-prior-correlations"
PRIOR_ALPHAS = (0.02, 0.1, 1.0)
INTENSITIES = (1, 2, 3, 4, 5)
SAMPLE_IMAGES = 3  # images shown in prior_sample_functions.png
SAMPLE_DRAWS = 6  # single prior draws shown per image


@dataclasses.dataclass(frozen=True)
class PriorPreset:
    """Sizes of one prior-correlation run."""

    per_class: int  # images per class: class-pair correlations and prior sample functions
    draws: int  # prior weight draws for those
    perturb_per_class: int  # images per class that are perturbed at every intensity
    perturb_draws: int  # prior weight draws for the perturbation correlations (same seeded stream as ``draws``)


PRIOR_PRESETS = {"tiny": PriorPreset(10, 20, 1, 20), "smoke": PriorPreset(20, 200, 2, 30),
                 "paper": PriorPreset(100, 1000, 10, 1000)}


# --------------------------------------------------------------------------- perturbations

def random_translation(images: np.ndarray, intensity: int, seed: int) -> np.ndarray:
    """Random crops of uint8 [N, H, W, C] images zero-padded by 2 * intensity pixels per side:
    each image is shifted by a uniform whole number of pixels in [-2k, 2k] along each axis."""
    if intensity < 0:
        raise InvalidOptionError(f"translation intensity must be >= 0, got {intensity}")
    pad = 2 * intensity
    n, h, w = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = np.random.default_rng([seed, intensity]).integers(0, 2 * pad + 1, size=(n, 2))
    return np.stack([padded[i, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def perturbation_names(channels: int, texture_dir) -> tuple[list[str], list[str]]:
    """``(used, skipped)`` perturbation names: translation and the informative CIFAR-10-C
    corruptions (:func:`tfbdl.data.corruptions.informative_corruptions`)."""
    from tfbdl.data.corruptions import informative_corruptions

    used, skipped = informative_corruptions(channels, texture_dir)
    return ["translation", *used], skipped


def perturb(images: np.ndarray, name: str, intensity: int, seed: int, texture_dir=None) -> np.ndarray:
    """uint8 [N, H, W, C] images under perturbation ``name`` at ``intensity`` (1..5)."""
    from tfbdl.data.corruptions import corrupt

    if name == "translation":
        return random_translation(images, intensity, seed)
    return corrupt(images, name, intensity, seed=seed, texture_dir=texture_dir)


def perturbed_batch(images: np.ndarray, names, seed: int, texture_dir=None) -> np.ndarray:
    """The clean images followed by every perturbation at intensities 1..5:
    uint8 [N * (1 + 5 P), H, W, C], blocks of N in the order clean, (name, intensity)."""
    blocks = [images]
    for name in names:
        blocks += [perturb(images, name, k, seed, texture_dir) for k in INTENSITIES]
    return np.concatenate(blocks)


def per_level_outputs(outputs: np.ndarray, n_images: int, n_perturbations: int) -> np.ndarray:
    """Prior outputs [S, N * (1 + 5 P), C] of :func:`perturbed_batch` -> [P, N, 6, C, S]
    (level 0 the clean image, levels 1..5 the intensities)."""
    s, _, c = outputs.shape
    levels = len(INTENSITIES)
    clean = outputs[:, :n_images]  # [S, N, C]
    rest = outputs[:, n_images:].reshape(s, n_perturbations, levels, n_images, c)
    clean = np.broadcast_to(clean[:, None, None], (s, n_perturbations, 1, n_images, c))
    stacked = np.concatenate([clean, rest], axis=2)  # [S, P, 6, N, C]
    return stacked.transpose(1, 3, 2, 4, 0)


# --------------------------------------------------------------------------- the run

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
    from tfbdl.data.subsets import stratified_indices

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
    clean = images[_first_per_class(y, preset.perturb_per_class)]
    pairs, levels, samples = _prior_parts(images, y, test.num_classes, clean, names, preset, seed, texture_dir, shown)
    run.write_metrics({"class_pairs": {str(a): m.tolist() for a, m in pairs.items()},
                       "perturbations": {str(a): v for a, v in levels.items()},
                       "sample_functions": {str(a): v for a, v in samples.items()},
                       "shown_labels": y[shown].tolist(), "intensities": [0, *INTENSITIES]})
    _prior_figure(run, pairs)
    _perturbation_figure(run, levels)
    _sample_function_figure(run, samples, images[shown], y[shown])
    run.finish(_summary(test, preset, pairs, levels, samples, skipped))
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


def _first_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Sorted indices of the first ``count`` images of every class in ``labels``."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)]))


def _shown_images(labels: np.ndarray) -> np.ndarray:
    """Indices of the first image of each of the first SAMPLE_IMAGES classes."""
    return np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)[:SAMPLE_IMAGES]])


# --------------------------------------------------------------------------- summary

def _summary(test, preset: PriorPreset, pairs: dict, levels: dict, samples: dict, skipped) -> str:
    lines = [f"Correlation of LeNet5 outputs between images ({preset.per_class} per class) under a N(0, alpha^2 I) "
             f"prior on every weight, {preset.draws} draws, averaged per class pair. Data: {test.describe()}.", "",
             "| alpha | same class (mean of diagonal) | different classes (mean off-diagonal) |", "|---:|---:|---:|"]
    for alpha, m in pairs.items():
        off = m[~np.eye(len(m), dtype=bool)]
        lines.append(f"| {alpha} | {np.nanmean(np.diag(m)):.3f} | {np.nanmean(off):.3f} |")
    return "\n".join(lines + [""] + _perturbation_lines(preset, levels, skipped) + [""]
                     + _sample_lines(preset, samples)) + "\n"


def _clean_curve(levels: dict, alpha: float, name: str) -> np.ndarray:
    return np.array(levels[alpha][name]["matrix"])[0]


def _perturbation_lines(preset: PriorPreset, levels: dict, skipped) -> list[str]:
    top, low = max(PRIOR_ALPHAS), min(PRIOR_ALPHAS)
    names = list(levels[top])
    lines = ["### Correlation with the clean image under perturbations", "",
             f"Prior correlation (over {preset.perturb_draws} weight draws, per output, averaged over the outputs and "
             f"{preset.perturb_per_class} image(s) per class) between the outputs for an image and for its perturbed "
             f"version at intensities 1..5, at alpha {top} unless said otherwise. Translation: a random crop of the "
             f"image zero-padded by 2 x intensity pixels; the others: the CIFAR-10-C corruptions at that severity.", "",
             f"| perturbation | intensity 1 | 2 | 3 | 4 | 5 | intensity 5 at alpha {low} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        curve = _clean_curve(levels, top, name)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in curve[1:])
                     + f" | {_clean_curve(levels, low, name)[5]:.3f} |")
    shift = _clean_curve(levels, top, "translation")
    mean5 = {a: float(np.nanmean([_clean_curve(levels, a, n)[5] for n in names])) for a in PRIOR_ALPHAS}
    trend = "falls" if shift[5] < shift[1] else "does not fall"
    lines += ["", f"At alpha {top} the correlation with the clean image {trend} with the translation's intensity "
                  f"({shift[1]:.3f} at 1, {shift[5]:.3f} at 5); averaged over the {len(names)} perturbations it is "
                  f"{mean5[top]:.3f} at intensity 5, against {mean5[low]:.3f} at alpha {low}, where the outputs "
                  f"hardly depend on the image at all (the biases dominate them)."]
    if skipped:
        lines += ["", f"Skipped: {', '.join(skipped)} (frost needs the reference's frost texture images in "
                      f"$TFBDL_FROST_DIR or --texture-dir; saturate does not change grey images)."]
    return lines


def _sample_lines(preset: PriorPreset, samples: dict) -> list[str]:
    low, top = min(PRIOR_ALPHAS), max(PRIOR_ALPHAS)
    uniform = float(np.log(len(samples[low]["shown_predictive"][0])))
    lines = ["### Prior sample functions", "",
             f"Softmax class probabilities of single prior draws and of their average over {preset.draws} draws "
             f"(the prior predictive), on the {preset.per_class} images per class; entropies in nats "
             f"(a uniform prediction: {uniform:.3f}).", "",
             "| alpha | entropy of one draw | entropy of the prior predictive | top-class probability of one draw |",
             "|---:|---:|---:|---:|"]
    for alpha, s in samples.items():
        lines.append(f"| {alpha} | {s['entropy_per_draw']:.3f} | {s['entropy_predictive']:.3f} "
                     f"| {s['top_probability_per_draw']:.3f} |")
    first, last = samples[low], samples[top]
    floor = min(s["entropy_predictive"] for s in samples.values())
    average = "stays close to uniform" if floor > 0.9 * uniform else "is far less confident than a single draw"
    lines += ["", f"The entropy of a single draw goes from {first['entropy_per_draw']:.3f} at alpha {low} to "
                  f"{last['entropy_per_draw']:.3f} at alpha {top} (top-class probability "
                  f"{first['top_probability_per_draw']:.3f} to {last['top_probability_per_draw']:.3f}), while that of "
                  f"the prior predictive is {floor:.3f} or more: a large alpha makes every draw confident, but draws "
                  f"favour different classes, so their average {average}."]
    return lines


# --------------------------------------------------------------------------- figures

def _prior_figure(run, matrices: dict) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    low = min(float(np.nanmin(m)) for m in matrices.values())
    low = np.floor(low * 20) / 20  # one colour scale for all panels, starting near the data
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.8 * len(matrices), 3.2), squeeze=False)
    for ax, (alpha, m) in zip(axes[0], matrices.items()):
        image = ax.imshow(m, vmin=low, vmax=1.0, cmap="viridis")
        ax.set_title(f"alpha = {alpha}", fontsize=9)
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("class", fontsize=8)
        ax.set_ylabel("class", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Prior correlation of outputs between classes", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("prior_correlations.png"))


def _perturbation_figure(run, levels: dict) -> None:
    """One panel per alpha (correlation with the clean image vs intensity, a curve per
    perturbation) and the intensity-by-intensity matrix of translation at the largest alpha."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    alphas = list(levels)
    names = list(levels[alphas[0]])
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    fig, axes = plt.subplots(1, len(alphas) + 1, figsize=(3.6 * (len(alphas) + 1), 3.6), squeeze=False)
    low = min(float(np.nanmin(_clean_curve(levels, a, n))) for a in alphas for n in names)
    low = min(0.9, np.floor(low * 20) / 20)  # one y range for all panels, starting near the data
    for ax, alpha in zip(axes[0], alphas):
        for i, name in enumerate(names):
            style = {"color": "black", "linewidth": 2.2, "zorder": 3} if name == "translation" else \
                {"color": colours[i % 20], "linewidth": 1.0}
            ax.plot(range(6), _clean_curve(levels, alpha, name), marker="o", markersize=2.5, label=name, **style)
        ax.set_ylim(low, 1.02)
        ax.set_title(f"alpha = {alpha}", fontsize=9)
        ax.set_xlabel("intensity (0: clean)", fontsize=8)
        ax.set_ylabel("correlation with the clean image", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    top = max(alphas)
    ax = axes[0][-1]
    matrix = np.array(levels[top]["translation"]["matrix"])
    image = ax.imshow(matrix, vmin=min(float(np.nanmin(matrix)), 0.9), vmax=1.0, cmap="viridis")
    for (i, j), value in np.ndenumerate(matrix):
        dark = value < 0.5 * (1 + image.norm.vmin)
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
    ax.set_title(f"translation, alpha = {top}", fontsize=9)
    ax.set_xticks(range(6))
    ax.set_yticks(range(6))
    ax.set_xlabel("intensity", fontsize=8)
    ax.set_ylabel("intensity", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=7, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("Prior correlation between the outputs for an image and its perturbed versions", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("prior_perturbation_correlations.png"))


def _sample_function_figure(run, samples: dict, images: np.ndarray, labels: np.ndarray) -> None:
    """The shown images (top row), then per alpha and image the softmax of single draws (lines)
    and the prior predictive (bars)."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    alphas = list(samples)
    fig, axes = plt.subplots(len(alphas) + 1, len(labels), figsize=(3.2 * len(labels), 2.3 * (len(alphas) + 1)),
                             squeeze=False)
    for ax, image, label in zip(axes[0], images, labels):
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        ax.set_title(f"test image, class {label}", fontsize=8)
        ax.axis("off")
    for row, alpha in zip(axes[1:], alphas):
        draws = np.array(samples[alpha]["shown_draws"])  # [D, images, C]
        predictive = np.array(samples[alpha]["shown_predictive"])
        for j, ax in enumerate(row):
            classes = np.arange(predictive.shape[1])
            ax.bar(classes, predictive[j], color="0.75", label="prior predictive")
            for d in range(draws.shape[0]):
                ax.plot(classes, draws[d, j], marker="o", markersize=2.5, linewidth=0.8, label=f"draw {d + 1}")
            ax.set_ylim(0, 1.02)
            ax.set_xticks(classes)
            ax.tick_params(labelsize=7)
            ax.set_title(f"alpha = {alpha}", fontsize=8)
            if j == 0:
                ax.set_ylabel("class probability", fontsize=8)
    handles, names = axes[1][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Class probabilities of prior draws of LeNet5 and their average", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save_figure(fig, run.file("prior_sample_functions.png"))


# --------------------------------------------------------------------------- command

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
