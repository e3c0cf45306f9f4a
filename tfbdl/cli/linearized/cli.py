"""The ``tfbdl linearized`` Click group and its commands: each resolves its options into a checked
preset, opens its run directory and hands the work to :mod:`tfbdl.cli.linearized.stages` (or to
:mod:`tfbdl.cli.linearized.pipeline` for ``run``)."""

from __future__ import annotations

import dataclasses
import pathlib

import click

from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.linearized.options import (
    label_idx_option, nad_idx_option, nad_options, ntk_options, ntk_run_option, training_options)
from tfbdl.cli.linearized.pipeline import run_pipeline
from tfbdl.cli.linearized.presets import (
    DATASETS, MODELS, PRESETS, PRETRAIN_TASKS, NTKPreset, Presets, check_indices, num_eigenvectors, override,
    override_training, resolve_cifar2, resolve_nads, resolve_ntk)
from tfbdl.cli.linearized.rundirs import eigen_count, finished_run, stage_config, stage_run
from tfbdl.cli.linearized.stages import (
    stage_cifar2, stage_compute_nads, stage_compute_ntk, stage_pretrained, stage_train_nads, stage_train_ntk)
from tfbdl.cli.options import common_run_options

__all__ = ["compute_nads_command", "compute_ntk_command", "linearized", "pretrained_command", "run_command",
           "train_cifar2_command", "train_nads_command", "train_ntk_command"]


@click.group("linearized")
def linearized():
    """What can linearized neural networks actually say about generalization? (Ortiz-Jiménez et al., 2021):
    NTK eigenfunctions, NADs, linear vs non-linear training."""


def _open_command(experiment: str, scale: str, seed: int, out: str, resume: bool, data_dir, **parts):
    """Open the run of a single command; its config holds every resolved preset."""
    config = {"experiment": experiment, "scale": scale, "seed": seed, "data_dir": data_dir,
              **{name: (dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p) for name, p in parts.items()}}
    return open_run(experiment, config, out=out, scale=scale, resume=resume)


def _ntk_folder(run, ntk_run, preset: NTKPreset, *, scale: str, data_dir, seed: int) -> pathlib.Path:
    """The compute-ntk folder a command uses: ``--ntk-run``, or one computed in ``run/compute-ntk/``."""
    if ntk_run is not None:
        return finished_run(ntk_run, "compute-ntk", ("eigen.h5", "ntk.h5", "classes.npz"), "--ntk-run")
    sub = stage_run(run, "compute-ntk", stage_config("compute-ntk", preset, scale=scale, seed=seed, data_dir=data_dir))
    if not sub.is_complete:
        stage_compute_ntk(sub, preset, scale=scale, data_dir=data_dir, seed=seed)
    return sub.path


def _available_eigenvectors(ntk_run, preset: NTKPreset) -> int:
    """How many eigenvectors the tasks can index: those of ``--ntk-run``, or those ``preset`` keeps."""
    if ntk_run is not None:
        return eigen_count(finished_run(ntk_run, "compute-ntk", ("eigen.h5", "ntk.h5", "classes.npz"), "--ntk-run"))
    return num_eigenvectors(preset)


@linearized.command("compute-ntk")
@ntk_options
@common_run_options
def compute_ntk_command(dataset, model, widths, activation, n_train, n_test, block_size, ntk_strategy, num_eigvecs,
                        scale, out, data_dir, seed, resume):
    """NTK Gram matrix of a network at initialisation on a data subset, its eigendecomposition
    (eigen.h5: eigenvalues, eigenvectors, initial weights, inputs) and ntk_spectrum.png."""
    preset = resolve_ntk(scale, dataset, model, widths, activation, n_train, n_test, block_size, ntk_strategy,
                         num_eigvecs)
    run = _open_command("linearized-compute-ntk", scale, seed, out, resume, data_dir, ntk=preset)
    if not run.is_complete:
        stage_compute_ntk(run, preset, scale=scale, data_dir=data_dir, seed=seed)
    record_run(run)
    click.echo(f"linearized compute-ntk run written to {run.path}")


