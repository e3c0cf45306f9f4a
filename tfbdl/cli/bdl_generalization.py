"""``tfbdl bdl``: "Bayesian Deep Learning and a Probabilistic Perspective of Generalization".

``swag`` trains one network with the SWAG learning-rate schedule, collects SWAG snapshots and
compares the predictives of SGD (the final weights), SWA (the mean) and SWAG (a Bayesian model
average over samples) on the test set.
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from tfbdl.cli.common import open_run, record_run, run_data_line, typed_option
from tfbdl.cli.options import FiniteFloatRange, common_run_options, dataset_name, shard_option
from tfbdl.data.subsets import seeded_subset
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "bdl-swag"


@dataclasses.dataclass(frozen=True)
class SwagPreset:
    """The settings of one SWAG training run (the reference's run_swag.py options)."""

    model: str
    dataset: str
    n_train: int | None  # training images used (None: all)
    epochs: int
    swa_start: int  # the reference's --swag_start: a snapshot after every epoch e (1-based) with e > swa_start
    lr_init: float
    swa_lr: float
    weight_decay: float
    batch_size: int
    max_rank: int
    samples: int
    n_val: int = 0  # training images held out to fit each predictive's temperature (0: no scaling)
    n_test: int | None = None  # test images evaluated (None: all)
    augment: bool = False  # the reference's CIFAR transform: 4-pixel padded random crops and flips
    prior_var: float | None = None  # an explicit N(0, prior_var I) prior on the weights (the reference's --prior_var)
    bn_images: int | None = None  # training images that refresh batch norm after each sample (None: all)
    label_corruption: float = 0.0  # fraction of training labels replaced by wrong ones (seeded, exact)


def prior_weight_decay(prior_var: float, n_train: int) -> float:
    """The weight decay of our mean loss, ``wd * |w|^2``, that is the N(0, prior_var I) prior:
    ``-log p(w) / N = |w|^2 / (2 prior_var N)``, as the reference's --prior_var regulariser."""
    return 1.0 / (2.0 * prior_var * n_train)


# Our weight decay is wd * |w|^2 in the loss; torch's weight_decay adds wd * w to the gradient,
# so the reference's values are halved here.
_LENET = {
    "tiny": SwagPreset("lenet5", "mnist", 1000, 4, 2, 0.05, 0.01, 5e-4, 64, 5, 5, n_val=200),
    # A constant collection rate high enough for the snapshots to explore the basin (at 0.01
    # SWAG and SGD were indistinguishable on this data: NLL 0.0568 vs 0.0569).
    # 10,000 training images: the full MNIST would take 30 x 60,000 steps of a 2-core CPU.
    "smoke": SwagPreset("lenet5", "mnist", 10000, 30, 15, 0.1, 0.05, 5e-4, 128, 20, 30, n_val=1000),
    # The reference's LeNet5 / MNIST command (its README): 50 epochs, lr 0.05, SWAG after epoch 25
    # at lr 0.01, no weight decay, a N(0, 0.1 I) prior (--wd=0. --prior_var=1e-1), batch 128.
    "paper": SwagPreset("lenet5", "mnist", None, 50, 25, 0.05, 0.01, 0.0, 128, 20, 30, prior_var=0.1),
}
# The reference's CIFAR settings (run_swag.py, run_multiswag.sh): 300 epochs, SWAG from epoch 161
# at lr 0.01, covariance rank 20; PreResNet20 lr 0.1, wd 3e-4; VGG16 lr 0.05, wd 5e-4.
_PRERESNET = {
    "tiny": SwagPreset("preresnet20", "cifar10", 256, 3, 1, 0.05, 0.01, 1.5e-4, 64, 2, 2, n_val=64, n_test=200),
    # Compute-bound on 2 cores (about 400 test images a second): each SWAG sample refreshes batch
    # norm on 1,000 training images and predicts every evaluated image once.
    "smoke": SwagPreset("preresnet20", "cifar10", 4000, 12, 6, 0.1, 0.02, 2.5e-4, 128, 6, 8, n_val=500,
                        n_test=2000, bn_images=1000),
    "paper": SwagPreset("preresnet20", "cifar10", None, 300, 161, 0.1, 0.01, 1.5e-4, 128, 20, 30, augment=True),
}


def _vgg_presets(model: str) -> dict[str, SwagPreset]:
    return {scale: dataclasses.replace(preset, model=model, lr_init=0.05,
                                       weight_decay=2.5e-4 if scale == "paper" else preset.weight_decay)
            for scale, preset in _PRERESNET.items()}


PRESETS: dict[str, dict[str, SwagPreset]] = {"lenet5": _LENET, "preresnet20": _PRERESNET,
                                             "vgg16": _vgg_presets("vgg16"), "vgg16_bn": _vgg_presets("vgg16_bn")}
MODELS = tuple(PRESETS)
# Models whose reference architecture needs 32x32 inputs: smaller images are zero-padded to it.
_MIN_SIDE = {"preresnet20": 32, "vgg16": 32, "vgg16_bn": 32}


def prepare_images(images: np.ndarray, model: str) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 in [0, 1], zero-padded to the model's smallest input side."""
    x = images.astype(np.float32) / 255.0
    side = _MIN_SIDE.get(model, 0)
    from tfbdl.data.transforms import pad_to_side

    return pad_to_side(x, side)


def load_training_data(preset: SwagPreset, scale: str, data_dir, seed: int, label_file=None):
    """(x_train, y_train, x_test, y_test, num_classes, provenance) for a run, images in [0, 1]
    (padded to the model's input size), subsampled to the preset's n_train / n_test (fewer, with
    a note in the provenance, where the data hold fewer)."""
    from tfbdl.data import load_for_run
    from tfbdl.data.labels import corrupt_labels, load_labels

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, seed)
    x_train, y_train = prepare_images(train.images[keep], preset.model), train.labels[keep]
    if label_file is not None:
        y_train, _, _ = load_labels(label_file)
        if y_train.shape[0] != x_train.shape[0]:
            raise InvalidOptionError(f"--label-arr holds {y_train.shape[0]} labels, the training set "
                                     f"{x_train.shape[0]} images")
    if preset.label_corruption:
        y_train, _ = corrupt_labels(y_train, preset.label_corruption, train.num_classes, seed)
    test_keep = test.subset(preset.n_test, seed + 1)
    x_test, y_test = prepare_images(test.images[test_keep], preset.model), test.labels[test_keep]
    return x_train, y_train, x_test, y_test, train.num_classes, [train.provenance, test.provenance]


