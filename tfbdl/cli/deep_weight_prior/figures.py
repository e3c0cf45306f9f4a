"""The pipeline's figures: kernel-norm histograms, the prior x examples accuracy plot and the
initialisation learning curves (matplotlib through :mod:`tfbdl.plots`, imported when drawn)."""

from __future__ import annotations

import numpy as np

from tfbdl.cli.deep_weight_prior.presets import INIT_NAMES, PRIOR_NAMES, BnnPreset, InitPreset

__all__ = ["ARM_STYLE", "bnn_figure", "convergence_figure", "init_figure", "norms_figure", "rfe_figure"]


def norms_figure(run, norms: dict, threshold: float) -> None:
    """``kernel_norms.png``: histograms of the slice norms (``{k: norms [n]}``) per size with the threshold."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 2.8))
    for ax, (k, values) in zip(np.atleast_1d(axes), norms.items()):
        positive = values[values > 0]
        bins = np.logspace(np.log10(max(positive.min(), 1e-6)), np.log10(positive.max()), 50) if positive.size else 10
        ax.hist(positive, bins=bins, color="tab:blue")
        ax.set_xscale("log")
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_title(f"{k}x{k} slices ({values.size})", fontsize=9)
        ax.set_xlabel("Frobenius norm")
        ax.legend(fontsize=7)
    save_figure(fig, run.file("kernel_norms.png"))


def bnn_figure(run, rows: list[dict], preset: BnnPreset) -> None:
    """``bnn_accuracy.png``: test accuracy against the number of examples per prior (mean ± std)."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    positions = np.arange(len(preset.sizes))
    for i, prior in enumerate(preset.priors):
        mine = [r for r in rows if r["prior"] == prior]
        std = [r["accuracy_std"] or 0.0 for r in mine]
        ax.errorbar(positions + 0.04 * (i - 1), [r["accuracy_mean"] for r in mine], yerr=std, marker="o", capsize=4,
                    label=PRIOR_NAMES[prior])
    ax.set_xticks(positions, [str(s) for s in preset.sizes])
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"test accuracy ({preset.test_samples}-sample ensemble)")
    ax.set_title(f"Bayesian fconv on MNIST, mean ± std over {preset.splits} splits", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, run.file("bnn_accuracy.png"))


def init_figure(run, metrics: dict, preset: InitPreset) -> None:
    """``dwp_init_curves.png``: mean test accuracy per epoch (± std band) per initialisation."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    for (init, curve), colour in zip(metrics["curves"].items(), ("tab:gray", "tab:orange")):
        mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
        epochs = np.arange(mean.size)
        ax.plot(epochs, mean, marker="o", markersize=3, color=colour, label=INIT_NAMES[init])
        ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"fconv on {preset.n_train} MNIST examples, mean over {preset.seeds} seeds", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, run.file("dwp_init_curves.png"))


# The release's figures (seaborn "deep" palette on a white grid): dwp blue, xavier orange, filters green;
# the arms drawn from the release's VAEs / bank in the same colour, dashed.
ARM_STYLE = {"dwp": ("#4C72B0", "-"), "xavier": ("#DD8452", "-"), "filters": ("#55A868", "-"),
             "dwp-release": ("#4C72B0", "--"), "filters-release": ("#55A868", "--")}


def _release_axes(ax) -> None:
    ax.grid(True, color="#d9d9d9", linewidth=0.8)
    ax.set_axisbelow(True)
    for spine in ax.spines.values():
        spine.set_color("#cccccc")


def rfe_figure(run, metrics: dict, preset) -> None:
    """``random_features.png``: test accuracy against the width scale k per arm (mean ± std over seeds)."""
    from tfbdl.cli.deep_weight_prior.presets import ARM_NAMES
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    positions = np.arange(len(preset.scales))
    for arm in metrics["arms"]:
        rows = [r for r in metrics["table"] if r["arm"] == arm]
        colour, style = ARM_STYLE[arm]
        ax.errorbar(positions, [r["accuracy_mean"] for r in rows], yerr=[r["accuracy_std"] or 0.0 for r in rows],
                    color=colour, linestyle=style, linewidth=2.2, marker="o", markersize=4, capsize=3,
                    label=ARM_NAMES[arm])
    ax.set_xticks(positions, list(preset.scales))
    ax.set_xlabel("scale $k$")
    ax.set_ylabel("accuracy")
    ax.set_title(f"random feature extraction, MNIST ({preset.seeds} seeds)", fontsize=9)
    _release_axes(ax)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, run.file("random_features.png"))


def _curve_panel(ax, steps, curves: dict, arms) -> None:
    from tfbdl.cli.deep_weight_prior.presets import ARM_NAMES

    steps = np.asarray(steps)
    for arm in arms:
        mean, std = np.asarray(curves[arm]["mean"]), np.asarray(curves[arm]["std"])
        colour, style = ARM_STYLE[arm]
        ax.plot(steps, mean, color=colour, linestyle=style, linewidth=2.2, label=ARM_NAMES[arm])
        ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("# steps")
    _release_axes(ax)
    ax.legend(fontsize=8, loc="lower right")


def convergence_figure(run, metrics: dict, preset) -> None:
    """``convergence.png``: the VAE's held-out lower bound (when run) and the ConvNet's test accuracy against
    optimisation steps per arm (mean, ± std band over seeds), the release's panels (a) and (b)."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    panels = (["vae"] if "vae" in metrics else []) + ["convnet"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.3), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "vae":
            _curve_panel(ax, metrics["vae"]["steps"], metrics["vae"]["curves"], metrics["arms"])
            ax.set_ylabel("variational lower bound")
            ax.set_title(f"(a) VAE on MNIST ({preset.seeds} seeds)", fontsize=9)
        else:
            _curve_panel(ax, metrics["steps"], metrics["curves"], metrics["arms"])
            ax.set_ylabel("accuracy")
            ax.set_title(f"{'(b) ' if len(panels) > 1 else ''}ConvNet on MNIST ({preset.seeds} seeds)", fontsize=9)
    save_figure(fig, run.file("convergence.png"))
