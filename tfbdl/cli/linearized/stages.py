"""The resumable parts of ``tfbdl linearized``, each writing one run directory (``run``):
``compute-ntk``, ``train-ntk`` (one sub-run per eigenfunction task), ``compute-nads``,
``train-nads`` (one sub-run per NAD task), ``pretrained-ntk-comparison`` and ``train-cifar2``.

Each stage reads its inputs (data, or the folder of an earlier stage), trains or computes, writes
``metrics.json``, its figures and its summary, and finishes the run; a finished sub-run is read
back instead of recomputed.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import click
import numpy as np

from tfbdl.cli.common import data_line
from tfbdl.cli.linearized.data import halves, load_subset
from tfbdl.cli.linearized.figures import (
    alignment_figure, cifar2_figure, eigenfunction_figure, nad_accuracy_figure, nad_spectrum_figure, nads_figure,
    pretrained_figure, spectrum_figure)
from tfbdl.cli.linearized.networks import (
    accuracy_of, build_net, curve, fit_binary, logits, net_at, net_from_attrs, train_both)
from tfbdl.cli.linearized.presets import (
    CURVE_NAMES, NONLINEAR_CURVE, Cifar2Preset, NADPreset, NADTasksPreset, Net, NTKPreset, PretrainedPreset,
    TasksPreset, check_indices, ordered)
from tfbdl.cli.linearized.report import (
    cifar2_summary, nad_tasks_summary, nads_summary, ntk_summary, pretrained_summary, tasks_summary)
from tfbdl.cli.linearized.rundirs import read_json, stored_strategy

__all__ = ["final_alignment", "init_gram", "load_eigen_inputs", "stage_cifar2", "stage_compute_nads",
           "stage_compute_ntk", "stage_pretrained", "stage_train_nads", "stage_train_ntk", "task_row",
           "train_eigen_task", "train_nad_task"]


# --------------------------------------------------------------------------- compute-ntk


def stage_compute_ntk(run, preset: NTKPreset, *, scale: str, data_dir, seed: int) -> dict:
    """The NTK at initialisation on the subset, its eigendecomposition and the spectrum figure, in ``run``."""
    from tfbdl.io import atomic_path
    from tfbdl.ntk.eigen import ntk_eigendecomposition, save_eigen
    from tfbdl.ntk.empirical import compute_ntk

    x_train, c_train, x_test, c_test, provenance = load_subset(preset.dataset, preset.n_train, preset.n_test,
                                                               scale=scale, data_dir=data_dir, seed=seed)
    run.record_data(provenance)
    x = np.concatenate([x_train, x_test])
    net = build_net(preset.net, x.shape[1:], seed)
    click.echo(f"NTK of {net.count_params():,} parameters on {len(x)} images", err=True)
    began = time.perf_counter()
    gram = compute_ntk(net, x, block_size=min(preset.block_size, len(x)), strategy=preset.strategy,
                       path=run.file("ntk.h5"))
    seconds = time.perf_counter() - began
    values, vectors = ntk_eigendecomposition(gram, k=preset.num_eigvecs)
    strategy = stored_strategy(run.file("ntk.h5"))
    attrs = {"n_train": int(len(x_train)), "n_test": int(len(x_test)), "net": dataclasses.asdict(preset.net),
             "dataset": preset.dataset, "seed": seed, "block_size": min(preset.block_size, len(x)),
             "strategy": strategy}
    save_eigen(run.file("eigen.h5"), values, vectors, weights=net, inputs=x, attrs=attrs)
    with atomic_path(run.file("classes.npz")) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, train=c_train, test=c_test)
    metrics = {"n_train": len(x_train), "n_test": len(x_test), "input_shape": list(x.shape[1:]),
               "num_params": int(net.count_params()), "seconds": round(seconds, 2),
               "strategy": strategy, "num_eigvecs": int(values.size),
               "eigenvalues_head": [float(v) for v in values[:20]], "eigenvalue_min": float(values[-1]),
               "negative_eigenvalues": int(np.sum(values < 0)), "trace": float(np.trace(gram)),
               "data": data_line(provenance)}
    run.write_metrics(metrics)
    spectrum_figure(run.file("ntk_spectrum.png"), values, preset)
    run.finish(ntk_summary(preset, metrics))
    return metrics


# --------------------------------------------------------------------------- train-ntk


def load_eigen_inputs(folder: pathlib.Path):
    """``(eigen, n_train, net, gram_path)`` of a finished compute-ntk folder."""
    from tfbdl.ntk.eigen import load_eigen

    eig = load_eigen(folder / "eigen.h5")
    return eig, int(eig.attrs["n_train"]), net_from_attrs(eig.attrs), folder / "ntk.h5"


def init_gram(path: pathlib.Path, n: int) -> np.ndarray:
    """The top-left ``[n, n]`` of the stored NTK Gram matrix (blocks below the diagonal mirrored)."""
    import h5py

    with h5py.File(path, "r") as f:
        gram = np.asarray(f["ntk"][:n, :n], np.float64)
    return np.where(np.isnan(gram), gram.T, gram)


def final_alignment(task_run, net, x: np.ndarray, signs: np.ndarray, gram0: np.ndarray, eigvecs, *,
                    block_size: int, strategy: str) -> dict:
    """Alignment of the trained network's NTK (and of the initial one) with the task's ±1 labels on the
    first ``len(gram0)`` images, and the reference's energies ``v_j^T Θ_end v_j`` along the initial
    eigenvectors when those images are all of them (:func:`tfbdl.ntk.spectral.alignment_change`).
    Cached in ``alignment.json``."""
    from tfbdl.ntk.empirical import compute_ntk
    from tfbdl.ntk.spectral import alignment_change

    cached = task_run.path / "alignment.json"
    if cached.is_file():
        return read_json(cached)
    n = len(gram0)
    if strategy == "auto":
        strategy = "vmap_jacobian"
    gram = compute_ntk(net, x[:n], block_size=min(block_size, n), strategy=strategy)
    result = alignment_change(gram0, gram, signs, eigvecs)
    task_run.write_json("alignment.json", result)
    return result


def train_eigen_task(task_run, k: int, eig, n_train: int, net_spec: Net, gram0: np.ndarray, preset: TasksPreset,
                     *, seed: int, block_size: int, strategy: str) -> dict:
    """Task ``k``: labels ``sign(phi_k)``, the network and its linearization trained from the
    initial weights, the final NTK's alignment; written to ``task_run``."""
    from tfbdl.io import atomic_path
    from tfbdl.ntk.eigen import binary_labels, eigenfunction_labels

    signs = eigenfunction_labels(eig.eigenvectors, k)
    y = binary_labels(signs)
    x = eig.inputs
    with atomic_path(task_run.file("labels.npz")) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, train=y[:n_train], test=y[n_train:])
    net = net_at(net_spec, x.shape[1:], eig.weights)
    result = train_both(task_run, net, (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), preset.training,
                        seed=seed, label=f"eigenfunction {k}")
    align = final_alignment(task_run, result.pop("trained_net"), x, signs, gram0, eig.eigenvectors,
                            block_size=block_size, strategy=strategy)
    metrics = {"label_idx": k, "eigenvalue": float(eig.eigenvalues[k]), "positive_fraction": float(y.mean()),
               **result, "alignment": align}
    task_run.write_metrics(metrics)
    task_run.finish()
    return metrics