def resolve_data(scale: str, data_dir=None, seed: int = 0, model: str = "lenet5") -> list[dict]:
    """What ``bdl swag --model MODEL`` at ``scale`` reads, sizes fitted to the data here (no training)."""
    preset = PRESETS[model][scale]
    x_train, y_train, _, _, _, provenance = load_training_data(preset, scale, data_dir, seed)
    if preset.n_val:
        split_validation(x_train, y_train, preset.n_val, seed, provenance[0])
    return provenance


def resolve_multiswag_data(scale: str, data_dir=None, seed: int = 0, model: str = "lenet5") -> list[dict]:
    """What ``bdl multiswag --model MODEL`` at ``scale`` reads (no training, no corruption)."""
    preset = MULTI_PRESETS[model][scale]
    provenance = load_training_data(preset.member, scale, data_dir, seed)[-1]
    test, _ = corruption_inputs(preset, scale, data_dir, seed)
    return provenance + [test.provenance]


def resolve_cifar_c_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``bdl make-cifar-c`` at ``scale`` reads (nothing corrupted)."""
    from tfbdl.data import load_for_run

    test = load_for_run("cifar10", "test", scale, data_dir)
    if CORRUPT_SIZES[scale] is not None:
        test.fit_count(CORRUPT_SIZES[scale])
    return [test.provenance]


def split_validation(x, y, n_val: int, seed: int, provenance: dict | None = None, option: str | None = None):
    """(x_fit, y_fit, x_val, y_val): ``n_val`` seeded random training images held out (at most
    half; see :func:`tfbdl.data.sources.fit_holdout` for what a larger one becomes)."""
    from tfbdl.data.sources import fit_holdout

    n_val = fit_holdout(provenance or {"scale": "paper"}, n_val, y.size, option=option)
    held = np.zeros(y.size, bool)
    held[seeded_subset(y.size, n_val, seed + 2)] = True
    return x[~held], y[~held], x[held], y[held]


def _augmented_epochs(x, y, batch_size: int, seed: int):
    """epoch -> batches of (padded random crops and flips of x, y) in a (seed, epoch) order."""
    from tfbdl.data.transforms import pad_crop_flip

    def epoch_batches(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(y.size)
        images = pad_crop_flip(x[order], rng)
        return [(images[i:i + batch_size], y[order[i:i + batch_size]]) for i in range(0, y.size, batch_size)]

    return epoch_batches


def train_member(run, preset: SwagPreset, data, *, num_classes: int, seed: int, strategy: str,
                 eval_sets: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Train one network with the SWAG schedule in ``run`` (resumable) on ``data = (x, y)`` and
    return ``{set: {method: probs [N, C]}}`` on each of ``eval_sets`` for the methods ``sgd``
    (final weights), ``swa`` (the mean, batch norm refreshed) and ``swag`` (sample average).
    The sets are predicted together, so every SWAG sample costs one batch-norm refresh."""
    import keras

    from tfbdl.bayes.predictive import PointPredictive, SWAGPredictive
    from tfbdl.bayes.swag import SWAG, SWAGCollector, refresh_batch_norm
    from tfbdl.nn import build_model
    from tfbdl.train.loop import Trainer
    from tfbdl.train.schedules import swag_schedule
    from tfbdl.train.strategy import get_strategy

    x_train, y_train = data
    keras.utils.set_random_seed(seed)
    distribution = get_strategy(strategy)
    with distribution.scope():
        model = build_model(preset.model, num_classes=num_classes, input_shape=x_train.shape[1:],
                            seed=seed)
        swag = SWAG(model.trainable_variables, max_rank=preset.max_rank)
    weight_decay = preset.weight_decay
    if preset.prior_var is not None:
        weight_decay += prior_weight_decay(preset.prior_var, y_train.size)
    trainer = Trainer(model, lambda: keras.optimizers.SGD(learning_rate=preset.lr_init, momentum=0.9),
                      weight_decay=weight_decay, strategy=distribution)
    batches = _augmented_epochs(x_train, y_train, preset.batch_size, seed) if preset.augment else (x_train, y_train)
    trainer.fit(batches, preset.epochs, run_dir=run, seed=seed, batch_size=preset.batch_size,
                lr_schedule=lambda epoch: swag_schedule(epoch, preset.lr_init, preset.swa_lr, preset.swa_start),
                callbacks=[SWAGCollector(swag, start_epoch=preset.swa_start)], verbose=True)

    bn_inputs = x_train[:preset.bn_images]  # these data sets are stored in no class order

    def train_batches():
        return (bn_inputs[i:i + 256] for i in range(0, len(bn_inputs), 256))

    names = list(eval_sets)
    x_all = np.concatenate([eval_sets[n] for n in names])
    probs = {"sgd": PointPredictive(model).predict(x_all)}
    final = [v.numpy() for v in model.trainable_variables]
    swag.assign_mean()
    refresh_batch_norm(model, train_batches())
    probs["swa"] = PointPredictive(model).predict(x_all)
    for v, value in zip(model.trainable_variables, final):
        v.assign(value)
    probs["swag"] = SWAGPredictive(model, swag, bn_batches=train_batches, seed=seed).predict(x_all, preset.samples)
    bounds = np.cumsum([0] + [len(eval_sets[n]) for n in names])
    return {name: {method: np.asarray(p[bounds[i]:bounds[i + 1]], dtype=np.float64) for method, p in probs.items()}
            for i, name in enumerate(names)}


