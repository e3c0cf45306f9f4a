"""Figures, summaries and the paper-scale time projection of the convnet-gp runs: the registered
experiment (``run``), the hyperparameter search and the learning curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfbdl.cli.common import data_line
from tfbdl.cli.convnet_gp.presets import DATA_FILE, PAPER_ERROR_NOTE, PAPER_N_TRAIN, PAPER_TEST_ERROR, SearchPreset

__all__ = ["curve_figure", "curve_summary", "projection", "run_figures", "run_summary", "search_figure",
           "search_summary"]


def run_figures(run, kernel_file: Path, result: dict) -> None:
    """validation_noise.png (accuracy against the noise tried) and kernel_correlation.png (the
    kernel of the first 300 training images, sorted by class, as correlations)."""
    from tfbdl.kernels.blocks import read_kernels
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    rows = [r for r in result["validation"] if r.get("val_accuracy") is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(4.5, 3))
        noise = [max(r["relative_noise"], 1e-10) for r in rows]
        ax.semilogx(noise, [100 * r["val_accuracy"] for r in rows], marker="o")
        ax.set_xlabel("noise / mean diag(Kxx)  (0 drawn at 1e-10)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("Noise chosen on the validation split", fontsize=9)
        save_figure(fig, run.file("validation_noise.png"))
    with np.load(kernel_file.parent / DATA_FILE) as data:
        y_train = data["y_train"]
    Kxx = read_kernels(kernel_file, names=("Kxx",))["Kxx"]
    first = np.argsort(y_train[:300], kind="stable")
    sub = Kxx[np.ix_(first, first)]
    d = np.sqrt(np.diag(sub))
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    image = ax.imshow(sub / d[:, None] / d[None, :], cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("Kernel correlations, training images sorted by class", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, run.file("kernel_correlation.png"))


def run_summary(run, kernel: str, kind: str, result: dict) -> str:
    """summary.md of a ``run``: the classification result beside the paper's error."""
    config = json.loads(run.file("config.json").read_text())
    used = data_line(config["data"])
    full = config["data"][0]["source"].startswith("full") and config["data"][0]["dataset"] == "mnist"
    size_note = (f"this run fits {result['n_train']:,} training images, so its error is higher"
                 if not (full and result["n_train"] >= 60000) else "this run uses all of them")
    return (
        f"{kernel} ({kind}) kernel, exact GP classification on {result['n_train']} training and "
        f"{result['n_test']} test images.\n\n"
        f"| test error | test accuracy | noise (chosen on validation) | jitter added | classify time |\n"
        f"|---:|---:|---:|---:|---:|\n"
        f"| {100 * result['test_error']:.2f}% | {100 * result['test_accuracy']:.2f}% | {result['noise']:.3g} "
        f"({result['relative_noise']:.2g} x mean diag Kxx) | "
        f"{result['jitter_used']:.3g} | {result['seconds']:.1f} s |\n\n"
        f"Data: {used}. For reference, {PAPER_ERROR_NOTE}; {size_note}.\n"
    )


def search_figure(run, rows) -> None:
    """search.png: validation accuracy of every trial against var_weight, coloured by depth."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = ax.scatter([r["var_weight"] for r in rows], [100 * r["score"] for r in rows],
                        c=[r["depth"] for r in rows], cmap="viridis")
    ax.set_xscale("log")
    ax.set_xlabel("var_weight (per patch element)")
    ax.set_ylabel("validation accuracy (%)")
    fig.colorbar(points, ax=ax, label="depth")
    ax.set_title("Random search over the ConvNet GP family", fontsize=9)
    save_figure(fig, run.file("search.png"))


def search_summary(rows, ml, preset: SearchPreset) -> str:
    """summary.md of a search: the five best trials and the marginal-likelihood gain."""
    lines = [f"Random search over depth and variances of the ConvNet GP, {len(rows)} trials, scored by exact-GP "
             f"accuracy on {preset.n_val} held-out training images ({preset.n_train} to fit).", "",
             "| rank | depth | var_weight | var_bias | validation accuracy |", "|---:|---:|---:|---:|---:|"]
    for rank, row in enumerate(rows[:5], 1):
        lines.append(f"| {rank} | {int(row['depth'])} | {row['var_weight']:.3g} | {row['var_bias']:.3g} | "
                     f"{100 * row['score']:.1f}% |")
    if ml:
        lines += ["", f"Marginal-likelihood optimisation of the best setting on {ml['num_points']} images: "
                      f"log marginal likelihood {ml['lml_before']:.4g} → {ml['lml_after']:.4g}."]
    return "\n".join(lines) + "\n"


def projection(timing: dict, n_test: int, n_train: int = PAPER_N_TRAIN, n_val: int = 10000) -> dict:
    """Hours the paper's kernel matrices (train x train, x validation, x test) would take at the
    entries per second this run measured."""
    rate = timing["entries"] / max(timing["seconds"], 1e-9)
    entries = n_train * (n_train + 1) // 2 + n_train * (n_test + n_val)
    return {"entries_per_second": rate, "paper_entries": entries, "paper_hours": entries / rate / 3600}


def curve_figure(run, kernel: str, rows: list[dict]) -> None:
    """learning_curve.png: both rules' test errors against the training size, with the paper's point."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    n = [r["n_train"] for r in rows]
    ax.loglog(n, [100 * r["test_error_reference_rule"] for r in rows], marker="o", label="ours, reference rule")
    ax.loglog(n, [100 * r["test_error_chosen_noise"] for r in rows], marker="s", ls="--",
              label="ours, noise chosen on validation")
    ax.loglog([PAPER_N_TRAIN], [PAPER_TEST_ERROR[kernel]], marker="*", ms=12, ls="none", color="k",
              label=f"paper ({PAPER_TEST_ERROR[kernel]}% at 50,000)")
    ax.set_xlabel("training images")
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title(f"{kernel}: exact GP, {rows[0]['n_test']:,} test images", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, run.file("learning_curve.png"))


def curve_summary(run, kernel: str, rows: list[dict], timing: dict, n_test: int) -> str:
    """summary.md of a learning curve: one row per size, the paper's point and the time projection."""
    used = data_line(json.loads(run.file("config.json").read_text(encoding="utf-8")).get("data") or [])
    proj = projection(timing, n_test)
    lines = [f"{kernel} learning curve: exact GP classification of {n_test:,} MNIST test images.", "",
             "| training images | test error, reference rule (jitter 0) | test error, noise chosen on validation "
             "| classify time |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['n_train']:,} | {100 * r['test_error_reference_rule']:.2f}% | "
              f"{100 * r['test_error_chosen_noise']:.2f}% | {r['seconds_classify']:.0f} s |" for r in rows]
    lines += ["", f"Paper (Table 1): {PAPER_TEST_ERROR[kernel]}% with {PAPER_N_TRAIN:,} training images.",
              f"Kernel matrices: {timing['entries']:,} entries in {timing['seconds'] / 60:.1f} min this run "
              f"({proj['entries_per_second']:,.0f} entries/s); the paper's 50,000 x (50,000 + 10,000 validation "
              f"+ 10,000 test) would take {proj['paper_hours']:.0f} h at that rate.",
              f"Data: {used}.", ""]
    return "\n".join(lines)
