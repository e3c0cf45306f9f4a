"""The Markdown summaries of ``tfbdl linearized``: every number is computed from what was measured.

One ``*_summary`` per part (written to the part's ``summary.md``) and :func:`pipeline_summary`
for ``linearized run``; the tables and findings are shared between the two.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.common import data_line
from tfbdl.cli.linearized.networks import net_from_attrs
from tfbdl.cli.linearized.presets import (
    HALVES_THRESHOLD, Cifar2Preset, NADPreset, NADTasksPreset, Net, NTKPreset, PretrainedPreset, Presets, TasksPreset,
    Training, ordered)

__all__ = ["cifar2_summary", "nad_tasks_findings", "nad_tasks_summary", "nad_tasks_table", "nads_summary",
           "ntk_summary", "pipeline_summary", "pretrained_summary", "tasks_findings", "tasks_summary", "tasks_table"]


def _net_text(net: Net) -> str:
    """The network in words."""
    name = "the reference's LeNet" if net.model == "lenet" else "ResNet18"
    return f"{name} (widths {', '.join(map(str, net.widths))}, {net.activation}, one output logit)"


def _training_text(training: Training) -> str:
    """The training settings in words."""
    return (f"{training.epochs} epochs, SGD momentum {training.momentum:g}, lr {training.lr:g} decayed linearly to 0, "
            f"batch {training.batch_size}")


def _pct(value: float) -> str:
    """``0.873`` -> ``87.3%``."""
    return f"{100 * value:.1f}%"


def ntk_summary(preset: NTKPreset, metrics: dict) -> str:
    """The summary of ``compute-ntk``."""
    head = ", ".join(f"{v:.3g}" for v in metrics["eigenvalues_head"][:6])
    return (f"Empirical NTK at initialisation of {_net_text(preset.net)}, {metrics['num_params']:,} parameters, on "
            f"{metrics['n_train']} training + {metrics['n_test']} test images ({metrics['input_shape']}): computed in "
            f"{metrics['seconds']:.1f} s (strategy {metrics['strategy']}). {metrics['num_eigvecs']} eigenpairs kept; "
            f"largest eigenvalues {head}; smallest {metrics['eigenvalue_min']:.3g} "
            f"({metrics['negative_eigenvalues']} below 0 from rounding). `ntk_spectrum.png`: the spectrum; "
            f"`eigen.h5`: eigenvalues, eigenvectors, initial weights and inputs.\n\nData: {metrics['data']}.\n")

def _trend(rows: list[dict], key: str) -> str:
    """``a% at k=.. → b% at k=..`` and the mean over the first and second half of the indices."""
    first, last = rows[0], rows[-1]
    text = f"{_pct(first[key])} at k={first['label_idx']} → {_pct(last[key])} at k={last['label_idx']}"
    if len(rows) >= 4:
        half = len(rows) // 2
        top = np.mean([r[key] for r in rows[:half]])
        bottom = np.mean([r[key] for r in rows[half:]])
        text += f" (mean {_pct(top)} on the top {half} indices, {_pct(bottom)} on the other {len(rows) - half})"
    return text


def tasks_table(rows: list[dict]) -> list[str]:
    """The eigenfunction tasks as Markdown table lines."""
    lines = ["| k | λ_k | labels +1 | linear test acc | non-linear test acc | alignment init → trained |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label_idx']} | {r['eigenvalue']:.3g} | {_pct(r['positive_fraction'])} | "
                     f"{_pct(r['linear_test_accuracy'])} | {_pct(r['nonlinear_test_accuracy'])} | "
                     f"{r['alignment_init']:.3g} → {r['alignment_final']:.3g} |")
    return lines


def tasks_findings(rows: list[dict]) -> list[str]:
    """What the measured numbers say about the paper's claims, computed, not assumed."""
    better = sum(r["nonlinear_test_accuracy"] > r["linear_test_accuracy"] for r in rows)
    worse = sum(r["nonlinear_test_accuracy"] < r["linear_test_accuracy"] for r in rows)
    rose = sum(r["alignment_final"] > r["alignment_init"] for r in rows)
    diff = max(r["init_max_abs_logit_difference"] for r in rows)
    return [f"- Linearized network: {_trend(rows, 'linear_test_accuracy')}.",
            f"- Non-linear network: {_trend(rows, 'nonlinear_test_accuracy')}.",
            f"- The non-linear network beats its linearization on {better} of {len(rows)} tasks and loses on {worse}.",
            f"- Training raised the alignment of the network's NTK with the labels on {rose} of {len(rows)} tasks.",
            f"- At initialisation both predict the same (largest logit difference on the test images {diff:.2g})."]


