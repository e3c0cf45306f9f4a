"""``tfbdl dwp``: "The Deep Weight Prior" (Atanov, Ashukha, Struminsky, Vetrov, Welling, ICLR 2019).

The pipeline of the reference code (``SamsungLabs/deep-weight-prior``), one command per step:

1. ``train-source``: many small fconv networks (``tfbdl.nn.fconv``) trained with different seeds on
   the source data (notMNIST; ``train-net.py --data not-mnist --bs 256 --hid_dim 256 512 --l2 0.001
   --model fconv --net_cfg vanilla``, Adam 1e-3 decayed linearly to 0 over 100 epochs, the L2
   penalty on the convolutions' parameters only).
2. ``collect-kernels``: every 7x7 and 5x5 kernel slice of those networks, slices of almost-zero norm
   dropped, in one HDF5 kernel bank.
3. ``train-vae``: one kernel VAE per slice size (7x7: hidden 32, latent 2; 5x5: hidden 64, latent 4;
   300 epochs; ``train-vae.py``).
4. ``train-bnn``: the Bayesian fconv (``FConvMNIST('bayes')``, widths 32 and 128) on MNIST with 50 to
   1,000 training examples (ten seeded stratified splits), one prior on both convolutions: standard
   normal, log-uniform or the deep weight prior (``train-bnn.py``: Adam 1e-3 decayed linearly,
   batch 256, 10,000 epochs, test accuracy of a 10-sample ensemble).
5. ``dwp-init``: ordinary fconv networks initialised from kernel-VAE decoder samples against Xavier
   initialisation, learning curves on MNIST with few examples.
6. ``run``: all of it in one run directory ``OUT/dwp/<run-id>/`` with one resumable sub-folder per
   stage (``source/``, ``kernels/``, ``vae/``, ``bnn/``, ``init/``).

Each standalone command writes its own ``OUT/dwp-<stage>/<run-id>/`` and takes the previous stage's
run directory as input (``--source-run``, ``--bank``, ``--vae-run``); a ``run`` directory works there
too. Every network, VAE and BNN is a resumable sub-run (per-epoch checkpoints), so a killed command
continues where it stopped and a finished one is skipped.

At tiny/smoke scale Fashion-MNIST stands in for notMNIST and 10,000 real MNIST digits for MNIST
(``tfbdl.data.load_for_run``); ``config.json`` and ``summary.md`` say so.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pathlib

import click
import numpy as np

from tfbdl.cli.common import data_line, open_run, record_run, typed_option
from tfbdl.cli.options import FINITE_FLOAT, FiniteFloatRange, check_hdf5, common_run_options
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "dwp"
STAGES = ("source", "kernels", "vae", "bnn", "init")
STAGE_EXPERIMENTS = {stage: f"dwp-{stage}" for stage in STAGES}
PRIORS = ("normal", "log-uniform", "dwp")
PRIOR_NAMES = {"normal": "standard normal", "log-uniform": "log-uniform", "dwp": "DWP"}
INITS = ("xavier", "he", "dwp")
INIT_TEXT = {"xavier": "Xavier-normal posterior means", "he": "He-normal posterior means",
             "dwp": "posterior means from kernel-VAE decoder means"}
KERNEL_SIZES = (7, 5)  # the fconv's conv1 and conv2
_SOURCE_DATA, _TARGET_DATA = "notmnist", "mnist"
# Independent seed streams of the stages: _child_seed(seed, code, ...).
_SEED_SOURCE, _SEED_VAE, _SEED_BNN, _SEED_INIT, _SEED_TEST, _SEED_SUBSET = 1, 2, 3, 4, 5, 6


# --------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class SourcePreset:
    """Source networks (``train-net.py``)."""

    nets: int
    widths: tuple[int, int]
    epochs: int
    batch_size: int
    learning_rate: float  # decayed linearly to 0, as the reference's lr_linear
    l2: float  # l2 * sum of squares of the convolutions' weights and biases, added to the mean loss
    n_train: int | None  # source training images used (None: all)
    n_test: int | None  # source test images evaluated (None: all)


@dataclasses.dataclass(frozen=True)
class KernelPreset:
    """Kernel bank: slices with a Frobenius norm below ``threshold`` are dropped."""

    threshold: float


@dataclasses.dataclass(frozen=True)
class VaePreset:
    """Kernel VAEs (``train-vae.py``; ``data/fconv/vae{7x7,5x5}/params.yaml``)."""

    hidden_7: int
    latent_7: int
    hidden_5: int
    latent_5: int
    epochs_7: int
    epochs_5: int
    batch_size: int
    learning_rate: float  # decayed linearly, as in the reference
    validation_fraction: float  # slices held out to report the ELBO on (the reference's test file)

    def architecture(self, k: int) -> tuple[int, int]:
        """``(hidden, latent)`` of the ``k x k`` VAE."""
        return (self.hidden_7, self.latent_7) if k == 7 else (self.hidden_5, self.latent_5)

    def epochs(self, k: int) -> int:
        """Training epochs of the ``k x k`` VAE."""
        return self.epochs_7 if k == 7 else self.epochs_5

    def epochs_text(self) -> str:
        return (f"{self.epochs_7} epochs" if self.epochs_7 == self.epochs_5 else
                f"7x7: {self.epochs_7} epochs, 5x5: {self.epochs_5} epochs")


@dataclasses.dataclass(frozen=True)
class BnnPreset:
    """Bayesian fconv on the target data (``train-bnn.py``)."""

    sizes: tuple[int, ...]  # training examples per run
    splits: int  # disjoint stratified training splits per size
    priors: tuple[str, ...]
    init: str  # posterior means of the kernels: xavier, he or dwp (decoder means)
    widths: tuple[int, int]
    epochs: int  # passes over the training examples (one step each while N <= batch_size)
    batch_size: int
    learning_rate: float  # decayed linearly to 0 (lr * (1 - e / epochs) in epoch e)
    test_samples: int  # posterior samples averaged in the test predictive (the reference's --ens)
    n_test: int | None  # target test images (None: all)
    dwp_samples: int  # weight draws in the DWP's KL estimate (the reference's --dwp_samples)
    dwp_antithetic: bool  # draws in mirrored pairs (unbiased, less gradient noise, twice the cost; reference: plain)
    log_sigma2_init: float  # initial log sigma^2 of every kernel entry (the reference's --logvarinit -10)
    block: int  # epochs per checkpoint (a long run of one-step epochs is saved every `block` epochs)


@dataclasses.dataclass(frozen=True)
class InitPreset:
    """Ordinary fconv networks on the target data, Xavier vs DWP-initialised convolutions."""

    n_train: int  # stratified training examples
    seeds: int  # networks per initialisation
    epochs: int
    widths: tuple[int, int]
    batch_size: int
    learning_rate: float  # constant
    n_test: int | None


@dataclasses.dataclass(frozen=True)
class Presets:
    """Every stage's settings at one scale."""

    source: SourcePreset
    kernels: KernelPreset
    vae: VaePreset
    bnn: BnnPreset
    init: InitPreset


PRESETS: dict[str, Presets] = {
    # CI: seconds per stage.
    "tiny": Presets(
        SourcePreset(nets=2, widths=(8, 16), epochs=1, batch_size=256, learning_rate=1e-3, l2=1e-3, n_train=2000,
                     n_test=300),
        KernelPreset(threshold=1e-2),
        VaePreset(hidden_7=8, latent_7=2, hidden_5=8, latent_5=4, epochs_7=2, epochs_5=2, batch_size=128,
                  learning_rate=1e-3, validation_fraction=0.1),
        BnnPreset(sizes=(50,), splits=2, priors=PRIORS, init="xavier", widths=(8, 16), epochs=4, batch_size=256,
                  learning_rate=1e-3, test_samples=3, n_test=300, dwp_samples=1, dwp_antithetic=False, log_sigma2_init=-10.0, block=2),
        InitPreset(n_train=100, seeds=2, epochs=2, widths=(8, 16), batch_size=50, learning_rate=1e-3, n_test=300),
    ),
    # A few minutes on two CPU cores. Batches of 128 give the source networks more steps for the
    # compute; 10 epochs (~800 steps each) move their kernels well away from the random init (after
    # ~300 steps the 5x5 slices were still close to it). The DWP's KL term runs the 5x5 VAE on every
    # 5x5 slice at every step (~4M multiply-adds per slice at hidden 64), so the BNNs are narrower than
    # the paper's; the 5x5 VAE keeps the paper's hidden 64 (at hidden 32 its latent collapsed to the
    # prior, held-out KL 0.001; at 64 it is 2.2 nats after 20 epochs). The BNNs take 500 steps (the paper 10,000): with
    # log sigma^2 starting at -10 and Adam moving it ~lr a step, 100 steps left every posterior a
    # point mass at its init.
    "smoke": Presets(
        SourcePreset(nets=4, widths=(32, 64), epochs=10, batch_size=128, learning_rate=1e-3, l2=1e-3, n_train=10000,
                     n_test=2000),
        KernelPreset(threshold=1e-2),
        # The few 7x7 slices (one per conv1 filter) make two batches an epoch: more epochs for that VAE.
        VaePreset(hidden_7=32, latent_7=2, hidden_5=64, latent_5=4, epochs_7=200, epochs_5=20, batch_size=128,
                  learning_rate=1e-3, validation_fraction=0.1),
        BnnPreset(sizes=(50, 100), splits=3, priors=PRIORS, init="xavier", widths=(16, 32), epochs=500,
                  batch_size=256, learning_rate=1e-3, test_samples=10, n_test=1000, dwp_samples=1,
                  dwp_antithetic=False, log_sigma2_init=-10.0, block=50),
        InitPreset(n_train=500, seeds=3, epochs=10, widths=(16, 32), batch_size=64, learning_rate=1e-3, n_test=1000),
    ),
    # The reference's settings (README.md, train-*.py defaults).
    "paper": Presets(
        SourcePreset(nets=100, widths=(256, 512), epochs=100, batch_size=256, learning_rate=1e-3, l2=1e-3,
                     n_train=None, n_test=None),
        KernelPreset(threshold=1e-2),
        VaePreset(hidden_7=32, latent_7=2, hidden_5=64, latent_5=4, epochs_7=300, epochs_5=300, batch_size=128,
                  learning_rate=1e-3, validation_fraction=0.1),
        BnnPreset(sizes=(50, 100, 200, 500, 1000), splits=10, priors=PRIORS, init="xavier", widths=(32, 128),
                  epochs=10000, batch_size=256, learning_rate=1e-3, test_samples=10, n_test=None, dwp_samples=1,
                  dwp_antithetic=False, log_sigma2_init=-10.0, block=100),
        InitPreset(n_train=1000, seeds=10, epochs=50, widths=(32, 128), batch_size=256, learning_rate=1e-3,
                   n_test=None),
    ),
}


