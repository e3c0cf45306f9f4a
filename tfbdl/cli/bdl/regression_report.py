"""The figure and ``summary.md`` text of ``bdl regression-1d``.

The conclusion sentence is worded from the measured ratios of predictive spread in the gaps to
that on the clusters, so it says when a run does not show the paper's picture.
"""

from __future__ import annotations

from tfbdl.cli.bdl.presets import RegressionPreset
from tfbdl.cli.bdl.regression_metrics import STUCK_ACCEPTANCE, split_outputs

__all__ = ["COLORS", "METHODS", "regression_figure", "regression_summary"]

METHODS = {"hmc": "HMC", "ensemble": "Deep ensemble", "vi": "Mean-field VI"}
COLORS = {"hmc": "tab:blue", "ensemble": "tab:green", "vi": "tab:red"}


def regression_figure(run, data, outputs: dict) -> None:
    """Three predictive panels sharing axes (data, mean, ±2 std) and a panel of the std across x."""
    from tfbdl.bayes.ensembles import regression_predictive
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig = plt.figure(figsize=(12, 7))
    grid_spec = fig.add_gridspec(2, 3, height_ratios=(1.6, 1.0), hspace=0.28, wspace=0.06)
    top = [fig.add_subplot(grid_spec[0, 0])]
    top += [fig.add_subplot(grid_spec[0, i], sharex=top[0], sharey=top[0]) for i in (1, 2)]
    bottom = fig.add_subplot(grid_spec[1, :], sharex=top[0])
    x = data.x_grid
    span = data.f_grid.max() - data.f_grid.min()
    ylim = (min(data.y.min(), data.f_grid.min()) - 0.6 * span, max(data.y.max(), data.f_grid.max()) + 0.6 * span)

    def shade(ax):
        for lo, hi in data.config.clusters:
            ax.axvspan(lo, hi, color="0.92", zorder=0)

    stds = {}
    for ax, (name, label) in zip(top, METHODS.items()):
        pred = regression_predictive(split_outputs(data, outputs[name])[0], data.config.noise_std)
        mean, std = pred.mean[:, 0], pred.std[:, 0]
        stds[name] = std
        shade(ax)
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=COLORS[name], alpha=0.25, lw=0, label="±2 std")
        ax.plot(x, data.f_grid, "k--", lw=1, label="true function")
        ax.plot(x, mean, color=COLORS[name], lw=1.8, label="predictive mean")
        ax.scatter(data.x, data.y, s=8, c="k", zorder=3, label="data")
        ax.set_title(f"{label} ({outputs[name].shape[0]} samples)", fontsize=10)
        ax.set_ylim(*ylim)
        ax.set_xlim(x[0], x[-1])
    for ax in top[1:]:
        ax.tick_params(labelleft=False)
    top[0].set_ylabel("y")
    top[0].legend(fontsize=7, loc="upper left")
    shade(bottom)
    for name, label in METHODS.items():
        bottom.plot(x, stds[name], color=COLORS[name], lw=1.8, label=label)
    bottom.axhline(data.config.noise_std, color="k", ls=":", lw=1, label="noise std")
    bottom.set_ylabel("predictive std")
    bottom.set_xlabel("x (grey: training clusters)")
    bottom.legend(fontsize=8, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    bottom.set_ylim(bottom=0)
    fig.suptitle("1-D regression with gaps: HMC vs deep ensemble vs mean-field VI", fontsize=11)
    save_figure(fig, run.file("regression_1d.png"))


def _conclusion(metrics: dict) -> str:
    """One sentence on what the numbers show, worded from the numbers themselves."""
    r = {name: m["gap_to_cluster_std"] for name, m in metrics["methods"].items()}
    text = (f"In the gaps the predictive std is {r['hmc']:.1f}x its in-cluster value for HMC, "
            f"{r['ensemble']:.1f}x for the deep ensemble and {r['vi']:.1f}x for mean-field VI")
    if min(r["hmc"], r["ensemble"]) > r["vi"]:
        return text + ": as in the paper, HMC and the deep ensemble grow their uncertainty between the " \
                      "clusters while mean-field VI underestimates it there."
    return text + ": unlike the paper, mean-field VI is not the least uncertain method in the gaps at " \
                  "these settings (short chains or few members can understate the others' spread)."


def regression_summary(preset: RegressionPreset, metrics: dict) -> str:
    """``summary.md``: the settings, a row per method and the true function, and the conclusion."""
    m = metrics["methods"]
    hmc = m["hmc"]
    rhat = hmc["rhat"]
    rhat_text = f", R-hat of f(x) median {rhat['median']:.2f} (max {rhat['max']:.2f})" if rhat else ""
    if hmc["stuck_chains"]:
        rhat_text += f"; {hmc['stuck_chains']} chain(s) accepted under {STUCK_ACCEPTANCE:.0%} of proposals"
    lines = [f"{metrics['n_train']} training points in three clusters (noise std {metrics['noise_std']}); an MLP "
             f"on (x, x^2) with hidden widths {list(preset.hidden)} ({metrics['num_params']} parameters), "
             f"prior N(0, {preset.prior_scale}^2) on every weight. HMC: {preset.num_chains} chains x "
             f"{preset.hmc_samples} draws ({preset.leapfrog} leapfrog steps, acceptance "
             f"{hmc['acceptance_rate']:.2f}, step size {hmc['step_size']:.2g}{rhat_text}); deep ensemble of "
             f"{preset.ensemble_size} MAP networks ({preset.ensemble_steps} steps each); mean-field VI "
             f"({preset.vi_steps} steps, {preset.vi_draws} draws).", "",
             "| method | std in clusters | std in gaps | gaps / clusters | test log-lik (clusters) | "
             "test log-lik (whole range) |", "|---|---:|---:|---:|---:|---:|"]
    for name, label in METHODS.items():
        row = m[name]
        lines.append(f"| {label} | {row['std']['cluster']:.3f} | {row['std']['gap']:.3f} | "
                     f"{row['gap_to_cluster_std']:.2f} | {row['test_loglik']:.3f} | {row['test_wide_loglik']:.3f} |")
    oracle = metrics["oracle_loglik"]
    lines += [f"| true function | {metrics['noise_std']:.3f} | {metrics['noise_std']:.3f} | 1.00 | "
              f"{oracle['test']:.3f} | {oracle['test_wide']:.3f} |", "", _conclusion(metrics)]
    return "\n".join(lines) + "\n"