def temperature_scaled(val_probs: dict, y_val, test_probs: dict) -> tuple[dict, dict]:
    """Each method's test predictive after temperature scaling fitted on the validation split:
    ``({method: probs}, {method: temperature})``."""
    from tfbdl.bayes.temperature import apply_temperature, fit_temperature, probabilities_to_logits

    scaled, temperatures = {}, {}
    for method, p_val in val_probs.items():
        temperatures[method] = fit_temperature(probabilities_to_logits(p_val), y_val)
        scaled[method] = apply_temperature(probabilities_to_logits(test_probs[method]), temperatures[method])
    return scaled, temperatures


def run_swag(*, preset: SwagPreset, scale: str, out: str, data_dir, seed: int, resume: bool, strategy: str,
             label_file=None):
    from tfbdl.metrics import classification_metrics

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir, "strategy": strategy,
              "label_file": str(label_file) if label_file else None, **dataclasses.asdict(preset)}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume, run_id=_run_id(preset, config, scale))
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
    _figure(run, metrics)
    run.finish(_summary(run, preset, metrics))
    record_run(run)
    return run


def _run_id(preset: SwagPreset, config: dict, scale: str) -> str:
    """The default run id, prefixed by the model so runs of several models sit side by side."""
    from tfbdl.io import default_run_id

    return f"{preset.model}-{default_run_id(config, scale)}"


