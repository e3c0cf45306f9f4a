"""``tfbdl feature-amounts``: "Rethinking Layer-wise Feature Amounts in CNN Architectures".

Mundt, Majumder, Weis, Ramesh (NeurIPS 2018 CRACT workshop). A family of VGG networks of one
depth whose layer widths follow a skew-normal profile over the layers, with (about) the reference
VGG's total number of features (:mod:`tfbdl.nn.feature_amounts`; ``--family release``, the
default, is the paper's code's family, ``--family conv-only`` keeps the classifier at 512 and the
conv total exact), each trained with SGD + momentum, Kaiming-normal
initialisation and SGDR (:mod:`tfbdl.train.sgdr`), with OOM-safe micro-batching
(:mod:`tfbdl.train.oom`). ``sweep`` trains many variants, ``train`` the ones named by id,
``list-variants`` prints the family.

A run writes ``architectures/<variant-id>.csv`` (one row per epoch: epoch, lr, train loss and
accuracy, seconds, validation loss and accuracy, micro-batch, OOM retries), appended as each
epoch ends; ``variants.csv`` (one row per trained variant); ``feature_amounts.png`` (accuracy
against the share of features in the first half of the conv layers, coloured by depth) and
``variants_table.png``. An interrupted sweep resumes at the last finished epoch of the variant
it was training (its checkpoint) and skips finished variants; the CSVs are kept equal to the
checkpoints' histories, so no row is duplicated.
"""

from __future__ import annotations

import dataclasses
import importlib
import json

import click
import numpy as np

from tfbdl.cli.common import open_run, record_run, run_data_line, typed_option
from tfbdl.cli.options import FiniteFloatRange, common_run_options, shard_option
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "feature-amounts"
DATASETS = ("cifar10", "fashion_mnist", "mnist")
INITS = ("kaiming-normal", "kaiming-uniform", "xavier-normal", "xavier-uniform")  # = nn.feature_amounts.INITIALIZERS
FAMILIES = ("release", "conv-only")  # = nn.feature_amounts.FAMILIES


@dataclasses.dataclass(frozen=True)
class Preset:
    """The settings of a sweep (the reference's lib/cmdparser.py options where it has them)."""

    dataset: str
    depths: tuple[int, ...]
    variants: int | None  # variants per depth, spread over where the features sit (None: all)
    width_scale: float  # every width is multiplied by it, rounded, at least 1 (1: the paper's VGG)
    n_train: int | None  # training images (None: all)
    n_val: int | None  # test images used for validation, as the reference does (None: all)
    epochs: int
    batch_size: int = 128
    lr: float = 0.01  # SGDR eta_max (--learning-rate)
    lr_min: float = 1e-5  # --lr-wr-min
    wr_epochs: float = 10  # --lr-wr-epochs, T_0
    wr_mul: float = 2  # --lr-wr-mul, T_mult
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 2.5e-4  # wd * |w|^2 in our loss = torch's weight_decay 5e-4
    batch_norm: float = 1e-4  # batch-norm epsilon; 0 turns batch norm off
    dropout: float = 0.5  # before the output layer
    init: str = "kaiming-normal"
    family: str = "release"  # tfbdl.nn.feature_amounts.FAMILIES
    gcn: bool = False  # global contrast normalisation (the reference's --preprocessing)
    include_reference: bool = True  # also train the reference VGG of each depth
    micro_batch: int | None = None  # first micro-batch size (None: estimated)
    memory_budget_mb: float | None = None  # memory the estimate may use (None: free device memory)