def stage_train_ntk(run, preset: TasksPreset, eigen_dir: pathlib.Path, *, seed: int) -> dict:
    """Every eigenfunction task of ``preset`` in ``run/tasks/k-NNNNN/`` (each resumable), the figures
    and the summary of ``run``."""
    from tfbdl.io import RunDir

    eig, n_train, net_spec, gram_path = load_eigen_inputs(eigen_dir)
    indices = check_indices(preset.label_indices, eig.eigenvalues.size, "--label-idx", "eigenvectors")
    n = len(eig.inputs)
    gram0 = init_gram(gram_path, min(preset.align_points or n, n))
    tasks = []
    for k in indices:
        task_run = RunDir.open(run.path, "tasks", f"k-{k:05d}", {**run.config, "label_idx": k})
        if task_run.is_complete:
            tasks.append(read_json(task_run.file("metrics.json")))
            continue
        tasks.append(train_eigen_task(task_run, k, eig, n_train, net_spec, gram0, preset, seed=seed,
                                      block_size=int(eig.attrs["block_size"]), strategy=str(eig.attrs["strategy"])))
    metrics = {"n_train": n_train, "n_test": n - n_train, "net": dataclasses.asdict(net_spec),
               "tasks": [task_row(t) for t in tasks]}
    run.write_metrics(metrics)
    eigenfunction_figure(run.file("eigenfunction_accuracy.png"), metrics["tasks"])
    alignment_figure(run.file("ntk_alignment.png"), tasks, eig.eigenvalues)
    run.finish(tasks_summary(preset, metrics))
    return metrics


