"""``tfbdl bdl prior-variance``: how SGD, SWA and SWAG depend on the variance of a Gaussian prior
on the weights (Wilson & Izmailov 2020; the reference trains SWAG with ``--wd=0.`` and a range of
``--prior_var`` for LeNet-5, VGG-16 and PreResNet-20).

One SWAG run per prior variance v: no weight decay, the prior's ``|w|^2 / (2 v N)`` in the loss,
every other setting the model's swag preset (:mod:`tfbdl.cli.bdl.prior_presets`), the same seed
for every value (same initialisation and data order: only the prior differs). Test accuracy,
NLL and ECE of the three predictives are plotted against v.

Run directory: ``values/var-<v>/`` (one sub-run per value: its training checkpoints while it
runs, then its ``metrics.json`` and test ``predictions.npz``), then ``metrics.json``,
``prior_variance.png`` and ``summary.md`` once every value is done. ``--shard i/n`` trains
values i, i+n, ... only (several processes or machines on one output folder); a rerun without it
merges.
"""

from __future__ import annotations

import dataclasses
import math

import click
import numpy as np

from tfbdl.cli.bdl.data import load_training_data
from tfbdl.cli.bdl.group import bdl, strategy_option
from tfbdl.cli.bdl.prior_presets import PRIOR_VARIANCE_MODELS, PRIOR_VARIANCE_PRESETS, PriorVariancePreset
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import comma_separated, common_run_options, shard_option
from tfbdl.errors import InvalidOptionError

__all__ = ["EXPERIMENT", "METHODS", "parse_prior_vars", "prior_variance_command", "resolve_data", "run_prior_variance",
           "value_name"]

EXPERIMENT = "bdl-prior-variance"
METHODS = ("sgd", "swa", "swag")


def parse_prior_vars(ctx, param, value):
    """Callback of ``--prior-vars``: comma-separated positive finite numbers -> sorted distinct tuple."""
    if value is None or isinstance(value, tuple):
        return value
    try:
        values = comma_separated(value, float)
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise click.BadParameter(f"{value!r}: give comma-separated positive prior variances such as 0.01,0.1,1",
                                 ctx=ctx, param=param)
    return values


def value_name(prior_var: float) -> str:
    """The sub-run folder of one prior variance: ``var-0.001``, ``var-10``."""
    return f"var-{prior_var:g}"


def resolve_data(scale: str, data_dir=None, seed: int = 0, model: str = "lenet5") -> list[dict]:
    """What ``bdl prior-variance --model MODEL`` at ``scale`` reads, sizes fitted to the data here."""
    return load_training_data(PRIOR_VARIANCE_PRESETS[model][scale].member, scale, data_dir, seed)[-1]


def run_prior_variance(*, preset: PriorVariancePreset, scale: str, out: str, data_dir, seed: int, resume: bool,
                       strategy: str, shard=(0, 1)):
    """Train (or resume) the SWAG run of every prior variance of ``preset`` (those of ``shard``
    here), then, once all are done, write metrics, figure and summary. Returns ``(run, missing)``:
    the run directory and how many values other shards still have to train."""
    from tfbdl.cli.bdl.prior_variance_report import prior_variance_figure, prior_variance_summary
    from tfbdl.io import default_run_id

    member = preset.member
    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir, "strategy": strategy,
              "prior_vars": list(preset.prior_vars), **dataclasses.asdict(member)}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=True if shard[1] > 1 else resume,
                   run_id=f"{member.model}-{default_run_id(config, scale)}")
    if run.is_complete:
        record_run(run)
        return run, 0
    x_train, y_train, x_test, y_test, num_classes, provenance = load_training_data(member, scale, data_dir, seed)
    run.record_data(provenance)
    for i in range(shard[0], len(preset.prior_vars), shard[1]):
        value_run = _value_run(run, config, preset.prior_vars[i])
        if not value_run.is_complete:
            click.echo(f"prior variance {preset.prior_vars[i]:g} ({i + 1}/{len(preset.prior_vars)})", err=True)
            _train_value(value_run, dataclasses.replace(member, prior_var=preset.prior_vars[i]),
                         (x_train, y_train), (x_test, y_test), num_classes, seed, strategy)
    missing = [v for v in preset.prior_vars if not _value_run(run, config, v).is_complete]
    if missing:
        return run, len(missing)
    values = [_value_run(run, config, v).done_info("results") for v in preset.prior_vars]
    metrics = {"prior_vars": list(preset.prior_vars), "values": values, "n_train": int(y_train.size),
               "n_test": int(y_test.size)}
    run.write_metrics(metrics)
    prior_variance_figure(run, member, metrics)
    run.finish(prior_variance_summary(run, member, metrics))
    record_run(run)
    return run, 0