def _replace(preset, **overrides):
    """``preset`` with the options that were given (not None) replaced."""
    return dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})


# --------------------------------------------------------------------------- pure helpers


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """``"50,100,200"`` -> ``(50, 100, 200)`` (sorted, distinct, each >= 1); None stays None."""
    if text is None:
        return None
    try:
        sizes = [int(part) for part in str(text).replace(" ", "").split(",") if part]
    except ValueError:
        raise InvalidOptionError(f"--sizes must be comma-separated whole numbers such as 50,100, "
                                 f"got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise InvalidOptionError(f"--sizes must list numbers of training examples >= 1, got {text!r}")
    return tuple(sorted(set(sizes)))


def allocate_per_class(class_counts, size: int) -> np.ndarray:
    """Examples per class in a stratified subset of ``size``: proportional to ``class_counts``,
    rounded by largest remainders (ties go to the lower class index), summing to ``size``."""
    counts = np.asarray(class_counts, dtype=np.int64)
    exact = size * counts / counts.sum()
    base = np.floor(exact).astype(np.int64)
    remainder = exact - base
    order = np.lexsort((np.arange(counts.size), -remainder))
    base[order[:size - int(base.sum())]] += 1
    return base


def stratified_splits(labels, size: int, n_splits: int, seed: int) -> list[np.ndarray]:
    """``n_splits`` disjoint stratified training subsets of ``size`` examples each.

    Every split holds :func:`allocate_per_class` examples of each class (the class proportions of
    ``labels``, as sklearn's ``train_test_split(stratify=...)`` of the reference), drawn without
    replacement; the splits share no example, so the spread over splits is over independent data.
    The draw depends on ``(seed, size)`` only. Returns sorted int64 index arrays.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise InvalidOptionError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if size < 1 or n_splits < 1:
        raise InvalidOptionError(f"need size >= 1 and at least one split, got size {size}, {n_splits} splits")
    if size * n_splits > labels.size:
        raise InvalidOptionError(f"{n_splits} disjoint splits of {size} examples need {size * n_splits} examples, "
                                 f"the training set has {labels.size}; use fewer splits or smaller sizes")
    classes, counts = np.unique(labels, return_counts=True)
    per_class = allocate_per_class(counts, size)
    short = np.flatnonzero(per_class * n_splits > counts)
    if short.size:
        c = short[0]
        raise InvalidOptionError(f"{n_splits} disjoint splits of {size} examples need {per_class[c] * n_splits} "
                                 f"examples of class {classes[c]}, the training set has {counts[c]}; use fewer "
                                 "splits or smaller sizes")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(size)]))
    parts: list[list[np.ndarray]] = [[] for _ in range(n_splits)]
    for c, k in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == c))
        for j in range(n_splits):
            parts[j].append(members[j * k:(j + 1) * k])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def checkpoint_block(epochs: int, wanted: int) -> int:
    """The largest divisor of ``epochs`` that is at most ``wanted`` (epochs per checkpoint)."""
    for block in range(max(1, min(wanted, epochs)), 0, -1):
        if epochs % block == 0:
            return block
    return 1


def linear_decay(learning_rate: float, epoch: float, epochs: int) -> float:
    """The reference's ``lr_linear``: ``lr * (1 - floor(epoch) / epochs)`` (epoch counted from 0)."""
    return learning_rate * max(0.0, 1.0 - math.floor(epoch + 1e-9) / epochs)


def accuracy_table(results: list[dict], priors, sizes) -> list[dict]:
    """Rows ``{prior, examples, accuracy_mean, accuracy_std, accuracies}`` from per-run results
    ``{prior, examples, split, accuracy}``; std is the sample std over splits (None for one)."""
    rows = []
    for prior in priors:
        for size in sizes:
            values = [r["accuracy"] for r in sorted(results, key=lambda r: r["split"])
                      if r["prior"] == prior and r["examples"] == size]
            rows.append({"prior": prior, "examples": size, "accuracy_mean": float(np.mean(values)),
                         "accuracy_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                         "accuracies": [float(v) for v in values]})
    return rows


def _child_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed derived from ``(seed, *keys)`` (independent streams per stage and item)."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0] & 0x7FFFFFFF)


def _images(x: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 in [0, 1] (the reference's ToTensor)."""
    return x.astype(np.float32) / 255.0


def _mean_std(values) -> str:
    values = [float(v) for v in values]
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


# --------------------------------------------------------------------------- run directories


def _stage_run(parent, stage: str, config: dict):
    """The resumable sub-run ``<parent run>/<stage>/`` of the pipeline."""
    from tfbdl.io import RunDir

    return RunDir.open(parent.path.parent, parent.path.name, stage, config)


def _finished_stage(path, stage: str, option: str):
    """The finished ``stage`` run at ``path`` (a ``dwp-<stage>`` run or a ``dwp run`` directory)."""
    from tfbdl.io import RunDir

    folder = pathlib.Path(path)
    if (folder / stage / "config.json").is_file():
        folder = folder / stage
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InvalidOptionError(f"{option} {path} is not a run directory of `tfbdl dwp {_COMMANDS[stage]}` "
                                 f"(no config.json); run that command first")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidOptionError(f"{option} {path}: cannot read {config_file} ({e}); rerun `tfbdl dwp "
                                 f"{_COMMANDS[stage]}`") from None
    run = RunDir(folder, folder.parent.name, folder.name, config)
    if config.get("stage") != stage:
        raise InvalidOptionError(f"{option} {path} is a {config.get('stage') or 'different'} run, not a "
                                 f"`tfbdl dwp {_COMMANDS[stage]}` run")
    if not run.is_complete:
        raise InvalidOptionError(f"{option} {path} is not finished; rerun `tfbdl dwp {_COMMANDS[stage]}` to "
                                 "complete it")
    return run


_COMMANDS = {"source": "train-source", "kernels": "collect-kernels", "vae": "train-vae", "bnn": "train-bnn",
             "init": "dwp-init"}


def _read_json(run, name: str):
    return json.loads(run.file(name).read_text(encoding="utf-8"))


def _stage_provenance(run) -> list[dict]:
    return json.loads((run.path / "config.json").read_text(encoding="utf-8")).get("data", [])


def _stage_config(stage: str, preset, *, scale: str, seed: int, data_dir=None, **inputs) -> dict:
    return {"stage": stage, "scale": scale, "seed": seed, "data_dir": data_dir, **inputs,
            **dataclasses.asdict(preset)}


# --------------------------------------------------------------------------- weights on disk


def _save_weights(model, path, attrs: dict) -> None:
    """Every layer's weights as ``<layer>/<index>`` datasets in one HDF5 file (atomic, no pickles)."""
    from tfbdl.io import save_h5

    arrays = {f"{layer.name}/{i}": np.asarray(w.numpy()) for layer in model.layers
              for i, w in enumerate(layer.weights)}
    save_h5(path, arrays, attrs)


def _load_weights(model, path) -> None:
    """Set ``model``'s weights from :func:`_save_weights`'s file."""
    from tfbdl.errors import DataFormatError
    from tfbdl.io import load_h5

    arrays, _ = load_h5(path)
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            value = arrays.get(f"{layer.name}/{i}")
            if value is None or tuple(value.shape) != tuple(w.shape):
                raise DataFormatError(f"{path} does not hold {layer.name}'s weight {i} of shape {tuple(w.shape)}; "
                                      "retrain the source networks")
            w.assign(value)


# --------------------------------------------------------------------------- 1. source networks


def _conv_l2_loss(model, l2: float):
    """Per-example cross-entropy plus ``l2 *`` the squared norm of conv1's and conv2's parameters (the
    reference penalises ``net.features`` only, not the classifier)."""
    import tensorflow as tf

    penalised = [v for name in ("conv1", "conv2") for v in model.get_layer(name).trainable_variables]

    def loss(labels, logits):
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int64),
                                                             logits=tf.cast(logits, tf.float32))
        if not l2:
            return nll
        return nll + l2 * tf.add_n([tf.reduce_sum(tf.square(v.value)) for v in penalised])

    return loss


def train_source_net(sub, preset: SourcePreset, data: dict, seed: int) -> dict:
    """Train one fconv in the sub-run ``sub`` (resumable), save its weights, return its test metrics."""
    import keras

    from tfbdl.metrics import classification_metrics
    from tfbdl.nn.fconv import fconv
    from tfbdl.train.loop import Trainer

    keras.utils.set_random_seed(seed)
    model = fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths, seed=seed)
    trainer = Trainer(model, lambda: keras.optimizers.Adam(preset.learning_rate, epsilon=1e-8),
                      loss=_conv_l2_loss(model, preset.l2))
    history = trainer.fit((data["x_train"], data["y_train"]), preset.epochs, run_dir=sub, seed=seed,
                          lr_schedule=lambda e: linear_decay(preset.learning_rate, e, preset.epochs),
                          batch_size=preset.batch_size, verbose=False)
    _save_weights(model, sub.file("weights.h5"), {"widths": list(preset.widths), "num_classes": data["num_classes"],
                                                  "seed": seed})
    test = classification_metrics(trainer.predict_proba(data["x_test"], batch_size=1000).astype(np.float64),
                                  data["y_test"])
    return {"seed": seed, "test_accuracy": test["accuracy"], "test_nll": test["nll"],
            "train_loss": history[-1]["train_loss"], "train_accuracy": history[-1]["train_accuracy"]}


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``dwp run`` at ``scale`` reads: the source-net data and the BNN / initialisation data."""
    presets = PRESETS[scale]
    source = _source_data(presets.source, scale, data_dir, seed)[1]
    target = _target_data(scale, data_dir, presets.bnn.n_test, seed)[1]
    return source + target + _target_data(scale, data_dir, presets.init.n_test, seed)[1][1:]


def _source_data(preset: SourcePreset, scale: str, data_dir, seed: int) -> tuple[dict, list[dict]]:
    from tfbdl.data import load_for_run

    train, test = (load_for_run(_SOURCE_DATA, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, _child_seed(seed, _SEED_SUBSET), option=typed_option("n_train"))
    keep_test = test.subset(preset.n_test, _child_seed(seed, _SEED_TEST), option=typed_option("n_test"))
    data = {"x_train": _images(train.images[keep]), "y_train": train.labels[keep],
            "x_test": _images(test.images[keep_test]), "y_test": test.labels[keep_test],
            "num_classes": train.num_classes, "describe": train.describe()}
    return data, [train.provenance, test.provenance]


def stage_source(run, preset: SourcePreset, *, scale: str, data_dir, seed: int) -> dict:
    """Train ``preset.nets`` source networks (each a resumable sub-run ``nets/net-<i>``; finished
    ones are skipped), then write metrics and the summary and finish ``run``."""
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    data, provenance = _source_data(preset, scale, data_dir, seed)
    run.record_data(provenance)
    results = []
    with progress(preset.nets, "dwp source nets") as bar:
        for i in range(preset.nets):
            sub = RunDir.open(run.path, "nets", f"net-{i:03d}", {**run.config, "net": i})
            if not sub.is_complete:
                result = train_source_net(sub, preset, data, _child_seed(seed, _SEED_SOURCE, i))
                sub.write_json("result.json", result)
                sub.finish()
                click.echo(f"source net {i + 1}/{preset.nets}: test accuracy {result['test_accuracy']:.4f}", err=True)
            results.append({"net": i, **_read_json(sub, "result.json")})
            bar.update(1)
    accuracies = [r["test_accuracy"] for r in results]
    metrics = {"nets": results, "test_accuracy_mean": float(np.mean(accuracies)),
               "test_accuracy_min": float(np.min(accuracies)), "test_accuracy_max": float(np.max(accuracies)),
               "n_train": int(data["y_train"].size), "n_test": int(data["y_test"].size)}
    run.write_metrics(metrics)
    run.finish(_source_summary(preset, metrics, provenance))
    return metrics


def _source_text(preset: SourcePreset, metrics: dict) -> str:
    return (f"{preset.nets} fconv networks (widths {preset.widths[0]}/{preset.widths[1]}) trained {preset.epochs} "
            f"epoch(s) on {metrics['n_train']} source images (Adam {preset.learning_rate:g} decayed linearly, batch "
            f"{preset.batch_size}, L2 {preset.l2:g} on the convolutions); test accuracy on {metrics['n_test']} images "
            f"{_mean_std([n['test_accuracy'] for n in metrics['nets']])} (min {metrics['test_accuracy_min']:.3f}, "
            f"max {metrics['test_accuracy_max']:.3f}).")


def _source_summary(preset: SourcePreset, metrics: dict, provenance: list[dict]) -> str:
    lines = [_source_text(preset, metrics), "", "| net | seed | test accuracy | test NLL |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['net']} | {r['seed']} | {r['test_accuracy']:.4f} | {r['test_nll']:.4f} |" for r in metrics["nets"]]
    lines += ["", f"Data: {data_line(provenance)}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- 2. kernel bank


def stage_kernels(run, source, preset: KernelPreset) -> dict:
    """Every 7x7 and 5x5 slice of the finished source run ``source`` into ``kernel_bank.h5``, slices
    with a norm below the threshold dropped; a histogram of the norms; finishes ``run``."""
    from tfbdl.dwp.kernel_bank import collect_kernel_bank, kernels_from_model, save_kernel_bank, slice_norms
    from tfbdl.nn.fconv import fconv

    widths = tuple(source.config["widths"])
    paths = sorted((source.path / "nets").glob("net-*/weights.h5"))
    if len(paths) != source.config["nets"]:
        raise InvalidOptionError(f"{source.path} should hold {source.config['nets']} trained networks, found "
                                 f"{len(paths)}; rerun `tfbdl dwp train-source`")
    model = fconv(10, (28, 28, 1), widths=widths, seed=0)
    kernels: dict[int, list[np.ndarray]] = {k: [] for k in KERNEL_SIZES}
    for path in paths:
        _load_weights(model, path)
        for k, found in kernels_from_model(model).items():
            kernels.setdefault(k, []).extend(found)
    bank, counts = collect_kernel_bank(kernels, preset.threshold)
    all_norms = {k: slice_norms(np.concatenate([_kernel_slices(w) for w in kernels[k]])) for k in KERNEL_SIZES}
    save_kernel_bank(run.file("kernel_bank.h5"), bank, counts,
                     {"source_run": str(source.path), "nets": len(paths), "widths": list(widths),
                      "threshold": preset.threshold})
    _norms_figure(run, all_norms, preset.threshold)
    metrics = {"counts": {f"{k}x{k}": counts[k] for k in KERNEL_SIZES}, "threshold": preset.threshold,
               "nets": len(paths), "norm_quantiles": {f"{k}x{k}": _quantiles(all_norms[k]) for k in KERNEL_SIZES}}
    run.write_metrics(metrics)
    run.finish(_kernels_summary(metrics, widths))
    return metrics


def _kernel_slices(kernel):
    from tfbdl.dwp.kernel_bank import kernel_slices

    return kernel_slices(kernel)


def _quantiles(norms: np.ndarray) -> dict:
    q = np.quantile(norms, [0.0, 0.05, 0.5, 0.95, 1.0]) if norms.size else [float("nan")] * 5
    return dict(zip(("min", "q05", "median", "q95", "max"), (float(v) for v in q)))


def _norms_figure(run, norms: dict, threshold: float) -> None:
    """``kernel_norms.png``: histograms of the slice norms per size with the threshold."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 2.8))
    for ax, (k, values) in zip(np.atleast_1d(axes), norms.items()):
        positive = values[values > 0]
        bins = np.logspace(np.log10(max(positive.min(), 1e-6)), np.log10(positive.max()), 50) if positive.size else 10
        ax.hist(positive, bins=bins, color="tab:blue")
        ax.set_xscale("log")
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_title(f"{k}x{k} slices ({values.size})", fontsize=9)
        ax.set_xlabel("Frobenius norm")
        ax.legend(fontsize=7)
    save_figure(fig, run.file("kernel_norms.png"))


def _by_size(by_name: dict) -> list[str]:
    """Keys ``"<k>x<k>"`` largest kernel first (7x7, then 5x5), whatever order JSON stored them in."""
    return sorted(by_name, key=lambda name: -int(name.split("x")[0]))


def _bank_table(metrics: dict) -> list[str]:
    lines = ["| slices | total | kept | dropped (norm < threshold) |", "|---|---:|---:|---:|"]
    for size in _by_size(metrics["counts"]):
        c = metrics["counts"][size]
        lines.append(f"| {size} | {c['total']} | {c['kept']} | {c['dropped']} |")
    return lines


def _kernels_summary(metrics: dict, widths) -> str:
    lines = [f"Kernel bank of {metrics['nets']} source networks (widths {widths[0]}/{widths[1]}): every 7x7 and 5x5 "
             f"slice, slices with a Frobenius norm below {metrics['threshold']:g} dropped; `kernel_bank.h5`.", ""]
    lines += _bank_table(metrics)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- 3. kernel VAEs


def stage_vae(run, bank_path, preset: VaePreset, *, seed: int) -> dict:
    """One kernel VAE per slice size (resumable, ``kernel_vae_<k>x<k>.h5``), latent-space and
    decoded-sample figures; finishes ``run``."""
    from tfbdl.dwp.kernel_bank import load_kernel_bank
    from tfbdl.dwp.vae import plot_decoded_samples, plot_latent_space, train_kernel_vae

    bank, counts, _ = load_kernel_bank(bank_path)
    results = {}
    for k in KERNEL_SIZES:
        key = f"vae-{k}x{k}"
        name = f"kernel_vae_{k}x{k}"
        slices = bank.get(k)
        if slices is None or len(slices) < 2:
            held = 0 if slices is None else len(slices)
            raise InvalidOptionError(f"the kernel bank {bank_path} holds {held} {k}x{k} slices, too few to train "
                                     "a VAE; lower --threshold or train more source nets")
        if not run.is_done(key):
            hidden, latent = preset.architecture(k)
            vae_seed = _child_seed(seed, _SEED_VAE, k)
            vae, history = train_kernel_vae(slices, hidden=hidden, latent=latent, epochs=preset.epochs(k),
                                            batch_size=preset.batch_size, learning_rate=preset.learning_rate,
                                            run_dir=run, seed=vae_seed, verbose=False,
                                            validation_fraction=preset.validation_fraction, name=name)
            plot_latent_space(vae, slices, run.file(f"vae_latent_{k}x{k}.png"), seed=vae_seed)
            plot_decoded_samples(vae, run.file(f"vae_samples_{k}x{k}.png"), num=64, seed=vae_seed)
            last = history[-1]
            run.mark_done(key, {"hidden": hidden, "latent": latent, "epochs": len(history), "slices": len(slices),
                                **{m: last[m] for m in ("train_elbo", "eval_elbo", "eval_log_lik", "eval_kl",
                                                        "eval_recon_mse")}})
            click.echo(f"{k}x{k} VAE: train ELBO {last['train_elbo']:.3f}, held-out ELBO {last['eval_elbo']:.3f}",
                       err=True)
        if not run.is_done(f"structure-{k}x{k}"):
            run.mark_done(f"structure-{k}x{k}", vae_structure(run, slices, k, preset, _child_seed(seed, _SEED_VAE, k)))
        progress = json.loads((run.path / "progress.json").read_text())
        results[f"{k}x{k}"] = {**progress[key], "structure": progress[f"structure-{k}x{k}"]}
    metrics = {"vaes": results, "bank_counts": {f"{k}x{k}": counts[k] for k in counts}}
    run.write_metrics(metrics)
    run.finish(_vae_summary(preset, metrics))
    return metrics


def vae_structure(run, slices: np.ndarray, k: int, preset: VaePreset, vae_seed: int) -> dict:
    """The trained ``k x k`` VAE against a Gaussian fit and at the zero kernel, on the slices it held out
    (:func:`tfbdl.dwp.diagnostics.prior_structure`; on its training slices when none were held out)."""
    from tfbdl.dwp.diagnostics import prior_structure
    from tfbdl.dwp.vae import KernelVAE, held_out_split

    vae = KernelVAE.load(run.path / f"kernel_vae_{k}x{k}.h5")
    train_idx, held_idx = held_out_split(len(slices), preset.validation_fraction, vae_seed)
    held = slices[held_idx] if len(held_idx) else slices[train_idx]
    return prior_structure(vae, slices[train_idx], held, seed=vae_seed)


def _vae_table(metrics: dict) -> list[str]:
    lines = ["| VAE | hidden | latent | epochs | slices | train ELBO | held-out ELBO | held-out KL | "
             "reconstruction MSE |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size in _by_size(metrics["vaes"]):
        r = metrics["vaes"][size]
        lines.append(f"| {size} | {r['hidden']} | {r['latent']} | {r['epochs']} | {r['slices']} | "
                     f"{r['train_elbo']:.3f} | "
                     f"{r['eval_elbo']:.3f} | {r['eval_kl']:.3f} | {r['eval_recon_mse']:.3e} |")
    return lines


def _structure_table(metrics: dict) -> list[str]:
    """Held-out log-density per kernel entry: the VAE (IWAE), a full-covariance Gaussian, the zero kernel."""
    lines = ["| VAE | log p(w), VAE | log p(w), Gaussian fit | log p(0), VAE |", "|---|---:|---:|---:|"]
    for size in _by_size(metrics["vaes"]):
        st = metrics["vaes"][size].get("structure")
        if st is not None:
            lines.append(f"| {size} | {st['vae']:.3f} | {st['gaussian']:.3f} | {st['zero_kernel']:.3f} |")
    return lines if len(lines) > 2 else []


def _structure_lines(metrics: dict) -> list[str]:
    table = _structure_table(metrics)
    if not table:
        return []
    return ["", "Does the prior know more than a Gaussian? Held-out log-density in nats per kernel entry (VAE: "
                "importance-weighted, 50 samples; Gaussian: full covariance fitted to the VAE's training slices; "
                "log p(0): the VAE at the zero kernel):", ""] + table


def _collapse_notes(metrics: dict) -> list[str]:
    """Warnings per VAE that has learned little: a collapsed latent code, a density no better than one
    Gaussian's, or a mode at the zero kernel (then the DWP shrinks kernels rather than shaping them)."""
    notes = []
    for size in _by_size(metrics["vaes"]):
        r = metrics["vaes"][size]
        kl = r["eval_kl"]
        if kl < 0.1:
            notes.append(f"The {size} VAE's latent code carries almost no information (held-out KL {kl:.3f} nats): "
                         "its prior is close to one fixed Gaussian per kernel entry, so the DWP on those kernels acts "
                         "as a tight Gaussian prior around one mean kernel.")
        st = r.get("structure")
        if st is not None and st["vae"] <= st["gaussian"]:
            notes.append(f"The {size} VAE is no better a density of held-out slices than one Gaussian "
                         f"({st['vae']:.3f} vs {st['gaussian']:.3f} nats per entry): on these kernels the DWP is "
                         "about a correlated Gaussian prior.")
        if st is not None and st["zero_kernel"] > st["vae"]:
            notes.append(f"The {size} prior is densest at the zero kernel ({st['zero_kernel']:.3f} vs "
                         f"{st['vae']:.3f} nats per entry on held-out slices): with few data it pulls the posterior "
                         "means towards zero.")
    return ["", *notes] if notes else []


def _vae_summary(preset: VaePreset, metrics: dict) -> str:
    lines = [f"Kernel VAEs trained {preset.epochs_text()} (Adam {preset.learning_rate:g} decayed linearly, batch "
             f"{preset.batch_size}); ELBOs per slice, held-out on {100 * preset.validation_fraction:g}% of the slices.",
             ""]
    lines += _vae_table(metrics) + _structure_lines(metrics) + _collapse_notes(metrics)
    lines += ["", "Figures: `vae_latent_7x7.png`, `vae_latent_5x5.png` (encoder means of the slices) and "
                  "`vae_samples_7x7.png`, `vae_samples_5x5.png` (decoder means at z ~ N(0, I))."]
    return "\n".join(lines) + "\n"


RELEASE_VAE_FILES = {7: "vae7x7.npz", 5: "vae5x5.npz"}


def _load_vaes(source) -> dict:
    """Kernel size -> KernelVAE, from a finished VAE stage (a RunDir) or from a folder holding the
    release's ``vae7x7.npz`` and ``vae5x5.npz`` (a ``pathlib.Path``)."""
    from tfbdl.dwp.vae import KernelVAE

    if isinstance(source, pathlib.Path):
        return {k: KernelVAE.from_release(source / RELEASE_VAE_FILES[k]) for k in KERNEL_SIZES}
    return {k: KernelVAE.load(source.path / f"kernel_vae_{k}x{k}.h5") for k in KERNEL_SIZES}


def release_vae_folder(folder) -> pathlib.Path:
    """``--release-vaes``: a folder with the release's ``vae7x7.npz`` and ``vae5x5.npz``."""
    path = pathlib.Path(folder)
    missing = [name for name in RELEASE_VAE_FILES.values() if not (path / name).is_file()]
    if missing:
        raise InvalidOptionError(f"--release-vaes {folder}: {', '.join(missing)} not found there; the folder must "
                                 f"hold the deep weight prior release's {' and '.join(RELEASE_VAE_FILES.values())}")
    import zipfile

    not_npz = [name for name in RELEASE_VAE_FILES.values() if not zipfile.is_zipfile(path / name)]
    if not_npz:
        verb = "is" if len(not_npz) == 1 else "are"
        raise InvalidOptionError(f"--release-vaes {folder}: {', '.join(not_npz)} {verb} not a numpy .npz archive; "
                                 "the folder must hold the deep weight prior release's kernel VAEs saved with "
                                 "numpy.savez")
    return path.resolve()


# --------------------------------------------------------------------------- 4. Bayesian networks


def _target_data(scale: str, data_dir, n_test: int | None, seed: int) -> tuple[dict, list[dict]]:
    from tfbdl.data import load_for_run

    train, test = (load_for_run(_TARGET_DATA, split, scale, data_dir) for split in ("train", "test"))
    keep_test = test.subset(n_test, _child_seed(seed, _SEED_TEST), option=typed_option("n_test"))
    data = {"x_train": _images(train.images), "y_train": train.labels,
            "x_test": _images(test.images[keep_test]), "y_test": test.labels[keep_test],
            "num_classes": train.num_classes}
    return data, [train.provenance, test.provenance]


def _prior(name: str, vaes, dwp_samples: int, antithetic: bool = False):
    """The prior object of ``name``. The log-uniform prior is the reference's: Kingma et al.'s KL
    for ``alpha <= 1`` on ``bayes-mtrunca`` layers (see :func:`_variance`)."""
    from tfbdl.dwp.priors import DeepWeightPrior, StandardNormalPrior, TruncatedLogUniformPrior

    if name == "normal":
        return StandardNormalPrior()
    if name == "log-uniform":
        return TruncatedLogUniformPrior()
    return DeepWeightPrior(vaes, weight_samples=dwp_samples, antithetic=antithetic)


def _variance(prior_name: str) -> str:
    """The posterior's variance parameterisation for ``prior_name``: the reference runs the log-uniform
    prior on ``MuTruncAlphaFFGConv2d`` (``sigma^2 = alpha mu^2``, ``alpha <= 1``), the others on
    ``BayesConv2d`` (``log sigma^2``)."""
    return "alpha" if prior_name == "log-uniform" else "log_sigma2"


class _KLLog:
    """Trainer callback: the prior term (a fixed-seed estimate) after each checkpoint block."""

    def __init__(self, layers, seed: int):
        self.layers, self.seed = layers, seed

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict:
        from tfbdl.dwp.bnn import kl_total

        return {"kl": float(kl_total(self.layers, [self.seed, epoch + 1]).numpy())}


def _elbo_loss(layers, n: int):
    """Per-example negative ELBO: ``NLL + KL / N`` (its batch mean is the ELBO loss)."""
    import tensorflow as tf

    from tfbdl.dwp.bnn import kl_total

    def per_example_loss(labels, logits):
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int64),
                                                             logits=tf.cast(logits, tf.float32))
        return nll + kl_total(layers) / n

    return per_example_loss


def _block_batches(x, y, batch_size: int, block: int, seed: int, trainer_epoch: int):
    """The mini-batches of ``block`` passes over ``(x, y)``, each pass in a ``(seed, data epoch)`` order."""
    n = y.size
    for p in range(block):
        order = np.random.default_rng([seed, trainer_epoch * block + p]).permutation(n)
        for start in range(0, n, batch_size):
            chunk = order[start:start + batch_size]
            yield x[chunk], y[chunk]


def fit_bnn_blocks(sub, model, x, y, preset: BnnPreset, seed: int) -> list[dict]:
    """Minimise the negative ELBO ``mean NLL + KL / N`` with Adam, as :func:`tfbdl.dwp.bnn.fit_bnn`,
    with ``block`` data epochs per checkpoint.

    The reference trains 10,000 epochs of one full batch each; a checkpoint per epoch would cost more
    than the step (and the trainer's checkpoint keeps every epoch's row), so each trainer epoch runs
    ``block`` passes over the data (every pass a fresh ``(seed, epoch)`` order) and the learning rate
    follows ``lr * (1 - e / epochs)`` per data epoch ``e``. The checkpoint (``checkpoints/bnn``) makes
    the run resumable block by block.
    """
    from tfbdl.dwp.bnn import bayes_layers, reference_adam
    from tfbdl.train.loop import Trainer

    layers = bayes_layers(model)
    block = checkpoint_block(preset.epochs, preset.block)
    steps_per_pass = -(-int(y.size) // preset.batch_size)
    trainer = Trainer(model, lambda: reference_adam(preset.learning_rate, int(y.size)),
                      loss=_elbo_loss(layers, int(y.size)))
    return trainer.fit(lambda e: _block_batches(x, y, preset.batch_size, block, seed, e), preset.epochs // block,
                       run_dir=sub, seed=seed, name="bnn", lr_per_step=True, steps_per_epoch=block * steps_per_pass,
                       lr_schedule=lambda t: linear_decay(preset.learning_rate, t * block, preset.epochs),
                       callbacks=[_KLLog(layers, seed)], verbose=False)


def train_bnn(sub, preset: BnnPreset, prior_name: str, data: dict, train_index: np.ndarray, vaes,
              seed: int) -> dict:
    """One Bayesian fconv with ``prior_name`` on both convolutions, trained on ``train_index``
    (resumable in ``sub``); its test metrics (``test_samples``-sample ensemble and posterior mean)."""
    import keras

    from tfbdl.dwp.bnn import bayesian_fconv, predict_bnn_proba
    from tfbdl.metrics import classification_metrics

    keras.utils.set_random_seed(seed)
    prior = _prior(prior_name, vaes, preset.dwp_samples, preset.dwp_antithetic)
    model = bayesian_fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths,
                           priors={"conv1": prior, "conv2": prior}, init=preset.init,
                           vaes=vaes if preset.init == "dwp" else None, variance=_variance(prior_name),
                           log_sigma2_init=preset.log_sigma2_init, seed=seed)
    x, y = data["x_train"][train_index], data["y_train"][train_index]
    history = fit_bnn_blocks(sub, model, x, y, preset, seed)
    ensemble = classification_metrics(predict_bnn_proba(model, data["x_test"], preset.test_samples, seed=seed,
                                                        batch_size=1000), data["y_test"])
    mean = classification_metrics(predict_bnn_proba(model, data["x_test"], 0, seed=seed, batch_size=1000),
                                  data["y_test"])
    return {"accuracy": ensemble["accuracy"], "nll": ensemble["nll"], "ece": ensemble["ece"],
            "mean_accuracy": mean["accuracy"], "train_loss": history[-1]["train_loss"],
            "train_accuracy": history[-1]["train_accuracy"], "kl": history[-1]["kl"], "seed": seed,
            "kernels": {name: kernel_posterior_scale(model.get_layer(name)) for name in ("conv1", "conv2")}}


def kernel_posterior_scale(layer) -> dict:
    """Root mean square of a Bayesian conv layer's posterior means and median posterior std: where the
    prior left the kernels (a prior whose mode is at zero shrinks the means well below its samples' scale)."""
    mu = layer.kernel_mu.numpy()
    sigma = np.sqrt(np.asarray(layer.kernel_sigma2))
    return {"mean_rms": float(np.sqrt(np.mean(np.square(mu)))), "sigma_median": float(np.median(sigma))}


def stage_bnn(run, preset: BnnPreset, vae_run, *, scale: str, data_dir, seed: int) -> dict:
    """Every prior x size x split BNN (each a resumable sub-run ``runs/<prior>-n<size>-split<j>``),
    then the accuracy table, its figure and the summary; finishes ``run``."""
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    data, provenance = _target_data(scale, data_dir, preset.n_test, seed)
    run.record_data(provenance)
    splits = {size: stratified_splits(data["y_train"], size, preset.splits, _child_seed(seed, _SEED_BNN))
              for size in preset.sizes}
    vaes = _load_vaes(vae_run) if vae_run is not None else None
    results = []
    total = len(preset.sizes) * preset.splits * len(preset.priors)
    with progress(total, "dwp BNNs") as bar:
        for size in preset.sizes:
            for j in range(preset.splits):
                for prior in preset.priors:
                    name = f"{prior}-n{size}-split{j}"
                    sub = RunDir.open(run.path, "runs", name, {**run.config, "prior": prior, "examples": size,
                                                                "split": j})
                    if not sub.is_complete:
                        result = train_bnn(sub, preset, prior, data, splits[size][j], vaes,
                                           _child_seed(seed, _SEED_BNN, size, j))
                        sub.write_json("result.json", {**result, "train_index": splits[size][j]})
                        sub.finish()
                        click.echo(f"BNN {name}: test accuracy {result['accuracy']:.4f}", err=True)
                    result = _read_json(sub, "result.json")
                    result.pop("train_index")
                    results.append({"prior": prior, "examples": size, "split": j, **result})
                    bar.update(1)
    rows = accuracy_table(results, preset.priors, preset.sizes)
    metrics = {"table": rows, "runs": results, "n_test": int(data["y_test"].size),
               "n_train_pool": int(data["y_train"].size)}
    run.write_metrics(metrics)
    _bnn_figure(run, rows, preset)
    run.finish(_bnn_summary(preset, metrics, provenance))
    return metrics


def _bnn_figure(run, rows: list[dict], preset: BnnPreset) -> None:
    """``bnn_accuracy.png``: test accuracy against the number of examples per prior (mean ± std)."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    positions = np.arange(len(preset.sizes))
    for i, prior in enumerate(preset.priors):
        mine = [r for r in rows if r["prior"] == prior]
        std = [r["accuracy_std"] or 0.0 for r in mine]
        ax.errorbar(positions + 0.04 * (i - 1), [r["accuracy_mean"] for r in mine], yerr=std, marker="o", capsize=4,
                    label=PRIOR_NAMES[prior])
    ax.set_xticks(positions, [str(s) for s in preset.sizes])
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"test accuracy ({preset.test_samples}-sample ensemble)")
    ax.set_title(f"Bayesian fconv on MNIST, mean ± std over {preset.splits} splits", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, run.file("bnn_accuracy.png"))


def _cell(row: dict) -> str:
    std = "" if row["accuracy_std"] is None else f" ± {row['accuracy_std']:.3f}"
    return f"{row['accuracy_mean']:.3f}{std}"


def fit_table(results: list[dict], priors, sizes) -> list[str]:
    """Markdown table of how each prior let the networks fit: mean training accuracy and the conv2
    posterior (rms of the means, median std) per prior and number of examples, averaged over splits."""
    lines = ["| prior | examples | train accuracy | conv2 mean rms | conv2 median sigma |", "|---|---:|---:|---:|---:|"]
    for prior in priors:
        for size in sizes:
            mine = [r for r in results if r["prior"] == prior and r["examples"] == size and "kernels" in r]
            if not mine:
                continue
            conv2 = [r["kernels"]["conv2"] for r in mine]
            lines.append(f"| {PRIOR_NAMES[prior]} | {size} | {np.mean([r['train_accuracy'] for r in mine]):.3f} | "
                         f"{np.mean([k['mean_rms'] for k in conv2]):.4f} | "
                         f"{np.mean([k['sigma_median'] for k in conv2]):.4f} |")
    return lines


def bnn_table(rows: list[dict], priors, sizes) -> list[str]:
    """Markdown table: one row per prior, one column per number of examples, ``mean ± std``."""
    lines = ["| prior | " + " | ".join(f"{s} examples" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for prior in priors:
        cells = [_cell(next(r for r in rows if r["prior"] == prior and r["examples"] == s)) for s in sizes]
        lines.append(f"| {PRIOR_NAMES[prior]} | " + " | ".join(cells) + " |")
    return lines


def prior_comparison(rows: list[dict], priors, sizes) -> str:
    """One honest sentence: where the deep weight prior ranked against the other priors."""
    def row(prior, size):
        return next(r for r in rows if r["prior"] == prior and r["examples"] == size)

    if len(priors) < 2:
        return f"Only the {PRIOR_NAMES[priors[0]]} prior was run, so there is no comparison of priors."
    if "dwp" not in priors:
        best = {s: max(priors, key=lambda p: row(p, s)["accuracy_mean"]) for s in sizes}
        return ("Highest mean accuracy: " + "; ".join(f"{s} examples: {PRIOR_NAMES[best[s]]}" for s in sizes) +
                " (the deep weight prior was not run).")
    parts, wins, clear = [], [], []
    for s in sizes:
        dwp = row("dwp", s)
        rival = max((p for p in priors if p != "dwp"), key=lambda p: row(p, s)["accuracy_mean"])
        other = row(rival, s)
        diff = dwp["accuracy_mean"] - other["accuracy_mean"]
        spread = max(dwp["accuracy_std"] or 0.0, other["accuracy_std"] or 0.0)
        parts.append(f"{s} examples: DWP {dwp['accuracy_mean']:.3f} vs {PRIOR_NAMES[rival]} "
                     f"{other['accuracy_mean']:.3f} ({diff:+.3f})")
        if diff > 0:
            wins.append(s)
        if abs(diff) > spread:
            clear.append(s)
    if len(wins) == len(sizes):
        verdict = ("the deep weight prior had the highest mean accuracy at every size, as the paper reports for "
                   "scarce data")
    elif not wins:
        verdict = ("the deep weight prior did not beat the best other prior at any size, so the paper's claim that it "
                   "helps when data are scarce is not reproduced here")
    else:
        verdict = (f"the deep weight prior was best at {', '.join(map(str, wins))} examples but not at "
                   f"{', '.join(str(s) for s in sizes if s not in wins)}, so the paper's claim holds only in part here")
    unclear = [str(s) for s in sizes if s not in clear]
    noise = ("each of these differences exceeds the std over splits" if not unclear else
             f"the difference at {', '.join(unclear)} examples is within the std over splits, so not significant")
    return f"Measured: {verdict} ({'; '.join(parts)}); {noise}."


def _bnn_text(preset: BnnPreset, metrics: dict) -> str:
    return (f"Bayesian fconv (widths {preset.widths[0]}/{preset.widths[1]}, a factorised Gaussian posterior on conv1 "
            f"and conv2 with the prior on both, {INIT_TEXT[preset.init]}, log sigma^2 from "
            f"{preset.log_sigma2_init:g}; the log-uniform prior on the "
            f"reference's truncated-alpha layers, sigma^2 = alpha mu^2 with alpha <= 1, and Kingma et al.'s KL fit; "
            f"the DWP term estimated with {preset.dwp_samples} "
            f"{'mirrored pair(s) of draws' if preset.dwp_antithetic else 'draw(s)'} per step) "
            f"trained {preset.epochs} epochs (Adam "
            f"{preset.learning_rate:g} decayed linearly, batch {preset.batch_size}) on {preset.splits} disjoint "
            f"stratified split(s) per size of {metrics['n_train_pool']} target training images; test accuracy of a "
            f"{preset.test_samples}-sample ensemble on {metrics['n_test']} test images, mean ± std over the splits.")


def _bnn_result_lines(preset: BnnPreset, metrics: dict) -> list[str]:
    """The accuracy table, the sentence on the priors and the fit table."""
    lines = ["Test accuracy, prior × number of training examples (mean ± std):", ""]
    lines += bnn_table(metrics["table"], preset.priors, preset.sizes)
    lines += ["", prior_comparison(metrics["table"], preset.priors, preset.sizes), "",
              "How the posteriors fit the training examples (mean over splits):", ""]
    return lines + fit_table(metrics["runs"], preset.priors, preset.sizes)


def _bnn_summary(preset: BnnPreset, metrics: dict, provenance: list[dict]) -> str:
    lines = [_bnn_text(preset, metrics), ""] + _bnn_result_lines(preset, metrics)
    lines += ["", f"Data: {data_line(provenance)}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- 5. DWP initialisation


class _TestAccuracy:
    """Trainer callback: test accuracy after every epoch."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict:
        return {"test_accuracy": trainer.evaluate((self.x, self.y), batch_size=1000)["accuracy"]}


def dwp_initialise(model, vaes, seed: int) -> None:
    """Set conv1's and conv2's kernels to kernel-VAE decoder means at ``z ~ N(0, I)`` (the reference's
    ``vae`` initialisation); biases and the dense layer keep their initialisation."""
    from tfbdl.dwp.kernel_bank import kernel_from_slices

    for i, name in enumerate(("conv1", "conv2")):
        layer = model.get_layer(name)
        k, _, cin, cout = layer.kernel.shape
        slices = vaes[int(k)].sample_kernels(int(cin * cout), _child_seed(seed, i), mean=True)
        layer.kernel.assign(kernel_from_slices(slices, int(cin), int(cout)))


def train_init_net(sub, preset: InitPreset, init: str, data: dict, train_index: np.ndarray, vaes,
                   seed: int) -> dict:
    """One ordinary fconv, Xavier- or DWP-initialised, trained on ``train_index`` (resumable in
    ``sub``); its test accuracy before training and after every epoch."""
    import keras

    from tfbdl.nn.fconv import fconv
    from tfbdl.train.loop import Trainer

    keras.utils.set_random_seed(seed)
    model = fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths, seed=seed)
    if init == "dwp":
        dwp_initialise(model, vaes, seed)
    trainer = Trainer(model, lambda: keras.optimizers.Adam(preset.learning_rate))
    if not sub.is_done("initial"):
        sub.mark_done("initial", trainer.evaluate((data["x_test"], data["y_test"]), batch_size=1000)["accuracy"])
    initial = json.loads((sub.path / "progress.json").read_text())["initial"]
    x, y = data["x_train"][train_index], data["y_train"][train_index]
    history = trainer.fit((x, y), preset.epochs, run_dir=sub, seed=seed, batch_size=preset.batch_size,
                          lr_schedule=preset.learning_rate,
                          callbacks=[_TestAccuracy(data["x_test"], data["y_test"])], verbose=False)
    return {"test_accuracy": [initial] + [row["test_accuracy"] for row in history],
            "train_loss": [row["train_loss"] for row in history], "seed": seed}


