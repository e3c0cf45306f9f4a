"""``tfbdl bdl``: "Bayesian Deep Learning and a Probabilistic Perspective of Generalization".

``swag`` trains one network with the SWAG learning-rate schedule, collects SWAG snapshots and
compares the predictives of SGD (the final weights), SWA (the mean) and SWAG (a Bayesian model
average over samples) on the test set.
"""

from __future__ import annotations

import dataclasses
import json

import click
import numpy as np

from experiments.common import open_run, record_run
from experiments.options import common_run_options
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "bdl-swag"


@dataclasses.dataclass(frozen=True)
class SwagPreset:
    model: str
    dataset: str
    n_train: int | None
    epochs: int
    swa_start: int  # 1-based epoch of the first collection, as in the reference (--swa_start)
    lr_init: float
    swa_lr: float
    weight_decay: float
    batch_size: int
    max_rank: int
    samples: int


PRESETS = {
    "tiny": SwagPreset("lenet5", "mnist", 1000, 4, 3, 0.05, 0.01, 5e-4, 64, 5, 5),
    # A constant collection rate high enough for the snapshots to explore the basin (at 0.01
    # SWAG and SGD were indistinguishable on this data: NLL 0.0568 vs 0.0569).
    "smoke": SwagPreset("lenet5", "mnist", None, 30, 16, 0.1, 0.05, 5e-4, 128, 20, 30),
    # The reference's CIFAR settings (run_swag.py): 300 epochs, lr 0.1, wd 3e-4, SWAG from
    # epoch 161 at lr 0.01, covariance rank 20, 30 samples; weight decay halved because ours is
    # wd * |w|^2 in the loss (torch's weight_decay adds wd * w to the gradient).
    "paper": SwagPreset("preresnet20", "cifar10", None, 300, 161, 0.1, 0.01, 1.5e-4, 128, 20, 30),
}


def _images(loaded) -> np.ndarray:
    return loaded.images.astype(np.float32) / 255.0


def load_training_data(preset: SwagPreset, scale: str, data_dir, seed: int, label_file=None):
    """(x_train, y_train, x_test, y_test, num_classes, provenance) for a run, images in [0, 1]."""
    from tfbdl.data import load_for_run
    from tfbdl.data.labels import load_labels

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    x_train, y_train = _images(train), train.labels
    if preset.n_train is not None and preset.n_train < y_train.size:
        keep = np.sort(np.random.default_rng(seed).permutation(y_train.size)[:preset.n_train])
        x_train, y_train = x_train[keep], y_train[keep]
    if label_file is not None:
        y_train, _, _ = load_labels(label_file)
        if y_train.shape[0] != x_train.shape[0]:
            raise InvalidOptionError(f"--label-arr holds {y_train.shape[0]} labels, the training set "
                                     f"{x_train.shape[0]} images")
    return x_train, y_train, _images(test), test.labels, train.num_classes, [train.provenance, test.provenance]


def train_member(run, preset: SwagPreset, data, *, seed: int, strategy: str) -> dict[str, np.ndarray]:
    """Train one network with the SWAG schedule in ``run`` (resumable) and return its test
    predictives [N, C]: ``sgd`` (final weights), ``swa`` (the mean), ``swag`` (sample average)."""
    import keras

    from tfbdl.bayes.swag import SWAG, SWAGCollector, predict_swag, refresh_batch_norm
    from tfbdl.nn import build_model
    from tfbdl.train.loop import Trainer
    from tfbdl.train.schedules import swag_schedule
    from tfbdl.train.strategy import get_strategy

    x_train, y_train, x_test, _, num_classes, _ = data
    keras.utils.set_random_seed(seed)
    distribution = get_strategy(strategy)
    with distribution.scope():
        model = build_model(preset.model, num_classes=num_classes, input_shape=x_train.shape[1:], seed=seed)
        swag = SWAG(model.trainable_variables, max_rank=preset.max_rank)
    trainer = Trainer(model, lambda: keras.optimizers.SGD(learning_rate=preset.lr_init, momentum=0.9),
                      weight_decay=preset.weight_decay, strategy=distribution)
    trainer.fit((x_train, y_train), preset.epochs, run_dir=run, seed=seed, batch_size=preset.batch_size,
                lr_schedule=lambda epoch: swag_schedule(epoch, preset.lr_init, preset.swa_lr, preset.swa_start),
                callbacks=[SWAGCollector(swag, start_epoch=preset.swa_start - 1)], verbose=True)

    def train_batches():
        return (x_train[i:i + 256] for i in range(0, len(x_train), 256))

    probs = {"sgd": trainer.predict_proba(x_test)}
    final = [v.numpy() for v in model.trainable_variables]
    swag.assign_mean()
    refresh_batch_norm(model, train_batches())
    probs["swa"] = trainer.predict_proba(x_test)
    for v, value in zip(model.trainable_variables, final):
        v.assign(value)
    probs["swag"] = predict_swag(model, swag, x_test, samples_per_model=preset.samples, seed=seed,
                                 bn_batches=train_batches)
    return {name: np.asarray(p, dtype=np.float64) for name, p in probs.items()}