@linearized.command("train-ntk")
@label_idx_option
@ntk_run_option
@training_options
@ntk_options
@common_run_options
def train_ntk_command(label_indices, ntk_run, epochs, lr, batch_size, dataset, model, widths, activation, n_train,
                      n_test, block_size, ntk_strategy, num_eigvecs, scale, out, data_dir, seed, resume):
    """Binary tasks sign(φ_k) from NTK eigenvectors: the network and its linearization trained from the
    same weights; test accuracy and final-NTK alignment against k."""
    ntk = resolve_ntk(scale, dataset, model, widths, activation, n_train, n_test, block_size, ntk_strategy,
                      num_eigvecs)
    base = PRESETS[scale].tasks
    preset = dataclasses.replace(base, label_indices=tuple(label_indices) or base.label_indices,
                                 training=override_training(base.training, epochs, lr, batch_size))
    check_indices(preset.label_indices, _available_eigenvectors(ntk_run, ntk), "--label-idx", "eigenvectors")
    source = {"ntk_run": str(pathlib.Path(ntk_run).resolve())} if ntk_run else {"ntk": ntk}
    run = _open_command("linearized-train-ntk", scale, seed, out, resume, data_dir, tasks=preset, **source)
    if not run.is_complete:
        folder = _ntk_folder(run, ntk_run, ntk, scale=scale, data_dir=data_dir, seed=seed)
        stage_train_ntk(run, preset, folder, seed=seed)
    record_run(run)
    click.echo(f"linearized train-ntk run written to {run.path}")


@linearized.command("compute-nads")
@nad_options
@common_run_options
def compute_nads_command(side, activation, widths, num_inits, eval_std, scale, out, data_dir, seed, resume):
    """NADs of a LeNet at initialisation (nads.h5), the first NADs as images with their spectra
    (nads.png) and the NAD eigenvalues (nad_spectrum.png)."""
    preset = resolve_nads(scale, side, activation, widths, num_inits, eval_std)
    run = _open_command("linearized-compute-nads", scale, seed, out, resume, data_dir, nads=preset)
    if not run.is_complete:
        stage_compute_nads(run, preset, seed=seed)
    record_run(run)
    click.echo(f"linearized compute-nads run written to {run.path}")


@linearized.command("train-nads")
@nad_idx_option
@click.option("--nads-run", type=click.Path(exists=True, file_okay=False), default=None,
              help="A finished `linearized compute-nads` run (or `linearized run` folder) to use instead of "
                   "computing the NADs.")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="Training examples (paper 10,000).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Test examples (paper 10,000).")
@training_options
@nad_options
@common_run_options
def train_nads_command(nad_indices, nads_run, n_train, n_test, epochs, lr, batch_size, side, activation, widths,
                       num_inits, eval_std, scale, out, data_dir, seed, resume):
    """Linearly separable datasets along single NADs: the network and its linearization trained from the
    same weights; test accuracy against the NAD index (nad_accuracy.png)."""
    nads = resolve_nads(scale, side, activation, widths, num_inits, eval_std)
    base = PRESETS[scale].nad_tasks
    preset = override(base, nad_indices=tuple(nad_indices) or None, n_train=n_train, n_test=n_test,
                      training=override_training(base.training, epochs, lr, batch_size))
    if nads_run is not None:
        folder = finished_run(nads_run, "compute-nads", ("nads.h5",), "--nads-run")
        available = eigen_count(folder, "nads.h5")
    else:
        available = nads.side * nads.side
    check_indices(preset.nad_indices, available, "--nad-idx", "NADs")
    source = {"nads_run": str(pathlib.Path(nads_run).resolve())} if nads_run else {"nads": nads}
    run = _open_command("linearized-train-nads", scale, seed, out, resume, data_dir, nad_tasks=preset, **source)
    if not run.is_complete:
        if nads_run is None:
            sub = stage_run(run, "compute-nads", stage_config("compute-nads", nads, scale=scale, seed=seed))
            if not sub.is_complete:
                stage_compute_nads(sub, nads, seed=seed)
            folder = sub.path
        stage_train_nads(run, preset, folder, seed=seed)
    record_run(run)
    click.echo(f"linearized train-nads run written to {run.path}")


@linearized.command("pretrained-ntk-comparison")
@click.option("--label-idx", type=click.IntRange(min=0), default=None,
              help="Eigenfunction index of the task (default 10, the reference's; tiny 1).")
@click.option("--pretrain-on", type=click.Choice(PRETRAIN_TASKS), multiple=True,
              help="What the network is pre-trained on before it is linearized: the task itself (the reference) "
                   "or the images' classes (0-4 vs 5-9); repeat for both (default: both).")
@click.option("--pretrain-epochs", type=click.IntRange(min=1), default=None,
              help="Epochs of non-linear pre-training (default: scale preset; paper 100).")