def stage_init(run, preset: InitPreset, vae_run, *, scale: str, data_dir, seed: int) -> dict:
    """Xavier vs DWP initialisation, ``preset.seeds`` networks each (resumable sub-runs
    ``nets/<init>-seed<s>``); mean learning curves, ``dwp_init_curves.png``; finishes ``run``."""
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    data, provenance = _target_data(scale, data_dir, preset.n_test, seed)
    run.record_data(provenance)
    (train_index,) = stratified_splits(data["y_train"], preset.n_train, 1, _child_seed(seed, _SEED_INIT))
    vaes = _load_vaes(vae_run)
    curves: dict[str, list] = {"xavier": [], "dwp": []}
    with progress(2 * preset.seeds, "dwp-init nets") as bar:
        for s in range(preset.seeds):
            for init in curves:
                sub = RunDir.open(run.path, "nets", f"{init}-seed{s}", {**run.config, "init": init, "net": s})
                if not sub.is_complete:
                    # The same seed for both initialisations: same data order, same dense layer and biases.
                    result = train_init_net(sub, preset, init, data, train_index, vaes,
                                            _child_seed(seed, _SEED_INIT, s))
                    sub.write_json("result.json", result)
                    sub.finish()
                curves[init].append(_read_json(sub, "result.json")["test_accuracy"])
                bar.update(1)
    summary = {init: {"mean": np.mean(c, axis=0).tolist(), "std": np.std(c, axis=0).tolist(), "runs": c}
               for init, c in curves.items()}
    metrics = {"curves": summary, "n_train": preset.n_train, "n_test": int(data["y_test"].size),
               "epochs": preset.epochs, "seeds": preset.seeds}
    run.write_metrics(metrics)
    _init_figure(run, metrics, preset)
    run.finish(_init_summary(preset, metrics, provenance))
    return metrics