def run_swag(*, preset: SwagPreset, scale: str, out: str, data_dir, seed: int, resume: bool, strategy: str,
             label_file=None):
    from tfbdl.metrics import classification_metrics

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir, "strategy": strategy,
              "label_file": str(label_file) if label_file else None, **dataclasses.asdict(preset)}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    data = load_training_data(preset, scale, data_dir, seed, label_file)
    run.record_data(data[5])
    probs = train_member(run, preset, data, seed=seed, strategy=strategy)
    y_test = data[3]
    results = {name: classification_metrics(p, y_test) for name, p in probs.items()}
    metrics = {"test": results, "snapshots": preset.epochs - preset.swa_start + 1, "n_train": int(data[1].size),
               "n_test": int(y_test.size)}
    run.write_metrics(metrics)
    _figure(run, results)
    run.finish(_summary(run, preset, metrics))
    record_run(run)
    return run


def _figure(run, results: dict) -> None:
    from tfbdl.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    names = list(results)
    for ax, key, label in zip(axes, ("nll", "ece"), ("test NLL", "test ECE")):
        ax.bar(names, [results[n][key] for n in names], color=["tab:gray", "tab:blue", "tab:orange"])
        ax.set_title(label, fontsize=9)
    fig.suptitle("SGD vs SWA vs SWAG", fontsize=9)
    save_figure(fig, run.file("swag_comparison.png"))


def _summary(run, preset: SwagPreset, metrics: dict) -> str:
    config = json.loads(run.file("config.json").read_text())
    used = "; ".join(f"{p['requested']}/{p['requested_split']} → {p['dataset']}/{p['split']} ({p['source']})"
                     for p in config["data"])
    lines = [f"{preset.model} trained {preset.epochs} epochs on {metrics['n_train']} images (SGD with momentum, "
             f"lr {preset.lr_init} → {preset.swa_lr} from epoch {preset.swa_start}, weight decay "
             f"{preset.weight_decay}); SWAG from {metrics['snapshots']} snapshots, rank {preset.max_rank}, "
             f"{preset.samples} samples; test set of {metrics['n_test']} images.", "",
             "| method | accuracy | NLL | ECE | Brier |", "|---|---:|---:|---:|---:|"]
    for name, row in metrics["test"].items():
        lines.append(f"| {name.upper()} | {100 * row['accuracy']:.2f}% | {row['nll']:.4f} | {row['ece']:.4f} | "
                     f"{row['brier']:.4f} |")
    lines += ["", f"Data: {used}."]
    return "\n".join(lines) + "\n"


@click.group("bdl")
def bdl():
    """Bayesian Deep Learning and a Probabilistic Perspective of Generalization (Wilson & Izmailov 2020)."""


@bdl.command("swag")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: scale preset).")
@click.option("--swa-start", type=click.IntRange(min=1), default=None,
              help="Epoch (1-based) of the first SWAG snapshot; the learning rate reaches --swa-lr before it.")
