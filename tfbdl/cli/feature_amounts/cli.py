"""The ``tfbdl feature-amounts`` group and its commands (list-variants, train, sweep): options
parsed and checked here, the work done by :mod:`.sweep`."""

from __future__ import annotations

import dataclasses
import importlib

import click

from tfbdl.cli.feature_amounts.presets import DATASETS, FAMILIES, INITS, resolve_preset
from tfbdl.cli.feature_amounts.sweep import run_sweep
from tfbdl.cli.options import FiniteFloatRange, common_run_options, shard_option
from tfbdl.errors import InvalidOptionError

__all__ = ["feature_amounts", "list_variants_command", "sweep_command", "train_command", "training_options",
           "variant_ids", "vgg_depths"]


def vgg_depths(ctx, param, value):
    """Callback of --vgg-depth (one value or several): each must be 7 + 3k (tfbdl.nn.feature_amounts's rule)."""
    rules = importlib.import_module("tfbdl.nn.feature_amounts")
    for depth in (value if isinstance(value, tuple) else (value,)):
        if depth is not None:
            rules.reference_widths(depth)  # a one-line error for a depth that is not 7 + 3k
    return value


def variant_ids(ctx, param, value):
    """Callback of --variant: every id must name a variant of its depth's family."""
    rules = importlib.import_module("tfbdl.nn.feature_amounts")
    for text in value:
        try:
            rules.get_variant(text)
        except InvalidOptionError as error:
            raise click.BadParameter(str(error), ctx=ctx, param=param) from None
    if len(set(value)) < len(value):
        raise click.BadParameter(f"repeats an id: {', '.join(value)}; give each variant once", ctx=ctx, param=param)
    return value


@click.group("feature-amounts")
def feature_amounts():
    """Rethinking Layer-wise Feature Amounts in CNN Architectures (Mundt et al. 2018)."""


@feature_amounts.command("list-variants")
@click.option("--vgg-depth", type=click.IntRange(min=10), default=16, show_default=True, callback=vgg_depths,
              help="VGG depth 7 + 3k: 16 = VGG-D, 19 = VGG-E.")
@click.option("--width-scale", type=FiniteFloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Multiply every width by this (the set of variants does not change).")
@click.option("--family", type=click.Choice(FAMILIES), default="release", show_default=True,
              help="release: the paper's code's (profile over the conv and dense layers); conv-only: dense layers "
                   "at 512, conv total exact.")
def list_variants_command(vgg_depth, width_scale, family):
    """Print every variant of the family: id, early share of conv features, widths (conv, then dense)."""
    from tfbdl.nn.feature_amounts import enumerate_variants

    variants = enumerate_variants(vgg_depth, width_scale, include_reference=True, family=family)
    for v in variants:
        click.echo(f"{v.id}\t{v.early_fraction:.3f}\t{' '.join(map(str, v.widths))}")
    sums = [sum(v.widths) for v in variants[1:]]
    click.echo(f"{len(variants) - 1} {family} variants of depth {vgg_depth} (plus the reference, "
               f"{sum(variants[0].widths)} features); features per variant {min(sums)}-{max(sums)}", err=True)


def training_options(function):
    """The options of ``train`` and ``sweep`` that override the scale's preset."""
    options = [
        click.option("--dataset", type=click.Choice(DATASETS), default=None,
                     help="Data (default: scale preset; CIFAR-10 and MNIST are replaced at tiny/smoke when absent, "
                          "zero-padded to 32x32; REPORT.md says so)."),
        click.option("--width-scale", type=FiniteFloatRange(0, 1, min_open=True), default=None,
                     help="Multiply every reference width by this (a narrow VGG); the redistribution is kept."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per variant."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (128)."),
        click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="SGDR maximum learning rate (paper: 0.01)."),
        click.option("--lr-min", type=FiniteFloatRange(min=0), default=None, help="SGDR minimum (paper: 1e-5)."),
        click.option("--wr-epochs", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="SGDR first cycle length T_0 in epochs (paper: 10)."),
        click.option("--wr-mul", type=FiniteFloatRange(min=1), default=None, help="SGDR cycle growth T_mult (2)."),
        click.option("--momentum", type=FiniteFloatRange(0, 1), default=None, help="SGD momentum (0.9)."),
        click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum."),
        click.option("--wd", "weight_decay", type=FiniteFloatRange(min=0), default=None,
                     help="wd * |w|^2 in the loss (torch's weight_decay / 2; paper 5e-4 -> 2.5e-4)."),
        click.option("--batch-norm", type=FiniteFloatRange(min=0), default=None,
                     help="Batch-norm epsilon (1e-4); 0 builds the networks without batch norm."),
        click.option("--dropout", type=FiniteFloatRange(0, 1, max_open=True), default=None,
                     help="Dropout before the output layer (0.5)."),
        click.option("--init", type=click.Choice(INITS), default=None, help="Weight initialisation (kaiming-normal)."),
        click.option("--gcn/--no-gcn", default=None, help="Global contrast normalisation of the images."),
        click.option("--n-train", type=click.IntRange(min=1), default=None, help="Training images (default: preset)."),
        click.option("--n-val", type=click.IntRange(min=1), default=None, help="Test images used for validation."),
        click.option("--micro-batch", type=click.IntRange(min=1), default=None,
                     help="First micro-batch size (default: estimated); halved on out-of-memory errors."),
        click.option("--memory-budget-mb", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Memory the micro-batch estimate may plan for (default: free device memory)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@feature_amounts.command("train")
@click.option("--variant", "ids", multiple=True, required=True, callback=variant_ids,
              help="Variant id (see list-variants), e.g. d16-m6-s3-a0 or d16-ref; repeat for several.")
@training_options
@common_run_options
def train_command(ids, scale, out, data_dir, seed, resume, **options):
    """Train the variants named by id."""
    preset = resolve_preset(scale, **options)
    run, _ = run_sweep(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume, ids=ids)
    click.echo(f"feature-amounts train run written to {run.path}")


@feature_amounts.command("sweep")
@click.option("--vgg-depth", "depths", type=click.IntRange(min=10), multiple=True, callback=vgg_depths,
              help="Depths to sweep (repeat; default: preset, paper 16).")
@click.option("--variants", "count", type=click.IntRange(min=1), default=None,
              help="Variants per depth, spread over where the features sit (default: preset; paper: all).")
@click.option("--all-variants", is_flag=True, help="Train every variant of each depth.")
@click.option("--family", type=click.Choice(FAMILIES), default=None,
              help="Family of variants (default: release, the paper's code's; or conv-only).")
@shard_option("Train only variants i, i+n, ... (0-based i/n); rerun without it once all are done to merge.")
@training_options
@common_run_options
def sweep_command(depths, count, all_variants, family, shard, scale, out, data_dir, seed, resume, **options):
    """Train many variants (one CSV per architecture) and plot accuracy against where the features sit."""
    preset = resolve_preset(scale, depths=tuple(depths) or None, family=family, **options)
    if all_variants or count is not None:
        preset = dataclasses.replace(preset, variants=None if all_variants else count)
    run, missing = run_sweep(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                             shard=shard)
    if missing:
        click.echo(f"{missing} variant(s) still to train (other shards); rerun once they are done to merge")
    else:
        click.echo(f"feature-amounts sweep written to {run.path}")