INIT_NAMES = {"xavier": "Xavier", "dwp": "DWP samples"}


def _init_figure(run, metrics: dict, preset: InitPreset) -> None:
    """``dwp_init_curves.png``: mean test accuracy per epoch (± std band) per initialisation."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    for (init, curve), colour in zip(metrics["curves"].items(), ("tab:gray", "tab:orange")):
        mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
        epochs = np.arange(mean.size)
        ax.plot(epochs, mean, marker="o", markersize=3, color=colour, label=INIT_NAMES[init])
        ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"fconv on {preset.n_train} MNIST examples, mean over {preset.seeds} seeds", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, run.file("dwp_init_curves.png"))


def init_comparison(metrics: dict) -> str:
    """One sentence on the learning curves: DWP initialisation against Xavier, early and at the end."""
    dwp, xavier = (np.asarray(metrics["curves"][k]["mean"]) for k in ("dwp", "xavier"))
    gap = dwp[1:] - xavier[1:]
    ahead = int(np.sum(gap > 0))
    verdict = ("DWP-initialised networks were ahead after every epoch, the faster training the paper reports"
               if ahead == gap.size else
               "DWP-initialised networks were never ahead, so the paper's faster training is not reproduced here"
               if ahead == 0 else
               f"DWP-initialised networks were ahead after {ahead} of {gap.size} epochs")
    return (f"Measured: {verdict} (after epoch 1: {dwp[1]:.3f} vs Xavier {xavier[1]:.3f}; after epoch {gap.size}: "
            f"{dwp[-1]:.3f} vs {xavier[-1]:.3f}; mean gap over epochs {np.mean(gap):+.3f}).")


def _init_text(preset: InitPreset, metrics: dict) -> str:
    return (f"Ordinary fconv networks (widths {preset.widths[0]}/{preset.widths[1]}) on {preset.n_train} stratified "
            f"target examples, {preset.seeds} seeds per initialisation, Adam {preset.learning_rate:g}, batch "
            f"{preset.batch_size}: conv1/conv2 kernels from kernel-VAE decoder means vs Xavier; test accuracy on "
            f"{metrics['n_test']} images after each epoch (epoch 0: before training), mean over seeds.")


def _init_table(metrics: dict) -> list[str]:
    curves = metrics["curves"]
    epochs = len(curves["xavier"]["mean"])
    shown = sorted({0, 1, 2, epochs // 2, epochs - 1} & set(range(epochs)))
    lines = ["| epoch | Xavier | DWP samples |", "|---:|---:|---:|"]
    for e in shown:
        lines.append(f"| {e} | {curves['xavier']['mean'][e]:.3f} ± {curves['xavier']['std'][e]:.3f} | "
                     f"{curves['dwp']['mean'][e]:.3f} ± {curves['dwp']['std'][e]:.3f} |")
    return lines


def _init_summary(preset: InitPreset, metrics: dict, provenance: list[dict]) -> str:
    lines = [_init_text(preset, metrics), ""] + _init_table(metrics)
    lines += ["", init_comparison(metrics), "", "Figure: `dwp_init_curves.png`.", "",
              f"Data: {data_line(provenance)}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- 6. the whole pipeline


FIGURES = {"kernels": ("kernel_norms.png",),
           "vae": ("vae_latent_7x7.png", "vae_samples_7x7.png", "vae_latent_5x5.png", "vae_samples_5x5.png"),
           "bnn": ("bnn_accuracy.png",), "init": ("dwp_init_curves.png",)}


def run_pipeline(*, presets: Presets, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Every stage in ``OUT/dwp/<run-id>/<stage>/`` (each skipped when finished), then the summary."""
    from tfbdl.io import atomic_write_bytes

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **{stage: dataclasses.asdict(getattr(presets, stage)) for stage in STAGES}}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    common = {"scale": scale, "seed": seed}

    def stage(name, preset, **inputs):
        return _stage_run(run, name, _stage_config(name, preset, data_dir=data_dir, **common, **inputs))

    runs = {"source": stage("source", presets.source)}
    if not runs["source"].is_complete:
        click.echo("== source networks", err=True)
        stage_source(runs["source"], presets.source, scale=scale, data_dir=data_dir, seed=seed)
    runs["kernels"] = stage("kernels", presets.kernels, source_run="source")
    if not runs["kernels"].is_complete:
        click.echo("== kernel bank", err=True)
        stage_kernels(runs["kernels"], runs["source"], presets.kernels)
    runs["vae"] = stage("vae", presets.vae, bank="kernels/kernel_bank.h5")
    if not runs["vae"].is_complete:
        click.echo("== kernel VAEs", err=True)
        stage_vae(runs["vae"], runs["kernels"].file("kernel_bank.h5"), presets.vae, seed=seed)
    needs_vae = "dwp" in presets.bnn.priors or presets.bnn.init == "dwp"
    runs["bnn"] = stage("bnn", presets.bnn, vae_run="vae" if needs_vae else None)
    if not runs["bnn"].is_complete:
        click.echo("== Bayesian networks", err=True)
        stage_bnn(runs["bnn"], presets.bnn, runs["vae"] if needs_vae else None, scale=scale, data_dir=data_dir,
                  seed=seed)
    runs["init"] = stage("init", presets.init, vae_run="vae")
    if not runs["init"].is_complete:
        click.echo("== DWP initialisation", err=True)
        stage_init(runs["init"], presets.init, runs["vae"], scale=scale, data_dir=data_dir, seed=seed)

    for name, figures in FIGURES.items():
        for figure in figures:
            atomic_write_bytes(run.file(figure), runs[name].file(figure).read_bytes())
    provenance = _stage_provenance(runs["source"]) + _stage_provenance(runs["bnn"])
    run.record_data(provenance)
    metrics = {name: _read_json(r, "metrics.json") for name, r in runs.items()}
    run.write_metrics(metrics)
    run.finish(pipeline_summary(presets, metrics, provenance))
    record_run(run)
    return run


