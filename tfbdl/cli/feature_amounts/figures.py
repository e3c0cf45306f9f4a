"""The figures of a finished feature-amounts sweep: ``feature_amounts.png`` (accuracy against
where the features sit, coloured by depth) and ``variants_table.png`` (every variant, best first)."""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy_figure", "table_figure"]


def accuracy_figure(run, rows: list[dict]) -> None:
    """Best validation accuracy against the share of conv features in the first half of the
    layers, one colour per depth; the reference networks as stars."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    depths = sorted({r["depth"] for r in rows})
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, max(len(depths), 1)))
    for depth, colour in zip(depths, colours):
        mine = [r for r in rows if r["depth"] == depth and r["mean"] is not None]
        ax.scatter([r["early_fraction"] for r in mine], [100 * r["best_val_accuracy"] for r in mine], s=22,
                   color=colour, label=f"VGG-{depth} variants", alpha=0.85)
        refs = [r for r in rows if r["depth"] == depth and r["mean"] is None]
        if refs:
            ax.scatter([r["early_fraction"] for r in refs], [100 * r["best_val_accuracy"] for r in refs], s=140,
                       marker="*", color=colour, edgecolor="black", label=f"VGG-{depth} reference")
    ax.set_xlabel("fraction of conv features in the first half of the layers")
    ax.set_ylabel("best validation accuracy (%)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Where the features sit vs accuracy (same total feature count)", fontsize=9)
    save_figure(fig, run.file("feature_amounts.png"))


def table_figure(run, rows: list[dict]) -> None:
    """A PNG table of every trained variant, best first."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    ordered = sorted(rows, key=lambda r: -r["best_val_accuracy"])
    header = ["id", "widths", "params", "early", "best val %", "epoch", "train %", "micro"]
    cells = [[r["id"], r["widths"], f"{r['parameters']:,}", f"{r['early_fraction']:.2f}",
              f"{100 * r['best_val_accuracy']:.2f}", str(r["best_epoch"]), f"{100 * r['train_accuracy_at_best']:.1f}",
              str(r["micro_batch"])] for r in ordered]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.22 * (len(cells) + 1)))
    ax.set_axis_off()
    table = ax.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    save_figure(fig, run.file("variants_table.png"))
