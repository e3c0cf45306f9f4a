"""The figure and ``summary.md`` text of ``bdl rethinking-generalization``.

The paper's claim is that the (approximate) marginal likelihood falls as more labels are
corrupted; every trend sentence here is worded from the measured curves, including where they
do not fall.
"""

from __future__ import annotations

from tfbdl.cli.bdl.presets import RethinkingPreset
from tfbdl.cli.common import run_data_line

__all__ = ["CURVES", "decreasing", "rethinking_figure", "rethinking_summary"]

# The evidence curves against the corrupted fraction: metric key -> what it is.
CURVES = {"laplace_log_evidence_per_point": "Laplace log evidence / N",
          "ova_elbo_per_point": "one-vs-all GP ELBO / N",
          "binary_elbo_per_point": "binary GP ELBO / N"}


def decreasing(values) -> bool:
    """Whether a sequence falls strictly from each value to the next."""
    values = [float(v) for v in values]
    return all(b < a for a, b in zip(values, values[1:]))


def rethinking_figure(run, preset: RethinkingPreset, metrics: dict) -> None:
    """``rethinking_generalization.png``: accuracies, Laplace evidence and GP ELBOs against the fraction."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    rows = metrics["rows"]
    f = [r["fraction"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ax = axes[0]
    ax.plot(f, [r["train_accuracy"] for r in rows], marker="o", label="train (labels fitted)")
    ax.plot(f, [r["test_accuracy"] for r in rows], marker="s", label="test")
    ax.axhline(1.0 / metrics["num_classes"], color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"PreResNet{preset.depth} accuracy", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(f, [r["laplace_log_evidence_per_point"] for r in rows], marker="o", color="tab:red")
    ax.set_ylabel("log evidence / N")
    ax.set_title(f"Laplace evidence ({preset.laplace.replace('_', '-')})", fontsize=9)
    ax = axes[2]
    ax.plot(f, [r["ova_elbo_per_point"] for r in rows], marker="o", label="one-vs-all (sum over classes)")
    ax.plot(f, [r["binary_elbo_per_point"] for r in rows], marker="s",
            label=f"binary (classes {preset.classes[0]} vs {preset.classes[1]})")
    ax.set_ylabel("ELBO / N")
    ax.set_title("CNN-GP marginal likelihood (ELBO)", fontsize=9)
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("fraction of corrupted labels")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, run.file("rethinking_generalization.png"))


def _trend(rows: list, key: str, name: str) -> str:
    """A sentence on whether the curve ``key`` decreases monotonically."""
    values = [r[key] for r in rows]
    if decreasing(values):
        return f"The {name} decreases monotonically ({values[0]:.4f} → {values[-1]:.4f})."
    rises = [f"{a['fraction']:g} → {b['fraction']:g} ({a[key]:.4f} → {b[key]:.4f})"
             for a, b in zip(rows, rows[1:]) if b[key] >= a[key]]
    return (f"The {name} does NOT decrease monotonically: it rises or stays level at {'; '.join(rises)} "
            f"(overall {values[0]:.4f} → {values[-1]:.4f}).")


def _convergence(rows: list) -> str:
    """A sentence comparing the SVGPs' last ELBO gains with the gaps between fractions."""
    parts = []
    for kind, name in (("ova", "one-vs-all"), ("binary", "binary")):
        rise = max(r[f"{kind}_last_change"] for r in rows)
        values = [r[f"{kind}_elbo_per_point"] for r in rows]
        gap = min((abs(a - b) for a, b in zip(values, values[1:])), default=float("nan"))
        parts.append(f"{name}: the ELBO / N rose by at most {rise:.4f} over the last 10% of the steps, the "
                     f"smallest gap between neighbouring fractions is {gap:.4f}")
    return "SVGP convergence: " + "; ".join(parts) + "."


def rethinking_summary(run, preset: RethinkingPreset, metrics: dict) -> str:
    """``summary.md``: the settings, a row per fraction, the trends and the SVGPs' convergence."""
    used = run_data_line(run)
    rows = metrics["rows"]
    optimiser = "natural-gradient + Adam" if preset.svgp_natgrad else "Adam"
    laplace = {"last_layer": "last-layer Laplace (full curvature of the final Dense layer, the layers below "
                             "held at their trained values)",
               "diagonal": "diagonal Laplace over every weight"}[preset.laplace]
    lines = [f"PreResNet{preset.depth} (widths {'/'.join(map(str, preset.widths))}) trained {preset.epochs} epochs "
             f"on {metrics['n_train']} images with a fraction of the labels corrupted (SGD + momentum, lr "
             f"{preset.lr_init}, weight decay {preset.weight_decay}, no augmentation); evidence by the {laplace} "
             f"with prior precision 2 N wd = {metrics['prior_precision']:g}; test accuracy on {metrics['n_test']} "
             f"test images. GPs: CNN-GP kernel (ConvNet GP, {preset.kernel_depth} conv layers, divided by its value "
             f"on the all-ones image) on the first "
             f"{metrics['n_gp']} training images, one-vs-all SVGP with {preset.num_inducing} fixed inducing points, "
             f"binary SVGP on the {metrics['n_binary']} images of classes {preset.classes[0]} and "
             f"{preset.classes[1]} (all of them inducing points, a corrupted fraction f is a fair coin, i.e. f/2 "
             f"flipped), {preset.svgp_steps} {optimiser} steps each; ELBO per training point "
             f"(one-vs-all: summed over the {len(rows[0]['ova_elbo_per_class'])} class models).", "",
             "| corrupted fraction | train acc (fitted labels) | test acc | Laplace log evidence / N | "
             "GP one-vs-all ELBO / N | GP binary ELBO / N |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fraction']:g} | {100 * r['train_accuracy']:.1f}% | {100 * r['test_accuracy']:.1f}% | "
                     f"{r['laplace_log_evidence_per_point']:.4f} | {r['ova_elbo_per_point']:.4f} | "
                     f"{r['binary_elbo_per_point']:.4f} |")
    if metrics["n_gp"] < metrics["n_train"]:
        shares = ", ".join(f"{r['ova_corrupted']:.3f}" for r in rows)
        lines += ["", f"Exactly the stated fraction of the {metrics['n_train']} network training labels is corrupted; "
                      f"on the GPs' first {metrics['n_gp']} images the corrupted shares are {shares}."]
    lines += [""] + [_trend(rows, key, name) for key, name in CURVES.items()] + ["", _convergence(rows)]
    lines += ["", f"Data: {used}."]
    return "\n".join(lines) + "\n"
