"""The figures and ``summary.md`` text of the ``swag`` and ``multiswag`` runs.

Every sentence is worded from the measured numbers (whether the paper's claim was seen here),
so a summary never states more than its run showed.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.bdl.presets import SwagPreset
from tfbdl.cli.common import run_data_line

__all__ = ["MULTISWAG_METHODS", "corruption_figures", "curve_title", "curves_figure", "mean_over_corruptions",
           "multiswag_summary", "swag_figure", "swag_summary", "swag_verdict"]

# The ensembles of multiswag: the members' final weights, SWA means and SWAG predictives averaged.
MULTISWAG_METHODS = {"sgd": "Deep ensembles", "swa": "MultiSWA", "swag": "MultiSWAG"}


# --------------------------------------------------------------------------- swag


def swag_figure(run, metrics: dict) -> None:
    """Bars of test NLL and ECE per method, before (and after) temperature scaling."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    names = list(metrics["test"])
    scaled = metrics.get("test_temperature_scaled")
    width = 0.4 if scaled else 0.8
    for ax, key, label in zip(axes, ("nll", "ece"), ("test NLL", "test ECE")):
        positions = np.arange(len(names))
        ax.bar(positions - (width / 2 if scaled else 0), [metrics["test"][n][key] for n in names], width,
               color=["tab:gray", "tab:blue", "tab:orange"], label="as trained")
        if scaled:
            ax.bar(positions + width / 2, [scaled[n][key] for n in names], width, color="none",
                   edgecolor="black", hatch="//", label="temperature scaled")
            ax.legend(fontsize=7)
        ax.set_xticks(positions, [n.upper() for n in names])
        ax.set_title(label, fontsize=9)
    fig.suptitle("SGD vs SWA vs SWAG", fontsize=9)
    save_figure(fig, run.file("swag_comparison.png"))


def _metric_row(label: str, row: dict) -> str:
    return (f"| {label} | {100 * row['accuracy']:.2f}% | {row['nll']:.4f} | {row['ece']:.4f} | "
            f"{row['brier']:.4f} |")


def _prior_text(preset: SwagPreset) -> str:
    return "" if preset.prior_var is None else f", N(0, {preset.prior_var:g} I) prior on the weights"


def _labels_text(preset: SwagPreset) -> str:
    return f", {100 * preset.label_corruption:g}% of the training labels wrong" if preset.label_corruption else ""


