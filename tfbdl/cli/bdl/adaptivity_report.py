"""The figure and ``summary.md`` text of ``bdl posterior-adaptivity``.

The figure is the reference's: bars of the class probabilities averaged over the test images,
for the prior predictive and single prior draws (top row) and for one posterior sample per
training-set size (bottom row), beside the entropies against the examples per class. Every
sentence of the summary is worded from the measured numbers.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.bdl.prior_presets import AdaptivityPreset
from tfbdl.cli.common import run_data_line

__all__ = ["adaptivity_figure", "adaptivity_summary", "model_text", "trend"]

PRIOR_SHOWN = 3  # single prior draws shown beside the prior predictive


def trend(values) -> str:
    """How a sequence moves from its first value to its last: at every step, overall, or not."""
    steps = [b - a for a, b in zip(values, values[1:])]
    if values[-1] == values[0]:
        return "stays level"
    verb = "falls" if values[-1] < values[0] else "rises"
    every = all(s < 0 for s in steps) if verb == "falls" else all(s > 0 for s in steps)
    return verb if every else f"{verb} overall (not at every step)"


def _arrow(values, digits: int = 3) -> str:
    return " → ".join(f"{v:.{digits}f}" for v in values)


def model_text(preset: AdaptivityPreset) -> str:
    """The network, with its widths when the preset sets them."""
    if preset.conv_widths is None and preset.dense_widths is None:
        return preset.model
    conv = ", ".join(map(str, preset.conv_widths or ()))
    dense = ", ".join(map(str, preset.dense_widths or ()))
    return f"{preset.model} (convolutions {conv or 'as the reference'}; dense {dense or 'as the reference'})"


def _chain_text(preset: AdaptivityPreset) -> str:
    start = "a prior draw" if preset.init == "prior" else "the network's standard initialisation"
    warm = f"{preset.warmup_steps} Adam steps (lr {preset.warmup_lr:g}), then " if preset.warmup_steps else ""
    return (f"{preset.chains} SGLD chain(s) per training-set size from {start}: {warm}{preset.sgld_steps} Langevin "
            f"steps (lr {preset.sgld_lr:g} cosine-annealed to 0, noise sqrt(2 lr / N): temperature 1), batches of "
            f"up to {preset.batch_size}; one posterior sample per chain, its last state")


def adaptivity_summary(run, preset: AdaptivityPreset, metrics: dict) -> str:
    """``summary.md``: the settings, the prior paragraph, a table per training-set size, the trends."""
    prior, posterior, counts = metrics["prior"], metrics["posterior"], metrics["per_class"]
    classes = metrics["num_classes"]
    uniform, log_c = 1.0 / classes, float(np.log(classes))
    lines = [f"{model_text(preset)} with a N(0, {preset.prior_var:g} I) prior on every weight; {prior['samples']} "
             f"prior draws; {_chain_text(preset)}. Predictive distributions on {metrics['n_test']} test images "
             f"({metrics['n_test'] // classes} per class). Entropies in nats (uniform: {log_c:.3f}).", ""]
    confident = "more" if prior["max_probability"] > prior["predictive_max_probability"] else "not more"
    lines += [f"A single prior draw gives its top class a mean probability of {prior['max_probability']:.3f} per "
              f"image (entropy {prior['entropy']:.3f}) and puts on average {prior['top_class_share']:.3f} of its "
              f"probability over the test set on one class ({uniform:.3f} would be an even spread); the prior "
              f"predictive, their average, gives its top class {prior['predictive_max_probability']:.3f} per image "
              f"(entropy {prior['predictive_entropy']:.3f}) and no class more than "
              f"{max(prior['predictive_share']):.3f} of the test set: single draws are {confident} confident than "
              f"their average.", "",
              "| examples per class | one sample: accuracy | predictive: accuracy | predictive NLL | one sample: "
              "entropy | predictive entropy | disagreement | top-class share of one sample |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| 0 (prior) | {100 * prior['accuracy']:.1f}% | {100 * prior['predictive_accuracy']:.1f}% | "
              f"{prior['predictive_nll']:.3f} | {prior['entropy']:.3f} | {prior['predictive_entropy']:.3f} | "
              f"{prior['disagreement']:.3f} | {prior['top_class_share']:.3f} |"]
    for k in counts:
        s = posterior[str(k)]
        lines.append(f"| {k} | {100 * s['accuracy']:.1f}% | {100 * s['predictive_accuracy']:.1f}% | "
                     f"{s['predictive_nll']:.3f} | {s['entropy']:.3f} | {s['predictive_entropy']:.3f} | "
                     f"{s['disagreement']:.3f} | {s['top_class_share']:.3f} |")
    rows = [posterior[str(k)] for k in counts]
    if len(counts) > 1:
        entropy = [r["predictive_entropy"] for r in rows]
        spread = [r["disagreement"] for r in rows]
        accuracy = [100 * r["predictive_accuracy"] for r in rows]
        share = [r["top_class_share"] for r in rows]
        lines += ["", f"From {counts[0]} to {counts[-1]} examples per class the posterior predictive's entropy "
                      f"{trend(entropy)} ({_arrow(entropy)}), the chains' disagreement {trend(spread)} "
                      f"({_arrow(spread)}) and the predictive's accuracy {trend(accuracy)} "
                      f"({_arrow(accuracy, 1)}%). One posterior sample puts {_arrow(share)} of the test set's "
                      f"probability on its top class, against {prior['top_class_share']:.3f} for a prior draw: "
                      f"{_share_verdict(share, prior['top_class_share'], uniform)}."]
    if preset.chains == 1:
        lines += ["", "One chain per size: the predictive is that one sample, and the disagreement is 0 by "
                      "definition."]
    lines += ["", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"


def _share_verdict(share, prior_share: float, uniform: float) -> str:
    if max(share) < prior_share:
        closer = "closer to" if share[-1] <= share[0] else "yet not closer to"
        return f"posterior samples no longer put most images in one class, and with more data they come {closer} " \
               f"an even spread ({uniform:.3f})"
    return "posterior samples still favour one class as much as prior draws do"


def _bars(ax, share, title: str, outline=None) -> None:
    classes = np.arange(len(share))
    ax.bar(classes, share, color="tab:blue", alpha=0.8)
    if outline is not None:
        ax.step(classes, outline, where="mid", color="black", linewidth=0.9, label="predictive")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(classes)
    ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=8)


def adaptivity_figure(run, preset: AdaptivityPreset, metrics: dict) -> None:
    """``posterior_adaptivity.png``: class shares of the prior predictive and prior draws (top),
    of a posterior sample per size (bottom), and the entropies against the examples per class."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    prior, posterior, counts = metrics["prior"], metrics["posterior"], metrics["per_class"]
    shown = prior["shares"][:PRIOR_SHOWN]
    columns = max(1 + len(shown), len(counts) + 1)
    fig, axes = plt.subplots(2, columns, figsize=(2.4 * columns, 5.0), squeeze=False)
    _bars(axes[0][0], prior["predictive_share"], f"prior predictive ({prior['samples']} draws)")
    for j, share in enumerate(shown):
        _bars(axes[0][j + 1], share, f"prior sample {j + 1}")
    axes[0][0].set_ylabel("probability, mean over test images", fontsize=7)
    for j, k in enumerate(counts):
        s = posterior[str(k)]
        _bars(axes[1][j], s["shares"][0], f"posterior sample, {k} per class", outline=s["predictive_share"])
    axes[1][0].set_ylabel("probability, mean over test images", fontsize=7)
    ax = axes[1][len(counts)]
    ax.plot(counts, [posterior[str(k)]["predictive_entropy"] for k in counts], marker="o", label="posterior predictive")
    ax.plot(counts, [posterior[str(k)]["entropy"] for k in counts], marker="s", label="one posterior sample")
    ax.axhline(prior["predictive_entropy"], color="tab:red", linestyle="--", linewidth=0.9, label="prior predictive")
    ax.axhline(prior["entropy"], color="tab:red", linestyle=":", linewidth=0.9, label="one prior draw")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(counts, [str(k) for k in counts])
    ax.set_ylim(-0.05, max(prior["predictive_entropy"], float(np.log(metrics["num_classes"]))) + 0.1)
    ax.set_xlabel("examples per class", fontsize=7)
    ax.set_ylabel("entropy per test image (nats)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="center right")
    for extra in axes.flat:
        if not extra.has_data():
            extra.set_axis_off()
    fig.suptitle(f"{preset.model}, N(0, {preset.prior_var:g} I) prior: class probabilities averaged over "
                 f"{metrics['n_test']} test images", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("posterior_adaptivity.png"))