PRESETS = {
    # CI: 3 variants of a very narrow VGG-10 (every width / 16, at least 1) on 256 images, 1 epoch.
    "tiny": Preset("cifar10", (10,), 3, 1 / 16, 256, 128, 1, wr_epochs=1, lr=0.05, include_reference=False),
    # The smoke run: a dozen variants (plus the two references) of narrow VGG-10 and VGG-13
    # (widths / 16) on a Fashion-MNIST subset,
    # 3 epochs = two SGDR cycles (1 + 2 epochs). A larger rate than the paper's 0.01 so a few
    # epochs separate the variants.
    "smoke": Preset("fashion_mnist", (10, 13), 6, 1 / 16, 2000, 1000, 3, wr_epochs=1, lr=0.05),
    # The paper: the 193 VGG-16 variants (and the reference) on CIFAR-10, 150 epochs of SGDR (10 + 20 + 40 + 80).
    "paper": Preset("cifar10", (16,), None, 1.0, None, None, 150),
}


# --------------------------------------------------------------------------- data


def prepare_images(images: np.ndarray, gcn: bool) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 (in [0, 1], or GCN'd), zero-padded to at least 32x32 (the
    five poolings of a VGG need it; after GCN zero is each image's mean)."""
    from tfbdl.data.transforms import global_contrast_normalize, pad_to_side

    x = global_contrast_normalize(images) if gcn else images.astype(np.float32) / 255.0
    x = np.asarray(x, np.float32)
    return pad_to_side(x, 32)


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``feature-amounts sweep`` at ``scale`` reads, sizes fitted to the data here."""
    return load_data(PRESETS[scale], scale, data_dir, seed)[-1]


def load_data(preset: Preset, scale: str, data_dir, seed: int):
    """``(x_train, y_train, x_val, y_val, num_classes, provenance)``; validation is (a subset of)
    the test split, as the reference validates on the test set."""
    from tfbdl.data import load_for_run

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, seed, option=typed_option("n_train"))
    val = test.subset(preset.n_val, seed + 1, option=typed_option("n_val"))
    return (prepare_images(train.images[keep], preset.gcn), train.labels[keep],
            prepare_images(test.images[val], preset.gcn), test.labels[val], train.num_classes,
            [train.provenance, test.provenance])


# --------------------------------------------------------------------------- variants


def choose_variants(preset: Preset, ids=()) -> list:
    """The variants a run trains: ``ids`` if given, else per depth the reference (if asked) and
    ``preset.variants`` spread over where the features sit (all when None)."""
    from tfbdl.nn.feature_amounts import enumerate_variants, get_variant, select_spread

    if ids:
        chosen = [get_variant(i, preset.width_scale) for i in ids]
        if len({v.id for v in chosen}) != len(chosen):
            raise InvalidOptionError(f"--variant repeats an id: {', '.join(ids)}")
        return chosen
    chosen = []
    for depth in preset.depths:
        family = enumerate_variants(depth, preset.width_scale, include_reference=preset.include_reference,
                                    family=preset.family)
        count = None if preset.variants is None else preset.variants + int(preset.include_reference)
        chosen += family if count is None else select_spread(family, count)
    return chosen


class ValidationMetrics:
    """Adds ``val_loss`` and ``val_accuracy`` (inference mode) to every epoch's row."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def on_epoch_end(self, trainer, epoch, logs):
        result = trainer.evaluate((self.x, self.y), batch_size=500)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}


