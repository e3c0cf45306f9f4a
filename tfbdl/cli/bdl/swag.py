"""``tfbdl bdl swag``: SGD vs SWA vs SWAG on one network.

``swag`` trains one network with the SWAG learning-rate schedule, collects SWAG snapshots and
compares the predictives of SGD (the final weights), SWA (the mean) and SWAG (a Bayesian model
average over samples) on the test set.
"""

from __future__ import annotations

import dataclasses

import click

from tfbdl.cli.bdl.data import load_training_data, split_validation
from tfbdl.cli.bdl.group import bdl, strategy_option
from tfbdl.cli.bdl.member import temperature_scaled, train_member
from tfbdl.cli.bdl.presets import MODELS, PRESETS, SwagPreset
from tfbdl.cli.bdl.swag_report import swag_figure, swag_summary
from tfbdl.cli.common import open_run, record_run, typed_option
from tfbdl.cli.options import FiniteFloatRange, common_run_options
from tfbdl.errors import InvalidOptionError

__all__ = ["EXPERIMENT", "model_option", "model_run_id", "resolve_data", "run_swag", "swag_command"]

EXPERIMENT = "bdl-swag"


def resolve_data(scale: str, data_dir=None, seed: int = 0, model: str = "lenet5") -> list[dict]:
    """What ``bdl swag --model MODEL`` at ``scale`` reads, sizes fitted to the data here (no training)."""
    preset = PRESETS[model][scale]
    x_train, y_train, _, _, _, provenance = load_training_data(preset, scale, data_dir, seed)
    if preset.n_val:
        split_validation(x_train, y_train, preset.n_val, seed, provenance[0])
    return provenance


def model_run_id(preset: SwagPreset, config: dict, scale: str) -> str:
    """The default run id, prefixed by the model so runs of several models sit side by side."""
    from tfbdl.io import default_run_id

    return f"{preset.model}-{default_run_id(config, scale)}"


def run_swag(*, preset: SwagPreset, scale: str, out: str, data_dir, seed: int, resume: bool, strategy: str,
             label_file=None):
    """Train (or resume) one SWAG run; write metrics, figure and summary; return its RunDir."""
    from tfbdl.metrics import classification_metrics

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir, "strategy": strategy,
              "label_file": str(label_file) if label_file else None, **dataclasses.asdict(preset)}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume, run_id=model_run_id(preset, config, scale))
    if run.is_complete:
        record_run(run)
        return run
    x_train, y_train, x_test, y_test, num_classes, provenance = load_training_data(preset, scale, data_dir, seed,
                                                                                   label_file)
    eval_sets = {"test": x_test}
    if preset.n_val:
        x_train, y_train, eval_sets["val"], y_val = split_validation(
            x_train, y_train, preset.n_val, seed, provenance[0], typed_option("n_val", "--val-size"))
    run.record_data(provenance)
    probs = train_member(run, preset, (x_train, y_train), num_classes=num_classes, seed=seed, strategy=strategy,
                         eval_sets=eval_sets)
    results = {name: classification_metrics(p, y_test) for name, p in probs["test"].items()}
    metrics = {"test": results, "snapshots": preset.epochs - preset.swa_start, "n_train": int(y_train.size),
               "n_val": int(y_val.size) if preset.n_val else 0, "n_test": int(y_test.size)}
    if preset.n_val:
        scaled, temperatures = temperature_scaled(probs["val"], y_val, probs["test"])
        metrics["temperature"] = temperatures
        metrics["test_temperature_scaled"] = {name: classification_metrics(p, y_test) for name, p in scaled.items()}
    run.write_metrics(metrics)
    swag_figure(run, metrics)
    run.finish(swag_summary(run, preset, metrics))
    record_run(run)
    return run


def _preset(model: str, scale: str, **overrides) -> SwagPreset:
    """The model's preset at ``scale`` with the given options (None: keep the preset's) applied."""
    preset = dataclasses.replace(PRESETS[model][scale], **{k: v for k, v in overrides.items() if v is not None})
    if preset.swa_start >= preset.epochs:
        raise InvalidOptionError(f"--swa-start {preset.swa_start} leaves no epoch to collect: snapshots are taken "
                                 f"after each epoch after it, up to --epochs {preset.epochs}")
    return preset


model_option = click.option(
    "--model", type=click.Choice(MODELS), default="lenet5", show_default=True,
    help="Network and its data: lenet5 on MNIST; preresnet20, vgg16, vgg16_bn on CIFAR-10 (at tiny/smoke "
         "an absent CIFAR-10 is replaced, zero-padded to 32x32; REPORT.md says so).")


@bdl.command("swag")
@model_option
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: scale preset).")
@click.option("--swa-start", type=click.IntRange(min=1), default=None,
              help="SWAG snapshots are taken after every later epoch (the reference's --swag_start: 161 first "
                   "collects after epoch 162); the learning rate reaches --swa-lr at 90% of it.")
@click.option("--lr-init", type=FiniteFloatRange(min=0, min_open=True), default=None, help="Initial learning rate.")
@click.option("--swa-lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Constant learning rate while collecting.")
@click.option("--wd", type=FiniteFloatRange(min=0), default=None,
              help="Weight decay: wd * |w|^2 in the loss, a Gaussian prior of variance 1 / (2 wd N).")
@click.option("--prior-var", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Variance of a N(0, v I) prior on the weights, added to the loss as |w|^2 / (2 v N); "
                   "use with --wd 0 to train with this prior alone.")
@click.option("--max-rank", type=click.IntRange(min=0), default=None, help="SWAG deviations kept (K; 0: diagonal).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="SWAG samples in the test predictive.")
@click.option("--val-size", "n_val", type=click.IntRange(min=0), default=None,
              help="Training images held out to fit a temperature per method (0: no temperature scaling).")
@click.option("--label-arr", "label_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Train on a saved (e.g. corrupted) label array (tfbdl.data.labels.save_labels), one label "
                   "per training image used.")
@click.option("--label-corruption", type=FiniteFloatRange(0, 1), default=None,
              help="Replace this fraction of the training labels by wrong ones (seeded by --seed; exact rate).")
@strategy_option
@common_run_options
def swag_command(model, epochs, swa_start, lr_init, swa_lr, wd, prior_var, max_rank, samples, n_val, label_file,
                 label_corruption, strategy, scale, out, data_dir, seed, resume):
    """Train with the SWAG schedule; compare SGD, SWA and SWAG predictives on the test set."""
    preset = _preset(model, scale, epochs=epochs, swa_start=swa_start, lr_init=lr_init, swa_lr=swa_lr,
                     weight_decay=wd, prior_var=prior_var, max_rank=max_rank, samples=samples, n_val=n_val,
                     label_corruption=label_corruption)
    if label_file and preset.label_corruption:
        raise InvalidOptionError("give either --label-arr or --label-corruption, not both")
    if label_file:
        from tfbdl.data.labels import load_labels
        from tfbdl.errors import TfbdlError

        try:
            load_labels(label_file)  # a wrong file fails here, before any data is read
        except TfbdlError as error:
            raise InvalidOptionError(f"--label-arr: {error}") from None
    run = run_swag(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                   strategy=strategy, label_file=label_file)
    click.echo(f"bdl swag run written to {run.path}")