def pipeline_summary(presets: Presets, metrics: dict, provenance: list[dict]) -> str:
    """The run's summary.md: each stage's numbers, the prior table and the two comparisons."""
    bnn = metrics["bnn"]
    lines = ["The deep weight prior, end to end: source networks → kernel bank → kernel VAEs → Bayesian networks "
             "with three priors on few target examples → DWP initialisation of ordinary networks. Stage folders: "
             "`source/`, `kernels/`, `vae/`, `bnn/`, `init/`.", "",
             f"**Source networks.** {_source_text(presets.source, metrics['source'])}", "",
             f"**Kernel bank.** Slices with a Frobenius norm below {presets.kernels.threshold:g} dropped "
             "(`kernel_norms.png`):", ""]
    lines += _bank_table(metrics["kernels"])
    lines += ["", f"**Kernel VAEs** ({presets.vae.epochs_text()}; `vae_latent_*.png`: encoder means of the slices, "
                  "`vae_samples_*.png`: decoder means at z ~ N(0, I)):", ""]
    lines += _vae_table(metrics["vae"]) + _structure_lines(metrics["vae"]) + _collapse_notes(metrics["vae"])
    lines += ["", f"**Bayesian networks.** {_bnn_text(presets.bnn, bnn)}", ""]
    lines += _bnn_result_lines(presets.bnn, bnn)
    lines += ["", f"**DWP initialisation** (`dwp_init_curves.png`). {_init_text(presets.init, metrics['init'])}", ""]
    lines += _init_table(metrics["init"])
    lines += ["", init_comparison(metrics["init"]), "", f"Data: {data_line(provenance)}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the commands


@click.group("dwp")
def dwp():
    """The Deep Weight Prior (Atanov et al., ICLR 2019): kernel bank, kernel VAEs, Bayesian networks with
    standard-normal / log-uniform / DWP priors, DWP initialisation."""


def _widths_option(what: str):
    return click.option("--widths", type=click.IntRange(min=1), nargs=2, default=None,
                        help=f"Channels of the 7x7 and 5x5 convolutions of the {what}, e.g. --widths 32 128 "
                             "(default: scale preset).")


_epochs = click.IntRange(min=1)
_rate = FiniteFloatRange(min=0, min_open=True)


def _standalone(stage: str, preset, *, scale, out, data_dir, seed, resume, **inputs):
    """Open (or resume) ``OUT/dwp-<stage>/<run-id>/`` for a standalone command."""
    config = {"experiment": STAGE_EXPERIMENTS[stage],
              **_stage_config(stage, preset, scale=scale, seed=seed, data_dir=data_dir, **inputs)}
    return open_run(STAGE_EXPERIMENTS[stage], config, out=out, scale=scale, resume=resume)


def _done(run, what: str) -> None:
    record_run(run)
    click.echo(f"dwp {what} run written to {run.path}")


@dwp.command("train-source")
@click.option("--nets", type=click.IntRange(min=1), default=None, help="Source networks, one seed each (paper: 100).")
@_widths_option("source networks (paper: 256 512)")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs per network (paper: 100).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (paper: 256).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly to 0 (paper: 1e-3).")
@click.option("--l2", type=FiniteFloatRange(min=0), default=None,
              help="Weight of the squared norm of the convolutions' parameters in the loss (paper: 1e-3).")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Source training images used (default: scale preset; paper: all).")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Source test images evaluated (default: scale preset; paper: all).")