def train_variant(run, variant, preset: Preset, data, *, num_classes: int, seed: int, verbose: bool = True,
                  callbacks=()) -> dict:
    """Train one variant in ``run`` (resumable: checkpoints/<id>/, architectures/<id>.csv) and
    return its result row."""
    import keras

    from tfbdl.nn.feature_amounts import build_variant
    from tfbdl.train.oom import AdaptiveMicroBatchTrainer
    from tfbdl.train.sgdr import make_sgdr

    x_train, y_train, x_val, y_val = data
    keras.utils.set_random_seed(seed)
    model = build_variant(variant, num_classes, x_train.shape[1:], batch_norm_epsilon=preset.batch_norm,
                          dropout=preset.dropout, init=preset.init, seed=seed)
    budget = None if preset.memory_budget_mb is None else int(preset.memory_budget_mb * 2 ** 20)
    trainer = AdaptiveMicroBatchTrainer(
        model, lambda: keras.optimizers.SGD(preset.lr, momentum=preset.momentum, nesterov=preset.nesterov),
        weight_decay=preset.weight_decay, micro_batch=preset.micro_batch, memory_budget=budget)
    schedule = make_sgdr(preset.lr, preset.wr_epochs, preset.wr_mul, preset.lr_min)
    history = trainer.fit((x_train, y_train), preset.epochs, run_dir=run, lr_schedule=schedule, lr_per_step=True,
                          callbacks=[ValidationMetrics(x_val, y_val), *callbacks], seed=seed,
                          batch_size=preset.batch_size, name=variant.id, metrics_file=csv_name(variant.id),
                          verbose=verbose)
    return result_row(variant, history, int(model.count_params()))


def csv_name(variant_id: str) -> str:
    return f"architectures/{variant_id}.csv"


RESULT_COLUMNS = ("id", "depth", "mean", "scale", "skew", "widths", "parameters", "early_fraction", "centre",
                  "best_val_accuracy", "best_epoch", "train_accuracy_at_best", "final_val_accuracy",
                  "final_train_accuracy", "final_val_loss", "micro_batch", "seconds")


def result_row(variant, history: list[dict], params: int) -> dict:
    """One variant's line of ``variants.csv`` (the reference's BestVal, BestEpoch, LastValPrec, ...)."""
    best = max(range(len(history)), key=lambda i: history[i]["val_accuracy"])
    return {"id": variant.id, "depth": variant.depth, "mean": variant.mean, "scale": variant.scale,
            "skew": variant.skew, "widths": " ".join(map(str, variant.widths)), "parameters": params,
            "early_fraction": round(variant.early_fraction, 6), "centre": round(variant.centre, 6),
            "best_val_accuracy": history[best]["val_accuracy"], "best_epoch": history[best]["epoch"],
            "train_accuracy_at_best": history[best]["train_accuracy"],
            "final_val_accuracy": history[-1]["val_accuracy"], "final_train_accuracy": history[-1]["train_accuracy"],
            "final_val_loss": history[-1]["val_loss"], "micro_batch": history[-1]["micro_batch"],
            "seconds": round(sum(r["seconds"] for r in history), 3)}


# --------------------------------------------------------------------------- the sweep


def run_sweep(*, preset: Preset, scale: str, out: str, data_dir, seed: int, resume: bool, ids=(), shard=(0, 1),
              verbose: bool = True, callbacks_for=None):
    """Train the chosen variants (``shard[0]::shard[1]`` of them in this process) in one run
    directory, then, once all are done, write variants.csv, the figures and the summary.
    ``callbacks_for(variant)`` may add training callbacks (tests use it to interrupt a run).
    Returns ``(run, number of variants still to train)``."""
    import shutil

    variants = choose_variants(preset, ids)
    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **dataclasses.asdict(preset), "variant_ids": [v.id for v in variants]}
    prefix = "train-" if ids else ""
    from tfbdl.io import default_run_id

    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=True if shard[1] > 1 else resume,
                   run_id=prefix + default_run_id(config, scale))
    if run.is_complete:
        record_run(run)
        return run, 0
    x_train, y_train, x_val, y_val, num_classes, provenance = load_data(preset, scale, data_dir, seed)
    run.record_data(provenance)
    for k, variant in enumerate(variants[shard[0]::shard[1]]):
        key = f"variant/{variant.id}"
        if run.is_done(key):
            continue
        click.echo(f"variant {variant.id} ({k + 1}/{len(variants[shard[0]::shard[1]])}): widths "
                   f"{' '.join(map(str, variant.widths))}", err=True)
        extra = callbacks_for(variant) if callbacks_for else ()
        row = train_variant(run, variant, preset, (x_train, y_train, x_val, y_val), num_classes=num_classes,
                            seed=seed, verbose=verbose, callbacks=extra)
        run.mark_done(key, row)
        shutil.rmtree(run.path / "checkpoints" / variant.id, ignore_errors=True)  # ~60 MB each for VGG-16
    missing = [v.id for v in variants if not run.is_done(f"variant/{v.id}")]
    if missing:
        return run, len(missing)
    progress = json.loads((run.path / "progress.json").read_text(encoding="utf-8"))
    rows = [{k: progress[f"variant/{v.id}"][k] for k in RESULT_COLUMNS} for v in variants]
    _write_variants_csv(run, rows)
    run.write_metrics({"variants": rows, "n_train": int(y_train.size), "n_val": int(y_val.size)})
    _accuracy_figure(run, rows)
    _table_figure(run, rows)
    run.finish(_summary(run, preset, rows, int(y_train.size), int(y_val.size)))
    record_run(run)
    return run, 0