def _figure(run, metrics: dict) -> None:
    """Bars of test NLL and ECE per method, before (and after) temperature scaling."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    names = list(metrics["test"])
    scaled = metrics.get("test_temperature_scaled")
    width = 0.4 if scaled else 0.8
    for ax, key, label in zip(axes, ("nll", "ece"), ("test NLL", "test ECE")):
        positions = np.arange(len(names))
        ax.bar(positions - (width / 2 if scaled else 0), [metrics["test"][n][key] for n in names], width,
               color=["tab:gray", "tab:blue", "tab:orange"], label="as trained")
        if scaled:
            ax.bar(positions + width / 2, [scaled[n][key] for n in names], width, color="none",
                   edgecolor="black", hatch="//", label="temperature scaled")
            ax.legend(fontsize=7)
        ax.set_xticks(positions, [n.upper() for n in names])
        ax.set_title(label, fontsize=9)
    fig.suptitle("SGD vs SWA vs SWAG", fontsize=9)
    save_figure(fig, run.file("swag_comparison.png"))


def _metric_row(label: str, row: dict) -> str:
    return (f"| {label} | {100 * row['accuracy']:.2f}% | {row['nll']:.4f} | {row['ece']:.4f} | "
            f"{row['brier']:.4f} |")


def _prior_text(preset: SwagPreset) -> str:
    return "" if preset.prior_var is None else f", N(0, {preset.prior_var:g} I) prior on the weights"


def _labels_text(preset: SwagPreset) -> str:
    return f", {100 * preset.label_corruption:g}% of the training labels wrong" if preset.label_corruption else ""


def _summary(run, preset: SwagPreset, metrics: dict) -> str:
    lines = [f"{preset.model} trained {preset.epochs} epochs on {metrics['n_train']} images (SGD with momentum, "
             f"lr {preset.lr_init} → {preset.swa_lr} by epoch {preset.swa_start}, weight decay "
             f"{preset.weight_decay}{_prior_text(preset)}{', crops and flips' if preset.augment else ''}"
             f"{_labels_text(preset)}); SWAG from "
             f"{metrics['snapshots']} snapshots, rank {preset.max_rank}, {preset.samples} samples; test set of "
             f"{metrics['n_test']} images.", "",
             "| method | accuracy | NLL | ECE | Brier |", "|---|---:|---:|---:|---:|"]
    lines += [_metric_row(name.upper(), row) for name, row in metrics["test"].items()]
    if "test_temperature_scaled" in metrics:
        lines += [_metric_row(f"{name.upper()} + temperature {metrics['temperature'][name]:.2f}", row)
                  for name, row in metrics["test_temperature_scaled"].items()]
        lines += ["", f"Temperatures fitted on {metrics['n_val']} training images held out from training."]
    lines += ["", swag_verdict(metrics["test"]), "", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"


def swag_verdict(test: dict) -> str:
    """One measured sentence on the paper's claim that SWAG's test NLL is below SGD's."""
    sgd, swag = test["sgd"]["nll"], test["swag"]["nll"]
    if swag < sgd:
        return f"As in the paper, SWAG's test NLL is below SGD's here ({swag:.4f} vs {sgd:.4f})."
    return (f"Unlike the paper, SWAG's test NLL is not below SGD's here ({swag:.4f} vs {sgd:.4f}); with so few "
            f"images and epochs this run cannot show the paper's claim.")