@common_run_options
def train_source_command(nets, widths, epochs, batch_size, lr, l2, n_train, n_test, scale, out, data_dir, seed,
                         resume):
    """Train many fconv networks with different seeds on the source data (notMNIST; Fashion-MNIST stands in
    at tiny/smoke when it is absent); finished networks are skipped on rerun."""
    preset = _replace(PRESETS[scale].source, nets=nets, widths=widths, epochs=epochs, batch_size=batch_size,
                      learning_rate=lr, l2=l2, n_train=n_train, n_test=n_test)
    run = _standalone("source", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    if not run.is_complete:
        stage_source(run, preset, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "train-source")


@dwp.command("collect-kernels")
@click.option("--source-run", type=click.Path(file_okay=False, path_type=str), required=True,
              help="A finished `tfbdl dwp train-source` run directory (or a `tfbdl dwp run` directory).")
@click.option("--threshold", type=FiniteFloatRange(min=0), default=None,
              help="Drop slices whose Frobenius norm is below this (default: scale preset).")
@common_run_options
def collect_kernels_command(source_run, threshold, scale, out, data_dir, seed, resume):
    """Cut every 7x7 and 5x5 kernel slice of the source networks into an HDF5 kernel bank, dropping slices
    of almost-zero norm; the counts go to summary.md."""
    source = _finished_stage(source_run, "source", "--source-run")
    preset = _replace(PRESETS[scale].kernels, threshold=threshold)
    run = _standalone("kernels", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                      source_run=str(source.path.resolve()))
    if not run.is_complete:
        stage_kernels(run, source, preset)
    _done(run, "collect-kernels")


def _bank_file(path) -> pathlib.Path:
    """The kernel bank of a ``--bank`` value: an .h5 file or a run directory holding kernel_bank.h5."""
    candidate = pathlib.Path(path)
    if candidate.is_dir():
        stage = _finished_stage(candidate, "kernels", "--bank")
        candidate = stage.path / "kernel_bank.h5"
    if not candidate.is_file():
        raise InvalidOptionError(f"--bank {path} is neither a kernel bank file nor a finished `tfbdl dwp "
                                 "collect-kernels` run")
    what = "a kernel bank (kernel_bank.h5) or the `tfbdl dwp collect-kernels` run that holds it"
    check_hdf5(candidate, "--bank", what)
    import h5py

    expected = importlib.import_module("tfbdl.dwp.kernel_bank").BANK_FORMAT
    with h5py.File(candidate, "r") as f:
        found = f.attrs.get("format")
    found = found.decode("utf-8") if isinstance(found, bytes) else found
    if found != expected:
        raise InvalidOptionError(f"--bank {path} is an HDF5 file but not a kernel bank (format {found!r}, expected "
                                 f"{expected!r}); give {what}")
    return candidate


@dwp.command("train-vae")
@click.option("--bank", type=click.Path(exists=True, path_type=str), required=True,
              help="A kernel bank (kernel_bank.h5) or the `tfbdl dwp collect-kernels` / `tfbdl dwp run` "
                   "directory that holds it.")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of both VAEs (paper: 300).")
@click.option("--epochs-7x7", "epochs_7", type=_epochs, default=None, help="Training epochs of the 7x7 VAE only.")
@click.option("--epochs-5x5", "epochs_5", type=_epochs, default=None, help="Training epochs of the 5x5 VAE only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Slices per mini-batch (paper: 128).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly (paper: 1e-3).")
@click.option("--hidden-7x7", "hidden_7", type=click.IntRange(min=1), default=None,
              help="Hidden channels of the 7x7 VAE (paper: 32).")
@click.option("--latent-7x7", "latent_7", type=click.IntRange(min=1), default=None,
              help="Latent dimension of the 7x7 VAE (paper: 2).")
@click.option("--hidden-5x5", "hidden_5", type=click.IntRange(min=1), default=None,
              help="Hidden channels of the 5x5 VAE (paper: 64).")
@click.option("--latent-5x5", "latent_5", type=click.IntRange(min=1), default=None,
              help="Latent dimension of the 5x5 VAE (paper: 4).")
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=None,
              help="Fraction of the slices held out to report the ELBO on (default: scale preset).")