def task_row(task: dict) -> dict:
    """The numbers of one eigenfunction task that the summary and figures use."""
    return {"label_idx": task["label_idx"], "eigenvalue": task["eigenvalue"],
            "positive_fraction": task["positive_fraction"],
            "linear_test_accuracy": task["linear"]["test_accuracy"],
            "nonlinear_test_accuracy": task["nonlinear"]["test_accuracy"],
            "linear_train_accuracy": task["linear"]["train_accuracy"],
            "nonlinear_train_accuracy": task["nonlinear"]["train_accuracy"],
            "init_max_abs_logit_difference": task["init"]["max_abs_logit_difference"],
            "alignment_init": task["alignment"]["init"], "alignment_final": task["alignment"]["final"],
            "linear_distance_to_init": task["linear"]["distance_to_init"],
            "nonlinear_distance_to_init": task["nonlinear"]["distance_to_init"]}


# --------------------------------------------------------------------------- compute-nads


def stage_compute_nads(run, preset: NADPreset, *, seed: int) -> dict:
    """The NADs of ``preset.net`` on ``side x side`` grey images and their figures, in ``run``."""
    from tfbdl.ntk.eigen import save_eigen
    from tfbdl.ntk.nads import compute_nads
    from tfbdl.ntk.spectral import low_frequency_energy

    shape = (preset.side, preset.side, 1)
    built = []

    def factory(init_seed):
        model = build_net(preset.net, shape, init_seed)
        built.append(model)
        return model

    began = time.perf_counter()
    values, nads = compute_nads(factory, shape, num_inits=preset.num_inits, seed=seed, eval_std=preset.eval_std,
                                block_size=preset.block_size, return_eigenvalues=True)
    seconds = time.perf_counter() - began
    d = int(np.prod(shape))
    save_eigen(run.file("nads.h5"), values, nads.reshape(d, d).T, weights=built[0],
               attrs={"input_shape": list(shape), "net": dataclasses.asdict(preset.net), "seed": seed,
                      "num_inits": preset.num_inits, "eval_std": preset.eval_std})
    nads_figure(run.file("nads.png"), nads, preset.shown)
    nad_spectrum_figure(run.file("nad_spectrum.png"), values)
    metrics = {"input_shape": list(shape), "num_params": int(built[0].count_params()), "seconds": round(seconds, 2),
               "eigenvalues_head": [float(v) for v in values[:20]], "eigenvalue_min": float(values[-1]),
               "low_frequency_energy": [float(v) for v in low_frequency_energy(nads[:preset.shown])]}
    run.write_metrics(metrics)
    run.finish(nads_summary(preset, metrics))
    return metrics


# --------------------------------------------------------------------------- train-nads


def stage_train_nads(run, preset: NADTasksPreset, nads_dir: pathlib.Path, *, seed: int) -> dict:
    """Linear vs non-linear training on the linearly separable dataset of every NAD index, in
    ``run/tasks/nad-NNNNN/`` (each resumable), the accuracy figure and the summary."""
    from tfbdl.io import RunDir
    from tfbdl.ntk.eigen import load_eigen

    stored = load_eigen(nads_dir / "nads.h5")
    shape = tuple(int(d) for d in stored.attrs["input_shape"])
    indices = check_indices(preset.nad_indices, stored.eigenvalues.size, "--nad-idx", "NADs")
    net_spec = net_from_attrs(stored.attrs)
    tasks = []
    for i in indices:
        task_run = RunDir.open(run.path, "tasks", f"nad-{i:05d}", {**run.config, "nad_idx": i})
        if not task_run.is_complete:
            train_nad_task(task_run, i, stored, shape, net_spec, preset, seed=seed)
        tasks.append(read_json(task_run.file("metrics.json")))
    rows = [{"nad_idx": t["nad_idx"], "eigenvalue": t["eigenvalue"],
             "linear_test_accuracy": t["linear"]["test_accuracy"],
             "nonlinear_test_accuracy": t["nonlinear"]["test_accuracy"],
             "init_max_abs_logit_difference": t["init"]["max_abs_logit_difference"]} for t in tasks]
    metrics = {"n_train": preset.n_train, "n_test": preset.n_test, "net": dataclasses.asdict(net_spec), "tasks": rows}
    run.write_metrics(metrics)
    nad_accuracy_figure(run.file("nad_accuracy.png"), rows)
    run.finish(nad_tasks_summary(preset, metrics))
    return metrics