@click.group("bdl")
def bdl():
    """Bayesian Deep Learning and a Probabilistic Perspective of Generalization (Wilson & Izmailov 2020)."""


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
strategy_option = click.option(
    "--strategy", type=click.Choice(["default", "mirrored", "multi-worker"]), default="default", show_default=True,
    help="tf.distribute strategy: several GPUs (mirrored) or machines (multi-worker).")


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


# --------------------------------------------------------------------------- MultiSWAG
MULTI_EXPERIMENT = "bdl-multiswag"


@dataclasses.dataclass(frozen=True)
class MultiPreset:
    """M independent SWAG runs, evaluated on the test set and its corrupted versions."""

    member: SwagPreset
    models: int
    n_corrupt: int | None  # test images per corruption and severity (None: the whole test set)


MULTI_PRESETS: dict[str, dict[str, MultiPreset]] = {
    "lenet5": {
        "tiny": MultiPreset(dataclasses.replace(_LENET["tiny"], epochs=3, swa_start=1, samples=3, n_val=0), 2, 10),
        "smoke": MultiPreset(dataclasses.replace(_LENET["smoke"], n_train=4000, epochs=20, swa_start=10, samples=10,
                                                 n_val=0), 4, 200),
        "paper": MultiPreset(_LENET["paper"], 10, None),
    },
    "preresnet20": {
        "tiny": MultiPreset(dataclasses.replace(_PRERESNET["tiny"], n_val=0, n_test=100), 2, 5),
        "smoke": MultiPreset(dataclasses.replace(_PRERESNET["smoke"], n_train=2000, epochs=10, swa_start=5,
                                                 samples=4, n_val=0, n_test=1000), 3, 30),
        # run_multiswag.sh: 20 samples per SWAG model.
        "paper": MultiPreset(dataclasses.replace(_PRERESNET["paper"], samples=20), 10, None),
    },
}
METHODS = {"sgd": "Deep ensembles", "swa": "MultiSWA", "swag": "MultiSWAG"}


def corruption_inputs(preset: MultiPreset, scale: str, data_dir, seed: int):
    """``(test data, indices)``: the ``n_corrupt`` seeded test images that get corrupted."""
    from tfbdl.data import load_for_run

    test = load_for_run(preset.member.dataset, "test", scale, data_dir)
    return test, test.subset(preset.n_corrupt, seed + 3)


def corrupted_sets(run, preset: MultiPreset, scale: str, data_dir, seed: int, texture_dir=None):
    """``({"<corruption>/<severity>": images}, labels, corruption names)``: the CIFAR-10-C
    corruptions of ``n_corrupt`` seeded test images, written (resumably) under ``corrupted/``."""
    import os

    from tfbdl.data.corruptions import FROST_DIR_ENV, SEVERITIES, informative_corruptions, make_corrupted_set

    texture_dir = texture_dir or os.environ.get(FROST_DIR_ENV)
    test, keep = corruption_inputs(preset, scale, data_dir, seed)
    names, _ = informative_corruptions(test.images.shape[-1], texture_dir)
    paths = make_corrupted_set(test.images[keep], test.labels[keep], run.file("corrupted"), names=names, seed=seed,
                               texture_dir=texture_dir)
    sets = {}
    for name, path in paths.items():
        with np.load(path) as archive:
            for severity in SEVERITIES:
                sets[f"{name}/{severity}"] = prepare_images(archive[f"severity_{severity}"], preset.member.model)
    return sets, test.labels[keep], names