@common_run_options
def train_vae_command(bank, epochs, epochs_7, epochs_5, batch_size, lr, hidden_7, latent_7, hidden_5, latent_5,
                      val_fraction, scale, out, data_dir, seed, resume):
    """Train one kernel VAE per slice size (7x7 and 5x5) on the kernel bank; save them and plot their latent
    spaces and decoded samples."""
    bank_path = _bank_file(bank)
    preset = _replace(PRESETS[scale].vae, epochs_7=epochs_7 or epochs, epochs_5=epochs_5 or epochs,
                      batch_size=batch_size, learning_rate=lr, hidden_7=hidden_7,
                      latent_7=latent_7, hidden_5=hidden_5, latent_5=latent_5, validation_fraction=val_fraction)
    run = _standalone("vae", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                      bank=str(bank_path.resolve()))
    if not run.is_complete:
        stage_vae(run, bank_path, preset, seed=seed)
    _done(run, "train-vae")


def _bnn_preset(scale: str, *, priors, init, sizes, splits, epochs, widths, batch_size, lr, n_test, test_samples,
                dwp_samples, dwp_antithetic=None, log_sigma2_init=None) -> BnnPreset:
    return _replace(PRESETS[scale].bnn, priors=tuple(p for p in PRIORS if p in priors) if priors else None,
                    init=init, sizes=parse_sizes(sizes), splits=splits, epochs=epochs, widths=widths,
                    batch_size=batch_size, learning_rate=lr, n_test=n_test, test_samples=test_samples,
                    dwp_samples=dwp_samples, dwp_antithetic=dwp_antithetic, log_sigma2_init=log_sigma2_init)


