"""The figure and ``summary.md`` text of ``bdl prior-variance``.

Test accuracy, NLL and ECE of SGD, SWA and SWAG against the prior variance (log axis), a table
per value, and sentences worded from the measured numbers: where SWAG beats SGD, which values
are near the best, and what the tightest prior does.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.bdl.presets import SwagPreset
from tfbdl.cli.common import run_data_line

__all__ = ["NEAR_BEST", "near_best", "prior_variance_figure", "prior_variance_summary"]

NEAR_BEST = 0.10  # "near the best": a test NLL at most 10% above the best value's
_LABELS = {"sgd": "SGD", "swa": "SWA", "swag": "SWAG"}


def near_best(nll) -> list[int]:
    """Indices of the values whose NLL is at most NEAR_BEST above the smallest."""
    nll = np.asarray(nll, dtype=np.float64)
    return [int(i) for i in np.flatnonzero(nll <= (1.0 + NEAR_BEST) * nll.min())]


def _cell(row: dict) -> str:
    return f"{100 * row['accuracy']:.2f}% / {row['nll']:.4f} / {row['ece']:.4f}"


def prior_variance_summary(run, member: SwagPreset, metrics: dict) -> str:
    """``summary.md``: the settings, a row per prior variance, the measured verdicts, the data."""
    values, variances = metrics["values"], metrics["prior_vars"]
    augment = ", crops and flips" if member.augment else ""
    lines = [f"{member.model} trained {member.epochs} epochs on {metrics['n_train']} images (SGD with momentum, lr "
             f"{member.lr_init} → {member.swa_lr} by epoch {member.swa_start}{augment}, no weight decay: a N(0, v I) "
             f"prior on every weight, |w|^2 / (2 v N) in the loss); SWAG from {member.epochs - member.swa_start} "
             f"snapshots, rank {member.max_rank}, {member.samples} samples; test set of {metrics['n_test']} images; "
             "the same seed for every v.", "",
             "| prior variance v | weight decay 1/(2vN) | train accuracy | SGD: accuracy / NLL / ECE | SWA | SWAG |",
             "|---:|---:|---:|---:|---:|---:|"]
    for v, row in zip(variances, values):
        lines.append(f"| {v:g} | {row['weight_decay']:.3g} | {100 * row['train_accuracy']:.1f}% | "
                     + " | ".join(_cell(row["test"][m]) for m in _LABELS) + " |")
    lines += [""] + _verdicts(variances, values) + ["", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"


def _verdicts(variances, values) -> list[str]:
    nll = {m: [row["test"][m]["nll"] for row in values] for m in _LABELS}
    accuracy = {m: [100 * row["test"][m]["accuracy"] for row in values] for m in _LABELS}
    wins = sum(s < g for s, g in zip(nll["swag"], nll["sgd"]))
    lines = [f"SWAG's test NLL is below SGD's at {wins} of the {len(variances)} prior variances."]
    for m, label in _LABELS.items():
        best = int(np.argmin(nll[m]))
        near = ", ".join(f"{variances[i]:g}" for i in near_best(nll[m]))
        low, high = int(np.argmin(accuracy[m])), int(np.argmax(accuracy[m]))
        lines.append(f"{label}: best test NLL {nll[m][best]:.4f} at v = {variances[best]:g}; within "
                     f"{100 * NEAR_BEST:.0f}% of it at v = {near}; accuracy from {accuracy[m][low]:.2f}% "
                     f"(v = {variances[low]:g}) to {accuracy[m][high]:.2f}% (v = {variances[high]:g}).")
    if len(variances) > 1:
        tight = values[0]
        worst = int(np.argmax(nll["swag"])) == 0
        lines.append(f"The tightest prior (v = {variances[0]:g}, weight decay {tight['weight_decay']:.3g}) "
                     f"{'gives' if worst else 'does not give'} SWAG's worst NLL; it reaches "
                     f"{100 * tight['train_accuracy']:.1f}% training accuracy, against "
                     f"{100 * max(row['train_accuracy'] for row in values):.1f}% at best.")
    return [" ".join(lines[:1])] + [""] + ["- " + line for line in lines[1:]]


def prior_variance_figure(run, member: SwagPreset, metrics: dict) -> None:
    """``prior_variance.png``: test accuracy, NLL and ECE against the prior variance, a line per method."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    variances, values = metrics["prior_vars"], metrics["values"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, label in zip(axes, ("accuracy", "nll", "ece"), ("test accuracy (%)", "test NLL", "test ECE")):
        scale = 100.0 if key == "accuracy" else 1.0
        for method, colour in zip(_LABELS, ("tab:gray", "tab:blue", "tab:orange")):
            ax.plot(variances, [scale * row["test"][method][key] for row in values], marker="o", color=colour,
                    label=_LABELS[method])
        if key == "accuracy":
            ax.plot(variances, [100 * row["train_accuracy"] for row in values], linestyle=":", color="black",
                    label="train (last epoch)")
        ax.set_xscale("log")
        if key == "nll":
            ax.set_yscale("log")  # a prior that holds the weights at zero is far above the rest
        ax.set_xlabel("prior variance v", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{member.model}, no weight decay, N(0, v I) prior: {metrics['n_train']} training images, "
                 f"{metrics['n_test']} test images", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("prior_variance.png"))