def run_multiswag(*, preset: MultiPreset, scale: str, out: str, data_dir, seed: int, resume: bool,
                  strategy: str, shard=(0, 1), texture_dir=None):
    """Train ``preset.models`` independent SWAG runs (members ``shard[0]::shard[1]`` in this
    process), then, once all exist, NLL against the number of models for the three ensembles on
    the test set and on every corruption and severity."""
    from tfbdl.io import RunDir, atomic_path

    member_preset, models = preset.member, preset.models
    config = {"experiment": MULTI_EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              "strategy": strategy, "models": models, "n_corrupt": preset.n_corrupt,
              **dataclasses.asdict(member_preset)}
    run = open_run(MULTI_EXPERIMENT, config, out=out, scale=scale, resume=True if shard[1] > 1 else resume,
                   run_id=_run_id(member_preset, config, scale))
    if run.is_complete:
        record_run(run)
        return run, 0
    x_train, y_train, x_test, y_test, num_classes, provenance = load_training_data(member_preset, scale, data_dir,
                                                                                   seed)
    run.record_data(provenance)
    corrupted, y_corrupt, names = corrupted_sets(run, preset, scale, data_dir, seed, texture_dir)
    eval_sets = {"test": x_test, **corrupted}

    def member_dir(m):
        return RunDir.open(run.path, "members", f"member-{m}", {**config, "member": m})

    for member in range(shard[0], models, shard[1]):
        member_run = member_dir(member)
        if member_run.is_complete:
            continue
        click.echo(f"member {member + 1}/{models}", err=True)
        probs = train_member(member_run, member_preset, (x_train, y_train), num_classes=num_classes,
                             seed=seed + 1000 * member, strategy=strategy, eval_sets=eval_sets)
        with atomic_path(member_run.file("predictions.npz")) as temp:
            np.savez(temp, **{f"{name}|{method}": p.astype(np.float32) for name, by_method in probs.items()
                              for method, p in by_method.items()})
        member_run.finish()
    missing = [m for m in range(models) if not member_dir(m).is_complete]
    if missing:
        return run, len(missing)
    labels = {name: (y_test if name == "test" else y_corrupt) for name in eval_sets}
    curves = _ensemble_curves(run, models, labels)
    run.write_metrics({"curves": curves, "n_train": int(y_train.size), "n_test": int(y_test.size),
                       "n_corrupt": int(y_corrupt.size), "corruptions": names})
    _curves_figure(run, curves["test"])
    _corruption_figures(run, curves, names)
    run.finish(_multiswag_summary(run, member_preset, models, curves, names, int(y_train.size), int(y_test.size),
                                  int(y_corrupt.size)))
    record_run(run)
    return run, 0


def _ensemble_curves(run, models: int, labels: dict) -> dict:
    """{set: {method: [{models, nll, accuracy, ece, brier}]}}: the first k members averaged, k = 1..M."""
    from tfbdl.metrics import classification_metrics

    archives = [np.load(run.path / "members" / f"member-{m}" / "predictions.npz") for m in range(models)]
    try:
        curves = {}
        for name, y in labels.items():
            curves[name] = {}
            for method in METHODS:
                total, rows = 0.0, []
                for k, archive in enumerate(archives, 1):
                    total = total + archive[f"{name}|{method}"].astype(np.float64)
                    rows.append({"models": k, **classification_metrics(total / k, y)})
                curves[name][method] = rows
        return curves
    finally:
        for archive in archives:
            archive.close()


def _curves_figure(run, curves: dict) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, label in METHODS.items():
        rows = curves[name]
        ax.plot([r["models"] for r in rows], [r["nll"] for r in rows], marker="o", label=label)
    ax.set_xlabel("number of independently trained models")
    ax.set_ylabel("test NLL")
    ax.legend(fontsize=8)
    ax.set_title(curve_title(curves), fontsize=7)
    save_figure(fig, run.file("multiswag_nll.png"))


def curve_title(curves: dict) -> str:
    """What the curves show, measured: for each method, whether its test NLL fell from 1 to all models."""
    parts = []
    for name, label in METHODS.items():
        first, last = curves[name][0]["nll"], curves[name][-1]["nll"]
        verb = "falls" if last < first else "does not fall"
        parts.append(f"{label} {verb} ({first:.3f} → {last:.3f})")
    return "\n".join(parts)


def _mean_over_corruptions(curves: dict, names, severity: int, method: str) -> np.ndarray:
    """NLL [M] of ``method`` against the number of models, averaged over the corruptions."""
    return np.mean([[r["nll"] for r in curves[f"{n}/{severity}"][method]] for n in names], axis=0)