@click.option("--lr-init", type=click.FloatRange(min=0, min_open=True), default=None, help="Initial learning rate.")
@click.option("--swa-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Constant learning rate while collecting.")
@click.option("--wd", type=click.FloatRange(min=0), default=None,
              help="Weight decay: wd * |w|^2 in the loss, a Gaussian prior of variance 1 / (2 wd N).")
@click.option("--max-rank", type=click.IntRange(min=0), default=None, help="SWAG deviations kept (K; 0: diagonal).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="SWAG samples in the test predictive.")
@click.option("--label-arr", "label_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Train on a saved (e.g. corrupted) label array (tfbdl.data.labels.save_labels).")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multi-worker"]), default="default",
              show_default=True, help="tf.distribute strategy: several GPUs (mirrored) or machines (multi-worker).")
@common_run_options
def swag_command(epochs, swa_start, lr_init, swa_lr, wd, max_rank, samples, label_file, strategy, scale, out,
                 data_dir, seed, resume):
    """Train with the SWAG schedule; compare SGD, SWA and SWAG predictives on the test set."""
    base = PRESETS[scale]
    overrides = {"epochs": epochs, "swa_start": swa_start, "lr_init": lr_init, "swa_lr": swa_lr,
                 "weight_decay": wd, "max_rank": max_rank, "samples": samples}
    preset = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if preset.swa_start > preset.epochs:
        raise InvalidOptionError(f"--swa-start {preset.swa_start} is after the last epoch {preset.epochs}")
    run = run_swag(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                   strategy=strategy, label_file=label_file)
    click.echo(f"bdl swag run written to {run.path}")


# --------------------------------------------------------------------------- MultiSWAG
MULTI_EXPERIMENT = "bdl-multiswag"
MULTI_PRESETS = {  # (base preset, number of independent models)
    "tiny": (dataclasses.replace(PRESETS["tiny"], epochs=3, swa_start=2, samples=3), 2),
    "smoke": (dataclasses.replace(PRESETS["smoke"], n_train=4000, epochs=20, swa_start=11, samples=10), 4),
    "paper": (PRESETS["paper"], 10),
}
METHODS = {"sgd": "Deep ensembles", "swa": "MultiSWA", "swag": "MultiSWAG"}


def run_multiswag(*, preset: SwagPreset, models: int, scale: str, out: str, data_dir, seed: int, resume: bool,
                  strategy: str, shard=(0, 1)):
    """Train ``models`` independent SWAG runs (members ``shard[0]::shard[1]`` in this process),
    then, once all exist, NLL against the number of models for the three ensembles."""
    from tfbdl.io import RunDir, atomic_path

    config = {"experiment": MULTI_EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              "strategy": strategy, "models": models, **dataclasses.asdict(preset)}
    run = open_run(MULTI_EXPERIMENT, config, out=out, scale=scale, resume=True if shard[1] > 1 else resume)
    if run.is_complete:
        record_run(run)
        return run, 0
    data = load_training_data(preset, scale, data_dir, seed)
    run.record_data(data[5])
    for member in range(shard[0], models, shard[1]):
        member_run = RunDir.open(run.path, "members", f"member-{member}", {**config, "member": member})
        if member_run.is_complete:
            continue
        click.echo(f"member {member + 1}/{models}", err=True)
        probs = train_member(member_run, preset, data, seed=seed + 1000 * member, strategy=strategy)
        with atomic_path(member_run.file("test_probs.npz")) as temp:
            np.savez(temp, **probs)
        member_run.finish()
    missing = [m for m in range(models) if not (run.path / "members" / f"member-{m}" / "test_probs.npz").exists()
               or not RunDir.open(run.path, "members", f"member-{m}", {**config, "member": m}).is_complete]
    if missing:
        return run, len(missing)
    curves = _ensemble_curves(run, models, data[3])
    run.write_metrics({"curves": curves, "n_train": int(data[1].size), "n_test": int(data[3].size)})
    _curves_figure(run, curves)
    run.finish(_multiswag_summary(preset, models, curves, data))
    record_run(run)
    return run, 0