def swag_summary(run, preset: SwagPreset, metrics: dict) -> str:
    """``summary.md`` of a swag run: the settings, a table per method, the verdict and the data."""
    lines = [f"{preset.model} trained {preset.epochs} epochs on {metrics['n_train']} images (SGD with momentum, "
             f"lr {preset.lr_init} → {preset.swa_lr} by epoch {preset.swa_start}, weight decay "
             f"{preset.weight_decay}{_prior_text(preset)}{', crops and flips' if preset.augment else ''}"
             f"{_labels_text(preset)}); SWAG from "
             f"{metrics['snapshots']} snapshots, rank {preset.max_rank}, {preset.samples} samples; test set of "
             f"{metrics['n_test']} images.", "",
             "| method | accuracy | NLL | ECE | Brier |", "|---|---:|---:|---:|---:|"]
    lines += [_metric_row(name.upper(), row) for name, row in metrics["test"].items()]
    if "test_temperature_scaled" in metrics:
        lines += [_metric_row(f"{name.upper()} + temperature {metrics['temperature'][name]:.2f}", row)
                  for name, row in metrics["test_temperature_scaled"].items()]
        lines += ["", f"Temperatures fitted on {metrics['n_val']} training images held out from training."]
    lines += ["", swag_verdict(metrics["test"]), "", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"


def swag_verdict(test: dict) -> str:
    """One measured sentence on the paper's claim that SWAG's test NLL is below SGD's."""
    sgd, swag = test["sgd"]["nll"], test["swag"]["nll"]
    if swag < sgd:
        return f"As in the paper, SWAG's test NLL is below SGD's here ({swag:.4f} vs {sgd:.4f})."
    return (f"Unlike the paper, SWAG's test NLL is not below SGD's here ({swag:.4f} vs {sgd:.4f}); with so few "
            f"images and epochs this run cannot show the paper's claim.")


# --------------------------------------------------------------------------- multiswag


def curves_figure(run, curves: dict) -> None:
    """``multiswag_nll.png``: test NLL against the number of models, a line per ensemble."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, label in MULTISWAG_METHODS.items():
        rows = curves[name]
        ax.plot([r["models"] for r in rows], [r["nll"] for r in rows], marker="o", label=label)
    ax.set_xlabel("number of independently trained models")
    ax.set_ylabel("test NLL")
    ax.legend(fontsize=8)
    ax.set_title(curve_title(curves), fontsize=7)
    save_figure(fig, run.file("multiswag_nll.png"))


def curve_title(curves: dict) -> str:
    """What the curves show, measured: for each method, whether its test NLL fell from 1 to all models."""
    parts = []
    for name, label in MULTISWAG_METHODS.items():
        first, last = curves[name][0]["nll"], curves[name][-1]["nll"]
        verb = "falls" if last < first else "does not fall"
        parts.append(f"{label} {verb} ({first:.3f} → {last:.3f})")
    return "\n".join(parts)


def mean_over_corruptions(curves: dict, names, severity: int, method: str) -> np.ndarray:
    """NLL [M] of ``method`` against the number of models, averaged over the corruptions."""
    return np.mean([[r["nll"] for r in curves[f"{n}/{severity}"][method]] for n in names], axis=0)


def corruption_figures(run, curves: dict, names) -> None:
    """``multiswag_corruptions.png``: NLL against the number of models per severity (averaged over
    corruptions); ``multiswag_corruptions_grid.png``: NLL against severity per corruption."""
    from tfbdl.data.corruptions import SEVERITIES
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(SEVERITIES), figsize=(3.0 * len(SEVERITIES), 2.8), sharey=False)
    for ax, severity in zip(axes, SEVERITIES):
        for method, label in MULTISWAG_METHODS.items():
            nll = mean_over_corruptions(curves, names, severity, method)
            ax.plot(np.arange(1, nll.size + 1), nll, marker="o", label=label)
        ax.set_title(f"severity {severity}", fontsize=9)
        ax.set_xlabel("models", fontsize=8)
    axes[0].set_ylabel(f"NLL, mean over {len(names)} corruptions", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run.file("multiswag_corruptions.png"))

    columns = 6
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for (method, label), colour in zip(MULTISWAG_METHODS.items(), ("tab:gray", "tab:blue", "tab:orange")):
            final = [curves[f"{name}/{s}"][method][-1]["nll"] for s in SEVERITIES]
            single = [curves[f"{name}/{s}"][method][0]["nll"] for s in SEVERITIES]
            ax.plot(SEVERITIES, final, marker="o", markersize=3, color=colour, label=f"{label}")
            ax.plot(SEVERITIES, single, linestyle=":", color=colour)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("NLL against severity: all models (solid) and one model (dotted)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("multiswag_corruptions_grid.png"))


def multiswag_summary(run, preset: SwagPreset, models: int, curves: dict, names, n_train: int, n_test: int,
                      n_corrupt: int) -> str:
    """``summary.md`` of a multiswag run: test NLL per number of models, then per severity."""
    from tfbdl.data.corruptions import SEVERITIES

    test = curves["test"]
    lines = [f"{models} independent {preset.model} runs ({preset.epochs} epochs, SWAG after epoch {preset.swa_start} "
             f"at lr {preset.swa_lr}, {preset.samples} samples each) on {n_train} training images; test NLL "
             f"of the average of the first k models ({n_test} test images).", "",
             "| models | " + " | ".join(MULTISWAG_METHODS.values()) + " |", "|---:|" + "---:|" * len(MULTISWAG_METHODS)]
    for k in range(models):
        lines.append(f"| {k + 1} | " + " | ".join(f"{test[n][k]['nll']:.4f}" for n in MULTISWAG_METHODS) + " |")
    lines += ["", f"Corrupted test images ({len(names)} corruptions x {len(SEVERITIES)} severities, {n_corrupt} "
                  f"images each): NLL averaged over the corruptions, with 1 and with {models} models.", "",
              "| severity | " + " | ".join(f"{label} (1 → {models})" for label in MULTISWAG_METHODS.values()) + " |",
              "|---:|" + "---:|" * len(MULTISWAG_METHODS)]
    for severity in SEVERITIES:
        cells = []
        for method in MULTISWAG_METHODS:
            nll = mean_over_corruptions(curves, names, severity, method)
            cells.append(f"{nll[0]:.3f} → {nll[-1]:.3f}")
        lines.append(f"| {severity} | " + " | ".join(cells) + " |")
    skipped = [name for name in ("frost", "saturate") if name not in names]
    if skipped:
        lines += ["", f"Skipped: {', '.join(skipped)} (frost needs the reference's texture images in "
                      "$TFBDL_FROST_DIR; saturate does not change grey images)."]
    lines += ["", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"