def _corruption_figures(run, curves: dict, names) -> None:
    """``multiswag_corruptions.png``: NLL against the number of models per severity (averaged over
    corruptions); ``multiswag_corruptions_grid.png``: NLL against severity per corruption."""
    from tfbdl.data.corruptions import SEVERITIES
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(SEVERITIES), figsize=(3.0 * len(SEVERITIES), 2.8), sharey=False)
    for ax, severity in zip(axes, SEVERITIES):
        for method, label in METHODS.items():
            nll = _mean_over_corruptions(curves, names, severity, method)
            ax.plot(np.arange(1, nll.size + 1), nll, marker="o", label=label)
        ax.set_title(f"severity {severity}", fontsize=9)
        ax.set_xlabel("models", fontsize=8)
    axes[0].set_ylabel(f"NLL, mean over {len(names)} corruptions", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run.file("multiswag_corruptions.png"))

    columns = 6
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for (method, label), colour in zip(METHODS.items(), ("tab:gray", "tab:blue", "tab:orange")):
            final = [curves[f"{name}/{s}"][method][-1]["nll"] for s in SEVERITIES]
            single = [curves[f"{name}/{s}"][method][0]["nll"] for s in SEVERITIES]
            ax.plot(SEVERITIES, final, marker="o", markersize=3, color=colour, label=f"{label}")
            ax.plot(SEVERITIES, single, linestyle=":", color=colour)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("NLL against severity: all models (solid) and one model (dotted)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("multiswag_corruptions_grid.png"))


def _multiswag_summary(run, preset: SwagPreset, models: int, curves: dict, names, n_train: int, n_test: int,
                       n_corrupt: int) -> str:
    from tfbdl.data.corruptions import SEVERITIES

    test = curves["test"]
    lines = [f"{models} independent {preset.model} runs ({preset.epochs} epochs, SWAG after epoch {preset.swa_start} "
             f"at lr {preset.swa_lr}, {preset.samples} samples each) on {n_train} training images; test NLL "
             f"of the average of the first k models ({n_test} test images).", "",
             "| models | " + " | ".join(METHODS.values()) + " |", "|---:|" + "---:|" * len(METHODS)]
    for k in range(models):
        lines.append(f"| {k + 1} | " + " | ".join(f"{test[n][k]['nll']:.4f}" for n in METHODS) + " |")
    lines += ["", f"Corrupted test images ({len(names)} corruptions x {len(SEVERITIES)} severities, {n_corrupt} "
                  f"images each): NLL averaged over the corruptions, with 1 and with {models} models.", "",
              "| severity | " + " | ".join(f"{label} (1 → {models})" for label in METHODS.values()) + " |",
              "|---:|" + "---:|" * len(METHODS)]
    for severity in SEVERITIES:
        cells = []
        for method in METHODS:
            nll = _mean_over_corruptions(curves, names, severity, method)
            cells.append(f"{nll[0]:.3f} → {nll[-1]:.3f}")
        lines.append(f"| {severity} | " + " | ".join(cells) + " |")
    skipped = [name for name in ("frost", "saturate") if name not in names]
    if skipped:
        lines += ["", f"Skipped: {', '.join(skipped)} (frost needs the reference's texture images in "
                      "$TFBDL_FROST_DIR; saturate does not change grey images)."]
    lines += ["", f"Data: {run_data_line(run)}."]
    return "\n".join(lines) + "\n"


@bdl.command("multiswag")
@click.option("--model", type=click.Choice(tuple(MULTI_PRESETS)), default="lenet5", show_default=True,
              help="Network and its data: lenet5 on MNIST, preresnet20 on CIFAR-10 (replaced at tiny/smoke when "
                   "absent, zero-padded to 32x32; REPORT.md says so).")
@click.option("--models", type=click.IntRange(min=1), default=None, help="Independent runs (default: scale preset).")
@click.option("--n-corrupt", type=click.IntRange(min=1), default=None,
              help="Test images per corruption and severity (default: scale preset; paper: the whole test set).")
@click.option("--texture-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with the frost texture images (else $TFBDL_FROST_DIR; frost is skipped without them).")
@shard_option("Train only members i, i+n, ... (0-based i/n); rerun without it once all are done to merge.")
@strategy_option
@common_run_options
def multiswag_command(model, models, n_corrupt, texture_dir, shard, strategy, scale, out, data_dir, seed, resume):
    """Deep ensembles vs MultiSWA vs MultiSWAG: NLL against the number of independent models, on the
    test set and on each CIFAR-10-C corruption and severity of it."""
    preset = MULTI_PRESETS[model][scale]
    preset = dataclasses.replace(preset, models=models or preset.models,
                                 n_corrupt=n_corrupt if n_corrupt is not None else preset.n_corrupt)
    run, missing = run_multiswag(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed,
                                 resume=resume, strategy=strategy, shard=shard, texture_dir=texture_dir)
    if missing:
        click.echo(f"{missing} member(s) still to train (other shards); rerun once they are done to merge")
    else:
        click.echo(f"bdl multiswag run written to {run.path}")


# --------------------------------------------------------------------------- CIFAR-10-C
CORRUPT_EXPERIMENT = "bdl-cifar-c"
CORRUPT_SIZES = {"tiny": 200, "smoke": 2000, "paper": None}


def run_make_cifar_c(*, dataset: str, scale: str, out: str, data_dir, seed: int, resume: bool, n_images,
                     texture_dir=None):
    """Write every corruption at severities 1-5 of the test images as .npz files in the run."""
    from tfbdl.data import load_for_run
    from tfbdl.data.corruptions import CORRUPTIONS, FROST_DIR_ENV, make_corrupted_set

    import os

    texture_dir = texture_dir or os.environ.get(FROST_DIR_ENV)
    names = [n for n in CORRUPTIONS if n != "frost" or texture_dir]
    config = {"experiment": CORRUPT_EXPERIMENT, "dataset": dataset, "scale": scale, "seed": seed,
              "data_dir": data_dir, "n_images": n_images, "corruptions": names}
    run = open_run(CORRUPT_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    test = load_for_run(dataset, "test", scale, data_dir)
    n_images = test.fit_count(n_images, option=typed_option("n_images")) if n_images is not None else None
    run.record_data([test.provenance])
    keep = np.arange(test.labels.size) if n_images is None else \
        np.sort(np.random.default_rng(seed).permutation(test.labels.size)[:n_images])
    images, labels = test.images[keep], test.labels[keep]
    paths = make_corrupted_set(images, labels, run.file("corrupted"), names=names, seed=seed,
                               texture_dir=texture_dir)
    _corruption_grid(run, images[0], paths)
    skipped = "" if "frost" in names else (f" frost was skipped: it needs the reference's frost texture images in "
                                           f"${FROST_DIR_ENV} (or --texture-dir).")
    run.finish(f"{len(names)} corruptions x 5 severities of {len(labels)} test images of {test.describe()}, "
               f"written to `corrupted/<name>.npz` (arrays severity_1..severity_5, labels, seed, and source_sha256: "
               f"the SHA-256 fingerprint of the clean images, so a rerun on other images recomputes instead of "
               f"reusing).{skipped}\n")
    record_run(run)
    return run


def _corruption_grid(run, clean: np.ndarray, paths: dict) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(len(paths), 6, figsize=(6 * 0.9, len(paths) * 0.9), squeeze=False)
    for row, (name, path) in enumerate(paths.items()):
        with np.load(path) as data:
            frames = [clean] + [data[f"severity_{k}"][0] for k in range(1, 6)]
        for col, frame in enumerate(frames):
            ax = axes[row, col]
            ax.imshow(frame[..., 0] if frame.shape[-1] == 1 else frame, cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
        axes[row, 0].text(-3, clean.shape[0] / 2, name, ha="right", va="center", fontsize=6)
    fig.suptitle("clean, then severities 1-5", fontsize=8)
    fig.subplots_adjust(top=1 - 0.35 / fig.get_figheight())  # title close to the grid
    save_figure(fig, run.file("corruptions.png"))


@bdl.command("make-cifar-c")
@click.option("--dataset", default="cifar10", show_default=True, callback=dataset_name,
              help="Whose test images to corrupt; at tiny/smoke an absent CIFAR-10 is replaced (REPORT.md says so).")
@click.option("--n-images", type=click.IntRange(min=1), default=None, help="Test images to corrupt (default: scale preset).")
@click.option("--texture-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with the frost texture images (else $TFBDL_FROST_DIR; frost is skipped without them).")
@common_run_options
def make_cifar_c_command(dataset, n_images, texture_dir, scale, out, data_dir, seed, resume):
    """The CIFAR-10-C corruptions (Hendrycks & Dietterich) of the test set, 5 severities each."""
    run = run_make_cifar_c(dataset=dataset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                           n_images=n_images or CORRUPT_SIZES[scale], texture_dir=texture_dir)
    click.echo(f"corrupted sets written to {run.path / 'corrupted'}")