def tasks_summary(preset: TasksPreset, metrics: dict) -> str:
    """The summary of ``train-ntk``."""
    lines = [f"Binary tasks sign(φ_k(x)) from the eigenvectors of the NTK at initialisation, learnt by "
             f"{_net_text(net_from_attrs(metrics))} and by its "
             f"linearization from the same initial weights ({_training_text(preset.training)}; "
             f"{metrics['n_train']} training / {metrics['n_test']} test images). `eigenfunction_accuracy.png`, "
             "`ntk_alignment.png`.", ""]
    lines += tasks_table(metrics["tasks"]) + [""] + tasks_findings(metrics["tasks"])
    return "\n".join(lines) + "\n"


def nads_summary(preset: NADPreset, metrics: dict) -> str:
    """The summary of ``compute-nads``."""
    head = ", ".join(f"{v:.3g}" for v in metrics["eigenvalues_head"][:5])
    low = ", ".join(f"{v:.2f}" for v in metrics["low_frequency_energy"])
    point = "x0 = 0" if preset.eval_std == 0 else f"x0 ~ {preset.eval_std:g} N(0, I)"
    return (f"NADs of {_net_text(preset.net)} on {preset.side}x{preset.side} grey images ({metrics['num_params']:,} "
            f"parameters): eigenvectors of the mixed-derivative Gram matrix at {point}, averaged over "
            f"{preset.num_inits} initialisation(s), in {metrics['seconds']:.1f} s. Largest eigenvalues {head}. "
            f"`nads.png`: the first {len(metrics['low_frequency_energy'])} NADs and their spectra (fraction of energy "
            f"in the central, low-frequency quarter: {low}); `nad_spectrum.png`.\n")


def nad_tasks_table(rows: list[dict]) -> list[str]:
    """The NAD tasks as Markdown table lines."""
    lines = ["| NAD index | eigenvalue | linear test acc | non-linear test acc |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['nad_idx']} | {r['eigenvalue']:.3g} | {_pct(r['linear_test_accuracy'])} | "
              f"{_pct(r['nonlinear_test_accuracy'])} |" for r in rows]
    return lines


def nad_tasks_findings(rows: list[dict]) -> list[str]:
    """The measured trends of the NAD tasks."""
    indexed = [dict(r, label_idx=r["nad_idx"]) for r in rows]
    better = sum(r["nonlinear_test_accuracy"] > r["linear_test_accuracy"] for r in rows)
    worse = sum(r["nonlinear_test_accuracy"] < r["linear_test_accuracy"] for r in rows)
    return [f"- Linearized network: {_trend(indexed, 'linear_test_accuracy')}.",
            f"- Non-linear network: {_trend(indexed, 'nonlinear_test_accuracy')}.",
            f"- The non-linear network beats its linearization on {better} of {len(rows)} NAD tasks and loses on "
            f"{worse}."]


def nad_tasks_summary(preset: NADTasksPreset, metrics: dict) -> str:
    """The summary of ``train-nads``."""
    lines = [f"Linearly separable datasets along single NADs (margin ε = {preset.epsilon:g}, noise σ = "
             f"{preset.noise_std:g} orthogonal to the NAD; {preset.n_train} training / {preset.n_test} test "
             f"images), learnt by the network and its linearization ({_training_text(preset.training)}). "
             "`nad_accuracy.png`.", ""]
    lines += nad_tasks_table(metrics["tasks"]) + [""] + nad_tasks_findings(metrics["tasks"])
    return "\n".join(lines) + "\n"