def _vae_input(vae_run, needed: bool, why: str):
    """The finished VAE run given by ``--vae-run`` (required when ``needed``)."""
    if vae_run is None:
        if needed:
            raise InvalidOptionError(f"{why} needs the kernel VAEs: pass --vae-run (a finished `tfbdl dwp "
                                     "train-vae` run)")
        return None
    return _finished_stage(vae_run, "vae", "--vae-run")


prior_option = click.option("--prior", "priors", type=click.Choice(PRIORS), multiple=True,
                            help="Prior on conv1 and conv2; repeat for several (default: all three).")
init_option = click.option("--init", type=click.Choice(INITS), default=None,
                           help="Posterior means of the kernels: xavier (the reference's default), he, or dwp "
                                "(kernel-VAE decoder means, the reference's `--init_list vae vae`).")
sizes_option = click.option("--sizes", default=None,
                            help="Numbers of training examples, comma-separated, e.g. 50,100,200,500,1000 (default: "
                                 "scale preset).")
splits_option = click.option("--splits", type=click.IntRange(min=1), default=None,
                             help="Disjoint stratified training splits per size (paper: 10).")


@dwp.command("train-bnn")
@click.option("--vae-run", type=click.Path(file_okay=False, path_type=str), default=None,
              help="A finished `tfbdl dwp train-vae` (or `tfbdl dwp run`) directory; needed for --prior dwp and "
                   "--init dwp.")
@click.option("--release-vaes", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Instead of --vae-run: a folder with the deep weight prior release's trained kernel VAEs "
                   "(vae7x7.npz, vae5x5.npz; see KernelVAE.from_release).")
@prior_option
@init_option
@sizes_option
@splits_option
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of each BNN (paper: 10000).")
@_widths_option("Bayesian network (paper: 32 128)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (paper: 256).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly to 0 (paper: 1e-3).")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Target test images evaluated (default: scale preset; paper: all).")
@click.option("--test-samples", type=click.IntRange(min=1), default=None,
              help="Posterior samples averaged in the test predictive (paper: 10).")
@click.option("--dwp-samples", type=click.IntRange(min=1), default=None,
              help="Weight draws in the Monte Carlo estimate of the DWP's KL term (paper: 1).")
@click.option("--dwp-antithetic/--dwp-plain", default=None,
              help="Draw the DWP term's weight and latent noise in mirrored pairs (eps, eta), (-eps, -eta) "
                   "(unbiased; 4x less gradient noise on the kernels at twice the cost) or plainly, one draw each, "
                   "as the reference (default: plain).")
@click.option("--log-sigma2-init", type=FINITE_FLOAT, default=None,
              help="Initial log sigma^2 of every kernel entry of the posterior (paper: -10).")
@common_run_options
def train_bnn_command(vae_run, release_vaes, priors, init, sizes, splits, epochs, widths, batch_size, lr, n_test,
                      test_samples, dwp_samples, dwp_antithetic, log_sigma2_init, scale, out, data_dir, seed, resume):
    """Variational Bayesian fconv on the target (MNIST) with few examples, one prior per run on both
    convolutions; writes the table prior x number of examples -> test accuracy (mean ± std over splits)."""
    preset = _bnn_preset(scale, priors=priors, init=init, sizes=sizes, splits=splits, epochs=epochs, widths=widths,
                         batch_size=batch_size, lr=lr, n_test=n_test, test_samples=test_samples,
                         dwp_samples=dwp_samples, dwp_antithetic=dwp_antithetic,
                         log_sigma2_init=log_sigma2_init)
    if release_vaes is not None:
        if vae_run is not None:
            raise InvalidOptionError("give either --vae-run or --release-vaes, not both")
        vaes = release_vae_folder(release_vaes)
        run = _standalone("bnn", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                          release_vaes=str(vaes))
    else:
        vaes = _vae_input(vae_run, "dwp" in preset.priors or preset.init == "dwp", "--prior dwp / --init dwp")
        run = _standalone("bnn", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                          vae_run=str(vaes.path.resolve()) if vaes is not None else None)
    if not run.is_complete:
        stage_bnn(run, preset, vaes, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "train-bnn")


@dwp.command("dwp-init")
@click.option("--vae-run", type=click.Path(file_okay=False, path_type=str), required=True,
              help="A finished `tfbdl dwp train-vae` (or `tfbdl dwp run`) directory.")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Stratified target training examples (default: scale preset).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Networks per initialisation.")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of each network.")
@_widths_option("networks")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size.")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate (constant).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Target test images evaluated every epoch.")
@common_run_options
def dwp_init_command(vae_run, n_train, seeds, epochs, widths, batch_size, lr, n_test, scale, out, data_dir, seed,
                     resume):
    """Ordinary fconv networks initialised from kernel-VAE decoder samples vs Xavier initialisation: test
    accuracy per epoch, mean over seeds (dwp_init_curves.png)."""
    vaes = _vae_input(vae_run, True, "dwp-init")
    preset = _replace(PRESETS[scale].init, n_train=n_train, seeds=seeds, epochs=epochs, widths=widths,
                      batch_size=batch_size, learning_rate=lr, n_test=n_test)
    run = _standalone("init", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                      vae_run=str(vaes.path.resolve()))
    if not run.is_complete:
        stage_init(run, preset, vaes, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "dwp-init")


@dwp.command("run")
@click.option("--nets", type=click.IntRange(min=1), default=None, help="Source networks (paper: 100).")
@click.option("--threshold", type=FiniteFloatRange(min=0), default=None,
              help="Drop kernel slices whose Frobenius norm is below this (default: scale preset).")
@click.option("--vae-epochs", type=_epochs, default=None, help="Training epochs of both kernel VAEs (paper: 300).")
@prior_option
@init_option
@sizes_option
@splits_option
@click.option("--bnn-epochs", type=_epochs, default=None, help="Training epochs of each BNN (paper: 10000).")
@common_run_options
def run_command(nets, threshold, vae_epochs, priors, init, sizes, splits, bnn_epochs, scale, out, data_dir, seed,
                resume):
    """The whole pipeline in one run directory, OUT/dwp/<run-id>/ with a resumable sub-folder per stage:
    source nets, kernel bank, kernel VAEs, BNNs with three priors, DWP initialisation."""
    base = PRESETS[scale]
    presets = Presets(
        source=_replace(base.source, nets=nets), kernels=_replace(base.kernels, threshold=threshold),
        vae=_replace(base.vae, epochs_7=vae_epochs, epochs_5=vae_epochs),
        bnn=_bnn_preset(scale, priors=priors, init=init, sizes=sizes, splits=splits, epochs=bnn_epochs, widths=None,
                        batch_size=None, lr=None, n_test=None, test_samples=None, dwp_samples=None),
        init=base.init)
    run = run_pipeline(presets=presets, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"dwp run written to {run.path}")