def train_nad_task(task_run, i: int, stored, shape, net_spec: Net, preset: NADTasksPreset, *, seed: int) -> dict:
    """The dataset separable along NAD ``i`` learnt by the network and its linearization."""
    from tfbdl.ntk.nads import nad_dataset

    direction = stored.eigenvectors[:, i].reshape(shape)
    x, y = nad_dataset(direction, preset.n_train + preset.n_test, epsilon=preset.epsilon,
                       noise_std=preset.noise_std, seed=seed)
    net = net_at(net_spec, shape, stored.weights)
    n = preset.n_train
    result = train_both(task_run, net, (x[:n], y[:n]), (x[n:], y[n:]), preset.training, seed=seed,
                        label=f"NAD {i}")
    result.pop("trained_net")
    metrics = {"nad_idx": i, "eigenvalue": float(stored.eigenvalues[i]), **result}
    task_run.write_metrics(metrics)
    task_run.finish()
    return metrics


# --------------------------------------------------------------------------- pretrained-ntk-comparison


def stage_pretrained(run, preset: PretrainedPreset, eigen_dir: pathlib.Path, *, seed: int) -> dict:
    """Task ``label_idx``: the network trained on it, the linearization (without offset) at
    initialisation and after each pre-training, their test accuracy per epoch."""
    from tfbdl.ntk.eigen import binary_labels, eigenfunction_labels
    from tfbdl.ntk.linearize import LinearizedModel

    eig, n_train, net_spec, _ = load_eigen_inputs(eigen_dir)
    (k,) = check_indices((preset.label_idx,), eig.eigenvalues.size, "--label-idx", "eigenvectors")
    x = eig.inputs
    y = binary_labels(eigenfunction_labels(eig.eigenvectors, k))
    task = (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
    with np.load(eigen_dir / "classes.npz") as classes:
        by_class = (x[:n_train], halves(classes["train"])), (x[n_train:], halves(classes["test"]))
    pretrain = dataclasses.replace(preset.training, epochs=preset.pretrain_epochs)
    curves, pretrained_accuracy = {}, {}
    zero = accuracy_of(np.zeros(len(task[1][1])), task[1][1])  # a linearization without offset starts at 0
    init_net = net_at(net_spec, x.shape[1:], eig.weights)
    plan = [("linear-init", init_net)]
    for source in preset.pretrain_on:
        data = task if source == "task" else by_class
        net = net_at(net_spec, x.shape[1:], eig.weights)
        z0 = logits(net, data[1][0])
        rows = fit_binary(run, f"pretrain-{source}", net, *data, pretrain, seed=seed, label=f"pre-training on {source}")
        pretrained_accuracy[source] = float(rows[-1]["test_accuracy"])
        if source == "task":
            curves[NONLINEAR_CURVE] = curve(rows, accuracy_of(z0, data[1][1]))
        plan.append((f"linear-{source}", net))
    for name, net in plan:
        rows = fit_binary(run, name, LinearizedModel(net, offset=False), *task, preset.training, seed=seed,
                          label=name)
        curves[CURVE_NAMES[name]] = curve(rows, zero)
    metrics = {"label_idx": k, "eigenvalue": float(eig.eigenvalues[k]), "pretrain_epochs": preset.pretrain_epochs,
               "pretrained_test_accuracy": pretrained_accuracy, "curves": curves,
               "final": {name: c[-1] for name, c in curves.items()}}
    run.write_metrics(metrics)
    pretrained_figure(run.file("pretrained_ntk_comparison.png"), ordered(curves), k)
    run.finish(pretrained_summary(preset, metrics))
    return metrics


# --------------------------------------------------------------------------- train-cifar2


def stage_cifar2(run, preset: Cifar2Preset, *, scale: str, data_dir, seed: int) -> dict:
    """The binary task learnt by the network and its linearization; curves and summary in ``run``."""
    from tfbdl.data.subsets import binary_pair

    x_train, c_train, x_test, c_test, provenance = load_subset(preset.dataset, preset.n_train, preset.n_test,
                                                               scale=scale, data_dir=data_dir, seed=seed,
                                                               pair=preset.pair)
    run.record_data(provenance)
    if preset.pair is None:
        y_train, y_test = halves(c_train), halves(c_test)
    else:
        (_, y_train), (_, y_test) = binary_pair(x_train, c_train, preset.pair), binary_pair(x_test, c_test, preset.pair)
    net = build_net(preset.net, x_train.shape[1:], seed)
    result = train_both(run, net, (x_train, y_train), (x_test, y_test), preset.training, seed=seed, label="CIFAR2")
    result.pop("trained_net")
    metrics = {"n_train": int(y_train.size), "n_test": int(y_test.size), "positive_fraction": float(y_train.mean()),
               "data": data_line(provenance), **result}
    run.write_metrics(metrics)
    cifar2_figure(run.file("cifar2_curves.png"), metrics)
    run.finish(cifar2_summary(preset, metrics))
    return metrics