def pretrained_summary(preset: PretrainedPreset, metrics: dict) -> str:
    """The summary of ``pretrained-ntk-comparison``."""
    curves = ordered(metrics["curves"])
    sources = {"task": "the eigenfunction task itself (the reference)",
               "classes": f"the images' classes (0-{HALVES_THRESHOLD} vs the rest)"}
    lines = [f"Eigenfunction task k = {metrics['label_idx']} (λ_k = {metrics['eigenvalue']:.3g}): linearizations "
             "without offset (zero at their expansion point) trained with "
             f"{_training_text(preset.training)}, expanded at initialisation or after "
             f"{preset.pretrain_epochs} epochs of non-linear training on "
             + " / ".join(sources[s] for s in preset.pretrain_on) + ". `pretrained_ntk_comparison.png`.", "",
             "| model | test acc after 1 epoch | after half | final |", "|---|---:|---:|---:|"]
    for name, values in curves.items():
        lines.append(f"| {name} | {_pct(values[1])} | {_pct(values[len(values) // 2])} | {_pct(values[-1])} |")
    reached = metrics["pretrained_test_accuracy"]
    if "classes" in reached:
        lines += ["", f"The network pre-trained on the classes reached {_pct(reached['classes'])} test accuracy "
                      "on them."]
    return "\n".join(lines) + "\n"


def cifar2_summary(preset: Cifar2Preset, metrics: dict) -> str:
    """The summary of ``train-cifar2``."""
    task = (f"classes {preset.pair[0]} vs {preset.pair[1]}" if preset.pair is not None
            else f"classes 0-{HALVES_THRESHOLD} vs {HALVES_THRESHOLD + 1}-9 (the reference's CIFAR2)")
    lines = [f"Binary task, {task}: {metrics['n_train']} training / {metrics['n_test']} test images, "
             f"{_net_text(preset.net)} and its linearization from the same initial weights "
             f"({_training_text(preset.training)}). `cifar2_curves.png`.", "",
             "| model | train acc | test acc | ‖θ − θ0‖ |", "|---|---:|---:|---:|"]
    for name, label in (("linear", "linearized"), ("nonlinear", "non-linear")):
        m = metrics[name]
        lines.append(f"| {label} | {_pct(m['train_accuracy'])} | {_pct(m['test_accuracy'])} | "
                     f"{m['distance_to_init']:.3g} |")
    lines += ["", f"Data: {metrics['data']}."]
    return "\n".join(lines) + "\n"


def pipeline_summary(presets: Presets, metrics: dict, provenance: list[dict]) -> str:
    """The run's summary.md: every part's numbers, computed from what was measured."""
    ntk, tasks = metrics["compute-ntk"], metrics["train-ntk"]
    lines = ["Linearized networks vs the networks themselves: NTK eigenfunctions, NADs, linear vs non-linear "
             "training. Parts: `compute-ntk/`, `train-ntk/`, `compute-nads/`, `train-nads/`, "
             "`pretrained-ntk-comparison/`, `train-cifar2/`.", "",
             "**NTK spectrum** (`ntk_spectrum.png`). " + ntk_summary(presets.ntk, ntk).split("\n\n")[0], "",
             f"**Eigenfunction tasks** (`eigenfunction_accuracy.png`, `ntk_alignment.png`; "
             f"{_training_text(presets.tasks.training)}, the same initial weights and data order for both):", ""]
    lines += tasks_table(tasks["tasks"]) + [""] + tasks_findings(tasks["tasks"])
    lines += ["", "**NADs** (`nads.png`, `nad_spectrum.png`). "
              + nads_summary(presets.nads, metrics["compute-nads"]).strip(), "",
              f"**NAD tasks** (`nad_accuracy.png`; {presets.nad_tasks.n_train} training / {presets.nad_tasks.n_test} "
              f"test images, {_training_text(presets.nad_tasks.training)}):", ""]
    lines += nad_tasks_table(metrics["train-nads"]["tasks"]) + [""] + nad_tasks_findings(metrics["train-nads"]["tasks"])
    pre = metrics["pretrained-ntk-comparison"]
    lines += ["", "**Pretrained NTK comparison** (`pretrained_ntk_comparison.png`). "
              + pretrained_summary(presets.pretrained, pre).strip(), ""]
    cifar2 = metrics["train-cifar2"]
    lines += [f"**CIFAR2** (`cifar2_curves.png`; {cifar2['n_train']} training / {cifar2['n_test']} test images): "
              f"test accuracy linearized {_pct(cifar2['linear']['test_accuracy'])}, non-linear "
              f"{_pct(cifar2['nonlinear']['test_accuracy'])} (train {_pct(cifar2['linear']['train_accuracy'])} / "
              f"{_pct(cifar2['nonlinear']['train_accuracy'])}).", "", f"Data: {data_line(provenance)}."]
    return "\n".join(lines) + "\n"