def _ensemble_curves(run, models: int, y_test) -> dict:
    """{method: [{models, nll, accuracy, ece}]}: the first k members averaged, k = 1..M."""
    from tfbdl.metrics import classification_metrics

    member_probs = []
    for m in range(models):
        with np.load(run.path / "members" / f"member-{m}" / "test_probs.npz") as f:
            member_probs.append({name: f[name] for name in METHODS})
    curves = {}
    for name in METHODS:
        total, rows = 0.0, []
        for k, probs in enumerate(member_probs, 1):
            total = total + probs[name]
            rows.append({"models": k, **classification_metrics(total / k, y_test)})
        curves[name] = rows
    return curves


def _curves_figure(run, curves: dict) -> None:
    from tfbdl.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, label in METHODS.items():
        rows = curves[name]
        ax.plot([r["models"] for r in rows], [r["nll"] for r in rows], marker="o", label=label)
    ax.set_xlabel("number of independently trained models")
    ax.set_ylabel("test NLL")
    ax.legend(fontsize=8)
    ax.set_title("NLL falls with the number of models", fontsize=9)
    save_figure(fig, run.file("multiswag_nll.png"))


def _multiswag_summary(preset: SwagPreset, models: int, curves: dict, data) -> str:
    lines = [f"{models} independent {preset.model} runs ({preset.epochs} epochs, SWAG from epoch {preset.swa_start} "
             f"at lr {preset.swa_lr}, {preset.samples} samples each) on {data[1].size} training images; test NLL "
             f"of the average of the first k models ({data[3].size} test images).", "",
             "| models | " + " | ".join(METHODS.values()) + " |", "|---:|" + "---:|" * len(METHODS)]
    for k in range(models):
        lines.append(f"| {k + 1} | " + " | ".join(f"{curves[n][k]['nll']:.4f}" for n in METHODS) + " |")
    return "\n".join(lines) + "\n"


@bdl.command("multiswag")
@click.option("--models", type=click.IntRange(min=1), default=None, help="Independent runs (default: scale preset).")
@click.option("--shard", default="0/1", show_default=True,
              help="Train only members i, i+n, ... (0-based i/n); rerun without it once all are done to merge.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multi-worker"]), default="default",
              show_default=True, help="tf.distribute strategy for each member's training.")
@common_run_options
def multiswag_command(models, shard, strategy, scale, out, data_dir, seed, resume):
    """Deep ensembles vs MultiSWA vs MultiSWAG: test NLL against the number of independent models."""
    from tfbdl.kernels.blocks import parse_shard

    preset, default_models = MULTI_PRESETS[scale]
    run, missing = run_multiswag(preset=preset, models=models or default_models, scale=scale, out=out,
                                 data_dir=data_dir, seed=seed, resume=resume, strategy=strategy,
                                 shard=parse_shard(shard))
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
    run.record_data([test.provenance])
    if n_images is not None and n_images > test.labels.size:
        raise InvalidOptionError(f"--n-images {n_images} is more than the {test.labels.size} test images of "
                                 f"{test.describe()}")
    keep = np.arange(test.labels.size) if n_images is None else \
        np.sort(np.random.default_rng(seed).permutation(test.labels.size)[:n_images])
    images, labels = test.images[keep], test.labels[keep]
    paths = make_corrupted_set(images, labels, run.file("corrupted"), names=names, seed=seed,
                               texture_dir=texture_dir)
    _corruption_grid(run, images[0], paths)
    skipped = "" if "frost" in names else (f" frost was skipped: it needs the reference's frost texture images in "
                                           f"${FROST_DIR_ENV} (or --texture-dir).")
    run.finish(f"{len(names)} corruptions x 5 severities of {len(labels)} test images of {test.describe()}, "
               f"written to `corrupted/<name>.npz` (arrays severity_1..severity_5, labels).{skipped}\n")
    record_run(run)
    return run