def _write_variants_csv(run, rows: list[dict]) -> None:
    import csv
    import io

    from tfbdl.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run.file("variants.csv"), buffer.getvalue())


def _accuracy_figure(run, rows: list[dict]) -> None:
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


def _table_figure(run, rows: list[dict]) -> None:
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


def _summary(run, preset: Preset, rows: list[dict], n_train: int, n_val: int) -> str:
    from tfbdl.nn.feature_amounts import parse_variant_id

    depths = sorted({r["depth"] for r in rows})
    families = sorted({parse_variant_id(r["id"])[4] for r in rows if r["mean"] is not None}) or [preset.family]
    family = "; ".join(f"{f} family: {_FAMILY_TEXT[f]}" for f in families)
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
            rho = _spearman([r["early_fraction"] for r in mine], [r["best_val_accuracy"] for r in mine])
            lines += ["", f"VGG-{depth}: Spearman correlation of the early share with best validation accuracy "
                          f"{rho:+.2f} over {len(mine)} variants."]
    lines += ["", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"


_FAMILY_TEXT = {
    "release": "the skew-normal profile spans the conv and the two hidden dense layers, about the reference's "
               "total features",
    "conv-only": "the skew-normal profile spans the conv layers, the reference's total conv features exactly, "
                 "dense layers as the reference",
}


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else 0.0


# --------------------------------------------------------------------------- commands


def _vgg_depths(ctx, param, value):
    """Callback of --vgg-depth (one value or several): each must be 7 + 3k (tfbdl.nn.feature_amounts's rule)."""
    rules = importlib.import_module("tfbdl.nn.feature_amounts")
    for depth in (value if isinstance(value, tuple) else (value,)):
        if depth is not None:
            rules.reference_widths(depth)  # a one-line error for a depth that is not 7 + 3k
    return value


def _variant_ids(ctx, param, value):
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
@click.option("--vgg-depth", type=click.IntRange(min=10), default=16, show_default=True, callback=_vgg_depths,
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


def resolve_preset(scale: str, **overrides) -> Preset:
    """The scale's preset with the given options (None: keep the preset's) applied."""
    return dataclasses.replace(PRESETS[scale], **{k: v for k, v in overrides.items() if v is not None})


@feature_amounts.command("train")
@click.option("--variant", "ids", multiple=True, required=True, callback=_variant_ids,
              help="Variant id (see list-variants), e.g. d16-m6-s3-a0 or d16-ref; repeat for several.")
@training_options
@common_run_options
def train_command(ids, scale, out, data_dir, seed, resume, **options):
    """Train the variants named by id."""
    preset = resolve_preset(scale, **options)
    run, _ = run_sweep(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume, ids=ids)
    click.echo(f"feature-amounts train run written to {run.path}")


@feature_amounts.command("sweep")
@click.option("--vgg-depth", "depths", type=click.IntRange(min=10), multiple=True, callback=_vgg_depths,
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