@ntk_run_option
@training_options
@ntk_options
@common_run_options
def pretrained_command(label_idx, pretrain_on, pretrain_epochs, ntk_run, epochs, lr, batch_size, dataset, model,
                       widths, activation, n_train, n_test, block_size, ntk_strategy, num_eigvecs, scale, out,
                       data_dir, seed, resume):
    """Test accuracy per epoch on one eigenfunction task of the linearization at initialisation vs the
    linearization after non-linear pre-training (pretrained_ntk_comparison.png)."""
    ntk = resolve_ntk(scale, dataset, model, widths, activation, n_train, n_test, block_size, ntk_strategy,
                      num_eigvecs)
    base = PRESETS[scale].pretrained
    preset = override(base, label_idx=label_idx, pretrain_on=tuple(dict.fromkeys(pretrain_on)) or None,
                      pretrain_epochs=pretrain_epochs,
                      training=override_training(base.training, epochs, lr, batch_size))
    check_indices((preset.label_idx,), _available_eigenvectors(ntk_run, ntk), "--label-idx", "eigenvectors")
    source = {"ntk_run": str(pathlib.Path(ntk_run).resolve())} if ntk_run else {"ntk": ntk}
    run = _open_command("linearized-pretrained-ntk-comparison", scale, seed, out, resume, data_dir, pretrained=preset,
                        **source)
    if not run.is_complete:
        folder = _ntk_folder(run, ntk_run, ntk, scale=scale, data_dir=data_dir, seed=seed)
        stage_pretrained(run, preset, folder, seed=seed)
    record_run(run)
    click.echo(f"linearized pretrained-ntk-comparison run written to {run.path}")


@linearized.command("train-cifar2")
@click.option("--pair", type=click.IntRange(0, 9), nargs=2, default=None,
              help="Two CIFAR-10 classes A B (A is 0, B is 1); default: classes 0-4 vs 5-9, the reference's.")
@click.option("--model", type=click.Choice(MODELS), default=None, help="lenet (default) or resnet18.")
@click.option("--widths", default=None, help="Comma-separated widths (default: 6,16,120,84 for the lenet).")
@click.option("--n-train", type=click.IntRange(min=2), default=None, help="Training images (paper 50,000).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Test images (paper 10,000).")
@training_options
@common_run_options
def train_cifar2_command(pair, model, widths, n_train, n_test, epochs, lr, batch_size, scale, out, data_dir, seed,
                         resume):
    """A binary CIFAR-10 task (a two-class Fashion-MNIST task stands in at tiny/smoke when CIFAR-10 is
    absent): the network and its linearization, training curves (cifar2_curves.png)."""
    preset = resolve_cifar2(scale, pair, model, widths, n_train, n_test, epochs, lr, batch_size)
    run = _open_command("linearized-train-cifar2", scale, seed, out, resume, data_dir, cifar2=preset)
    if not run.is_complete:
        stage_cifar2(run, preset, scale=scale, data_dir=data_dir, seed=seed)
    record_run(run)
    click.echo(f"linearized train-cifar2 run written to {run.path}")


@linearized.command("run")
@click.option("--dataset", type=click.Choice(DATASETS), default=None,
              help="Images of the NTK and eigenfunction tasks (default cifar10; stand-ins at tiny/smoke).")
@click.option("--model", type=click.Choice(MODELS), default=None,
              help="Network of the NTK, eigenfunction and CIFAR2 parts (default lenet).")
@click.option("--n-train", type=click.IntRange(min=2), default=None, help="Training images of the NTK subset.")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Test images of the NTK subset.")
@label_idx_option
@nad_idx_option
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs of every part (default: scale preset).")
@common_run_options
def run_command(dataset, model, n_train, n_test, label_indices, nad_indices, epochs, scale, out, data_dir, seed,
                resume):
    """Everything in one run directory, OUT/linearized/<run-id>/, one resumable sub-folder per part:
    NTK spectrum, eigenfunction tasks, NADs, NAD tasks, pretrained comparison, CIFAR2; then summary.md."""
    base = PRESETS[scale]
    ntk = resolve_ntk(scale, dataset, model, None, None, n_train, n_test)
    tasks = dataclasses.replace(base.tasks, label_indices=tuple(label_indices) or base.tasks.label_indices,
                                training=override_training(base.tasks.training, epochs))
    check_indices(tasks.label_indices, num_eigenvectors(ntk), "--label-idx", "eigenvectors")
    check_indices((base.pretrained.label_idx,), num_eigenvectors(ntk), "--label-idx (pretrained comparison)",
                  "eigenvectors")
    nad_tasks = override(base.nad_tasks, nad_indices=tuple(nad_indices) or None,
                         training=override_training(base.nad_tasks.training, epochs))
    check_indices(nad_tasks.nad_indices, base.nads.side ** 2, "--nad-idx", "NADs")
    presets = Presets(
        ntk=ntk, tasks=tasks, nads=base.nads, nad_tasks=nad_tasks,
        pretrained=override(base.pretrained, pretrain_epochs=epochs,
                            training=override_training(base.pretrained.training, epochs)),
        cifar2=resolve_cifar2(scale, model=model, epochs=epochs))
    run = run_pipeline(presets, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"linearized run written to {run.path}")
