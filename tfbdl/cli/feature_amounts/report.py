"""``summary.md`` of a finished feature-amounts sweep: the settings, one table row per variant and,
per depth, the rank correlation of where the features sit with the best validation accuracy."""

from __future__ import annotations

import numpy as np

from tfbdl.cli.common import run_data_line
from tfbdl.cli.feature_amounts.presets import Preset

__all__ = ["FAMILY_TEXT", "spearman", "sweep_summary"]

FAMILY_TEXT = {
    "release": "the skew-normal profile spans the conv and the two hidden dense layers, about the reference's "
               "total features",
    "conv-only": "the skew-normal profile spans the conv layers, the reference's total conv features exactly, "
                 "dense layers as the reference",
}


def spearman(a, b) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (0 where it is undefined, e.g. ties only)."""
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else 0.0


def sweep_summary(run, preset: Preset, rows: list[dict], n_train: int, n_val: int) -> str:
    """The summary text of a sweep whose ``rows`` are its variants' :func:`~.training.result_row` s."""
    from tfbdl.nn.feature_amounts import parse_variant_id

    depths = sorted({r["depth"] for r in rows})
    families = sorted({parse_variant_id(r["id"])[4] for r in rows if r["mean"] is not None}) or [preset.family]
    family = "; ".join(f"{f} family: {FAMILY_TEXT[f]}" for f in families)
    lines = [f"{len(rows)} VGG variants (depths {', '.join(map(str, depths))}, {family}; widths "
             f"x{preset.width_scale:g}) trained {preset.epochs} "
             f"epoch(s) on {n_train} images, SGD momentum {preset.momentum}, SGDR lr {preset.lr:g} → "
             f"{preset.lr_min:g} (T_0 {preset.wr_epochs:g}, T_mult {preset.wr_mul:g}), batch {preset.batch_size}, "
             f"{preset.init} init{', GCN' if preset.gcn else ''}; validation on {n_val} test images.", "",
             "| variant | widths (conv, then the 2 hidden dense) | early share | best val acc | final train acc "
             "| micro-batch |",
             "|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["depth"], r["early_fraction"])):
        lines.append(f"| {r['id']} | {r['widths']} | {r['early_fraction']:.2f} | "
                     f"{100 * r['best_val_accuracy']:.2f}% | {100 * r['final_train_accuracy']:.2f}% | "
                     f"{r['micro_batch']} |")
    for depth in depths:
        mine = [r for r in rows if r["depth"] == depth and r["mean"] is not None]
        if len(mine) >= 3:
            rho = spearman([r["early_fraction"] for r in mine], [r["best_val_accuracy"] for r in mine])
            lines += ["", f"VGG-{depth}: Spearman correlation of the early share with best validation accuracy "
                          f"{rho:+.2f} over {len(mine)} variants."]
    lines += ["", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"