def _value_run(run, config: dict, prior_var: float):
    """The sub-run ``values/var-<v>/`` of one prior variance."""
    from tfbdl.io import RunDir

    return RunDir.open(run.path, "values", value_name(prior_var), {**config, "prior_var": prior_var})


def _train_value(value_run, member, train, test, num_classes: int, seed: int, strategy: str) -> None:
    """One SWAG run under the prior ``member.prior_var``: its test metrics per method, the last
    epoch's training loss and accuracy, and the prior's weight decay, recorded as done."""
    import shutil

    from tfbdl.cli.bdl.member import train_member
    from tfbdl.io import atomic_path
    from tfbdl.metrics import classification_metrics
    from tfbdl.train.weight_decay import weight_decay_for_prior

    x_test, y_test = test
    probs = train_member(value_run, member, train, num_classes=num_classes, seed=seed, strategy=strategy,
                         eval_sets={"test": x_test})["test"]
    with atomic_path(value_run.file("predictions.npz")) as temp:
        np.savez(temp, **{method: p.astype(np.float32) for method, p in probs.items()})
    last = value_run.read_metrics_rows()[-1]
    results = {"prior_var": member.prior_var, "weight_decay": weight_decay_for_prior(member.prior_var, train[1].size),
               "train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"],
               "test": {method: classification_metrics(probs[method], y_test) for method in METHODS}}
    value_run.write_metrics(results)
    value_run.mark_done("results", results)
    value_run.finish()
    shutil.rmtree(value_run.path / "checkpoints", ignore_errors=True)  # done: its results are stored


@bdl.command("prior-variance")
@click.option("--model", type=click.Choice(PRIOR_VARIANCE_MODELS), default="lenet5", show_default=True,
              help="Network and its data: lenet5 on MNIST; preresnet20, vgg16 on CIFAR-10 (at tiny/smoke an "
                   "absent CIFAR-10 is replaced, zero-padded to 32x32; the summary says so).")
@click.option("--prior-vars", default=None, callback=parse_prior_vars,
              help="Prior variances v of N(0, v I) on the weights, comma-separated (default: scale preset; "
                   "paper: 0.001,0.01,0.1,1,10,100).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: scale preset).")
@click.option("--swa-start", type=click.IntRange(min=1), default=None,
              help="SWAG snapshots are taken after every later epoch (default: scale preset).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="SWAG samples in the test predictive.")
@shard_option("Train only values i, i+n, ... (0-based i/n); rerun without it once all are done to merge.")
@strategy_option
@common_run_options
def prior_variance_command(model, prior_vars, epochs, swa_start, samples, shard, strategy, scale, out, data_dir, seed,
                           resume):
    """SGD, SWA and SWAG trained under N(0, v I) priors (no weight decay): test accuracy, NLL and ECE
    against the prior variance v."""
    preset = PRIOR_VARIANCE_PRESETS[model][scale]
    overrides = {"epochs": epochs, "swa_start": swa_start, "samples": samples}
    member = dataclasses.replace(preset.member, **{k: v for k, v in overrides.items() if v is not None})
    if member.swa_start >= member.epochs:
        raise InvalidOptionError(f"--swa-start {member.swa_start} leaves no epoch to collect: snapshots are taken "
                                 f"after each epoch after it, up to --epochs {member.epochs}")
    preset = PriorVariancePreset(member, prior_vars or preset.prior_vars)
    run, missing = run_prior_variance(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed,
                                      resume=resume, strategy=strategy, shard=shard)
    if missing:
        click.echo(f"{missing} prior variance(s) still to train (other shards); rerun once they are done to merge")
    else:
        click.echo(f"bdl prior-variance run written to {run.path}")