def _corruption_grid(run, clean: np.ndarray, paths: dict) -> None:
    from tfbdl.plots import _pyplot, save_figure

    plt = _pyplot()
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
@click.option("--dataset", default="cifar10", show_default=True,
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


# --------------------------------------------------------------------------- prior correlations
PRIOR_EXPERIMENT = "bdl-prior-correlations"
PRIOR_ALPHAS = (0.02, 0.1, 1.0)
PRIOR_SIZES = {"tiny": (10, 20), "smoke": (20, 200), "paper": (100, 1000)}  # (images per class, prior draws)


def run_prior_correlations(*, dataset: str, scale: str, out: str, data_dir, seed: int, resume: bool,
                           per_class: int, draws: int):
    """Class-pair correlations of LeNet5 outputs under N(0, alpha^2 I) weights, for each alpha."""
    from tfbdl.bayes.priors import class_pair_correlations, prior_outputs
    from tfbdl.data import load_for_run
    from tfbdl.data.subsets import stratified_indices
    from tfbdl.nn import lenet5

    config = {"experiment": PRIOR_EXPERIMENT, "dataset": dataset, "scale": scale, "seed": seed,
              "data_dir": data_dir, "per_class": per_class, "draws": draws, "alphas": list(PRIOR_ALPHAS)}
    run = open_run(PRIOR_EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    test = load_for_run(dataset, "test", scale, data_dir)
    run.record_data([test.provenance])
    keep = stratified_indices(test.labels, per_class, seed=seed)
    x, y = _images(test)[keep], test.labels[keep]
    model = lenet5(num_classes=test.num_classes, input_shape=x.shape[1:], seed=seed)
    matrices = {}
    for alpha in PRIOR_ALPHAS:
        outputs = prior_outputs(model, x, alpha=alpha, num_samples=draws, seed=seed)
        matrices[alpha] = class_pair_correlations(outputs, y, test.num_classes)
    run.write_metrics({str(alpha): m.tolist() for alpha, m in matrices.items()})
    _prior_figure(run, matrices)
    lines = [f"Correlation of LeNet5 outputs between images ({per_class} per class) under a N(0, alpha^2 I) prior "
             f"on every weight, {draws} draws, averaged per class pair. Data: {test.describe()}.", "",
             "| alpha | same class (mean of diagonal) | different classes (mean off-diagonal) |", "|---:|---:|---:|"]
    for alpha, m in matrices.items():
        off = m[~np.eye(len(m), dtype=bool)]
        lines.append(f"| {alpha} | {np.nanmean(np.diag(m)):.3f} | {np.nanmean(off):.3f} |")
    run.finish("\n".join(lines) + "\n")
    record_run(run)
    return run


def _prior_figure(run, matrices: dict) -> None:
    from tfbdl.plots import _pyplot, save_figure

    plt = _pyplot()
    low = min(float(np.nanmin(m)) for m in matrices.values())
    low = np.floor(low * 20) / 20  # one colour scale for all panels, starting near the data
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.8 * len(matrices), 3.2), squeeze=False)
    for ax, (alpha, m) in zip(axes[0], matrices.items()):
        image = ax.imshow(m, vmin=low, vmax=1.0, cmap="viridis")
        ax.set_title(f"alpha = {alpha}", fontsize=9)
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("class", fontsize=8)
        ax.set_ylabel("class", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("Prior correlation of outputs between classes", fontsize=9)
    fig.tight_layout()
    save_figure(fig, run.file("prior_correlations.png"))


@bdl.command("prior-correlations")
@click.option("--dataset", default="mnist", show_default=True, help="Images whose prior output correlations are shown.")
@click.option("--per-class", type=click.IntRange(min=2), default=None, help="Images per class (default: scale preset).")
@click.option("--draws", type=click.IntRange(min=2), default=None, help="Prior weight draws (default: scale preset).")
@common_run_options
def prior_correlations_command(dataset, per_class, draws, scale, out, data_dir, seed, resume):
    """LeNet5 output correlations per class pair under spherical Gaussian priors (alpha 0.02, 0.1, 1)."""
    default_per_class, default_draws = PRIOR_SIZES[scale]
    run = run_prior_correlations(dataset=dataset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                                 per_class=per_class or default_per_class, draws=draws or default_draws)
    click.echo(f"prior correlations written to {run.path}")
