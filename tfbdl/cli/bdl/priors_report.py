"""The figures and ``summary.md`` text of ``bdl prior-correlations``.

Class-pair correlation matrices, correlation with the clean image against the intensity of each
perturbation, and the class probabilities of single prior draws and of their average; the
sentences are worded from the measured numbers.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.bdl.presets import PRIOR_ALPHAS, PriorPreset

__all__ = ["perturbation_figure", "prior_figure", "prior_summary", "sample_function_figure"]


def prior_summary(test, preset: PriorPreset, pairs: dict, levels: dict, samples: dict, skipped) -> str:
    """``summary.md``: class-pair correlations, then the perturbation and sample-function sections."""
    lines = [f"Correlation of LeNet5 outputs between images ({preset.per_class} per class) under a N(0, alpha^2 I) "
             f"prior on every weight, {preset.draws} draws, averaged per class pair. Data: {test.describe()}.", "",
             "| alpha | same class (mean of diagonal) | different classes (mean off-diagonal) |", "|---:|---:|---:|"]
    for alpha, m in pairs.items():
        off = m[~np.eye(len(m), dtype=bool)]
        lines.append(f"| {alpha} | {np.nanmean(np.diag(m)):.3f} | {np.nanmean(off):.3f} |")
    return "\n".join(lines + [""] + _perturbation_lines(preset, levels, skipped) + [""]
                     + _sample_lines(preset, samples)) + "\n"


def _clean_curve(levels: dict, alpha: float, name: str) -> np.ndarray:
    """Correlation [6] with the clean image at intensities 0..5 of perturbation ``name`` at ``alpha``."""
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


def prior_figure(run, matrices: dict) -> None:
    """``prior_correlations.png``: the class-pair correlation matrix per alpha, one colour scale."""
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


def perturbation_figure(run, levels: dict) -> None:
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


def sample_function_figure(run, samples: dict, images: np.ndarray, labels: np.ndarray) -> None:
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
