"""``tfbdl linearized``: "What can linearized neural networks actually say about generalization?"
(Ortiz-Jiménez, Moosavi-Dezfooli and Frossard, NeurIPS 2021; reference code gortizji/linearized-networks).

One command per script of the reference, each writing its own run directory:

- ``compute-ntk`` (``compute_ntk.py``): the empirical NTK Gram matrix of a network at
  initialisation on a data subset (train and test images together, as the reference), its
  eigendecomposition, the initial weights and the inputs (``eigen.h5``), the block file of the
  Gram matrix (``ntk.h5``, resumable) and ``ntk_spectrum.png``.
- ``train-ntk`` (``train_ntk.py``): for each ``--label-idx k`` the binary task
  ``sign(phi_k(x))`` on the same images, learnt by the network and by its linearization from the
  same initial weights with the same loop and optimizer; test accuracy against ``k``
  (``eigenfunction_accuracy.png``) and, for the trained network, the alignment of its final NTK
  with the labels (``ntk_alignment.png``).
- ``compute-nads`` / ``train-nads`` (``compute_nads.py`` / ``train_nads.py``): the neural
  anisotropy directions of a LeNet with a smooth activation (GeLU, as the reference) and the
  linearly separable datasets along single NADs, learnt by the linear and the non-linear network
  (``nads.png``, ``nad_spectrum.png``, ``nad_accuracy.png``).
- ``pretrained-ntk-comparison`` (``pretrained_ntk_comparison.py``): on one eigenfunction task,
  the test accuracy per epoch of the linearization at initialisation against the linearization
  after non-linear pre-training, on the task itself (the reference) and on the images' classes.
- ``train-cifar2`` (``train_cifar.py``): a binary CIFAR-10 task (classes 0-4 against 5-9, the
  reference's ``binarize_labels(labels, 4)``, or two chosen classes), network against
  linearization, training curves.
- ``run``: all of them in one run directory, one resumable sub-folder per part, and a summary.

Training is the reference's ``sgd_train``: one output logit ``z`` and the binary cross-entropy of
``sigmoid(z)``, SGD with momentum 0.9, the learning rate decayed linearly to 0 over the steps, no
weight decay; the test accuracy is measured after every epoch. The loss is computed here on the
two logits ``[-z/2, z/2]`` with the softmax cross-entropy, which is the same function and whose
argmax is ``z > 0``, so :class:`tfbdl.train.loop.Trainer` reports the right accuracy. The
linearized network is :class:`tfbdl.ntk.linearize.LinearizedModel` at the same initial weights,
trained by the same loop (the pretrained comparison linearizes without the offset ``f(x; θ0)``,
as the reference's ``linearize_diff_model``).

Data follow the reference: images in ``[0, 1]`` standardised per channel with the training
subset's mean and standard deviation. At tiny/smoke scale an absent CIFAR-10 is replaced by
Fashion-MNIST zero-padded to 32x32 (and MNIST by the embedded 10,000 digits); ``config.json``
and the summary say which data were read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time

import click
import numpy as np

from tfbdl.cli.common import data_line, open_run, record_run, typed_option
from tfbdl.cli.options import FiniteFloatRange, common_run_options
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "linearized"
MODELS = ("lenet", "resnet18")
ACTIVATIONS = ("relu", "gelu", "tanh", "softplus", "sigmoid")
DATASETS = ("cifar10", "mnist")
NTK_STRATEGIES = ("auto", "jacobian", "vmap_jacobian", "ntk_vector")
PRETRAIN_TASKS = ("task", "classes")
#: The reference's CIFAR2 labels: class <= 4 is the positive class (``binarize_labels(labels, 4)``).
HALVES_THRESHOLD = 4
# Datasets whose images the models see at another size: the stand-in's 28x28 images are padded.
_PAD_SIDE = {"cifar10": 32}


# --------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class Net:
    """An architecture with one output logit: the reference's LeNet, or the zoo's CIFAR ResNet18."""

    model: str = "lenet"
    widths: tuple[int, ...] = (6, 16, 120, 84)  # lenet: conv, conv, dense, dense; resnet18: 4 stages
    activation: str = "relu"


@dataclasses.dataclass(frozen=True)
class Training:
    """The reference's ``sgd_train`` settings (config ``train:``)."""

    epochs: int
    lr: float = 0.05  # max_lr, decayed linearly to 0 over the steps
    batch_size: int = 128
    momentum: float = 0.9


@dataclasses.dataclass(frozen=True)
class NTKPreset:
    """``compute-ntk``: which images, which network, how the Gram matrix is computed."""

    dataset: str
    n_train: int  # class-balanced training images (the first rows of the Gram matrix)
    n_test: int  # class-balanced test images
    net: Net
    block_size: int
    strategy: str
    num_eigvecs: int | None = None  # eigenpairs kept (None: all)


@dataclasses.dataclass(frozen=True)
class TasksPreset:
    """``train-ntk``: the eigenfunction indices learnt and how."""

    label_indices: tuple[int, ...]
    training: Training
    align_points: int | None = None  # images of the final-NTK alignment (None: all)


@dataclasses.dataclass(frozen=True)
class NADPreset:
    """``compute-nads``: the network and how its NADs are estimated (``tfbdl.ntk.nads``)."""

    side: int  # square grey images side x side
    net: Net
    num_inits: int = 1
    eval_std: float = 0.0  # x0 = eval_std * N(0, I); 0 is the reference's x0 = 0
    block_size: int = 64
    shown: int = 8  # NADs drawn in nads.png


@dataclasses.dataclass(frozen=True)
class NADTasksPreset:
    """``train-nads``: linearly separable datasets along single NADs (the reference's ``data:``)."""

    nad_indices: tuple[int, ...]
    n_train: int
    n_test: int
    training: Training
    epsilon: float = 1.0
    noise_std: float = 1.0


@dataclasses.dataclass(frozen=True)
class PretrainedPreset:
    """``pretrained-ntk-comparison``: one eigenfunction task, linearized before and after pre-training."""

    label_idx: int
    pretrain_on: tuple[str, ...]  # "task" (the reference) and/or "classes" (the images' classes, halved)
    pretrain_epochs: int
    training: Training


@dataclasses.dataclass(frozen=True)
class Cifar2Preset:
    """``train-cifar2``: the binary CIFAR-10 task."""

    dataset: str
    n_train: int
    n_test: int
    net: Net
    training: Training
    pair: tuple[int, int] | None = None  # two classes; None: classes 0-4 against 5-9 (the reference)


@dataclasses.dataclass(frozen=True)
class Presets:
    """Every part of ``run``."""

    ntk: NTKPreset
    tasks: TasksPreset
    nads: NADPreset
    nad_tasks: NADTasksPreset
    pretrained: PretrainedPreset
    cifar2: Cifar2Preset


LENET = Net()  # the reference's LeNet: 6-16 convolutions, 120-84 dense, ReLU
_TINY_NET = Net(widths=(4, 8, 32, 16))
_TINY_TRAINING = Training(2, batch_size=32)

PRESETS: dict[str, Presets] = {
    # CI: a narrow LeNet on 128 images, two indices, two epochs, NADs of 16x16 images.
    "tiny": Presets(
        ntk=NTKPreset("cifar10", 96, 32, _TINY_NET, block_size=64, strategy="vmap_jacobian"),
        tasks=TasksPreset((1, 10), _TINY_TRAINING),
        nads=NADPreset(16, dataclasses.replace(_TINY_NET, activation="gelu"), block_size=128, shown=6),
        nad_tasks=NADTasksPreset((0, 100), 128, 64, _TINY_TRAINING),
        pretrained=PretrainedPreset(1, PRETRAIN_TASKS, 2, _TINY_TRAINING),
        cifar2=Cifar2Preset("cifar10", 128, 64, _TINY_NET, _TINY_TRAINING)),
    # The reference's LeNet on a 1,000-image subset (750 train + 250 test): the NTK takes about 10 s
    # on 2 cores, each eigenfunction task about 25 s of CPU (both networks and the final NTK).
    "smoke": Presets(
        ntk=NTKPreset("cifar10", 750, 250, LENET, block_size=250, strategy="vmap_jacobian"),
        tasks=TasksPreset((1, 5, 20, 100, 500), Training(30, batch_size=32)),
        nads=NADPreset(32, dataclasses.replace(LENET, activation="gelu"), block_size=64, shown=8),
        nad_tasks=NADTasksPreset((0, 20, 100, 400, 1000), 1000, 1000, Training(20, batch_size=64)),
        pretrained=PretrainedPreset(10, PRETRAIN_TASKS, 15, Training(15, batch_size=32)),
        cifar2=Cifar2Preset("cifar10", 2000, 1000, LENET, Training(20))),
    # The reference: CIFAR-10 train + test (60,000 images, 1,000 eigenvectors), 100 epochs at lr 0.05,
    # batch 128; 10,000 + 10,000 NAD images. The Gram matrix needs about 15 GB in float32 and its
    # eigendecomposition about 60 GB; the final-NTK alignment uses the first 5,000 images.
    "paper": Presets(
        ntk=NTKPreset("cifar10", 50000, 10000, LENET, block_size=500, strategy="auto", num_eigvecs=1000),
        tasks=TasksPreset((0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 999), Training(100), align_points=5000),
        nads=NADPreset(32, dataclasses.replace(LENET, activation="gelu"), block_size=64, shown=16),
        nad_tasks=NADTasksPreset((0, 1, 5, 10, 50, 100, 200, 400, 600, 800, 1000, 1023), 10000, 10000,
                                 Training(100)),
        pretrained=PretrainedPreset(10, PRETRAIN_TASKS, 100, Training(100)),
        cifar2=Cifar2Preset("cifar10", 50000, 10000, LENET, Training(100))),
}


# --------------------------------------------------------------------------- option checks


def parse_widths(text: str | None) -> tuple[int, ...] | None:
    """``"6,16,120,84"`` -> ``(6, 16, 120, 84)``; None stays None."""
    if text is None:
        return None
    try:
        widths = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise InvalidOptionError(f"--widths {text!r} must be positive integers separated by commas, e.g. 6,16,120,84")
    return widths


def check_net(net: Net) -> Net:
    """``net`` if the architecture can be built, else InvalidOptionError (no TensorFlow needed)."""
    if net.model not in MODELS:
        raise InvalidOptionError(f"unknown model {net.model!r}; choose one of {', '.join(MODELS)}")
    if len(net.widths) != 4:
        parts = "two convolutions and two dense layers" if net.model == "lenet" else "four stages"
        raise InvalidOptionError(f"--widths: {net.model} needs 4 widths ({parts}), got {len(net.widths)}")
    if net.activation not in ACTIVATIONS:
        raise InvalidOptionError(f"unknown activation {net.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if net.model == "resnet18" and net.activation != "relu":
        raise InvalidOptionError("resnet18 has ReLU activations only; use --model lenet for another activation")
    return net


def check_ntk(preset: NTKPreset) -> NTKPreset:
    """``preset`` if consistent, else InvalidOptionError."""
    check_net(preset.net)
    if preset.dataset not in DATASETS:
        raise InvalidOptionError(f"unknown dataset {preset.dataset!r}; choose one of {', '.join(DATASETS)}")
    if preset.n_train < 2 or preset.n_test < 1:
        raise InvalidOptionError(f"--n-train must be >= 2 and --n-test >= 1, got {preset.n_train} and {preset.n_test}")
    n = preset.n_train + preset.n_test
    if preset.num_eigvecs is not None and not 1 <= preset.num_eigvecs <= n:
        raise InvalidOptionError(f"--num-eigvecs {preset.num_eigvecs} must be between 1 and the {n} images")
    return preset


def num_eigenvectors(preset: NTKPreset) -> int:
    """How many eigenvectors ``compute-ntk`` keeps with ``preset``."""
    return preset.num_eigvecs or preset.n_train + preset.n_test


def check_indices(indices, available: int, option: str, what: str) -> tuple[int, ...]:
    """Sorted distinct indices, each below ``available``, else InvalidOptionError."""
    indices = tuple(sorted({int(i) for i in indices}))
    if not indices:
        raise InvalidOptionError(f"give at least one {option}")
    bad = [i for i in indices if not 0 <= i < available]
    if bad:
        raise InvalidOptionError(f"{option} {bad[0]} is out of range: there are {available} {what} "
                                 f"(indices 0..{available - 1})")
    return indices


def check_training(training: Training) -> Training:
    """``training`` if usable, else InvalidOptionError."""
    if training.epochs < 1 or training.batch_size < 1 or not training.lr > 0:
        raise InvalidOptionError(f"--epochs and --batch-size must be >= 1 and --lr > 0, got {training.epochs}, "
                                 f"{training.batch_size} and {training.lr}")
    return training


def check_pair(pair) -> tuple[int, int] | None:
    """Two distinct CIFAR-10 class indices, or None."""
    if pair is None:
        return None
    a, b = (int(c) for c in pair)
    if a == b or not (0 <= a < 10 and 0 <= b < 10):
        raise InvalidOptionError(f"--pair needs two different classes in 0..9, got {a} {b}")
    return a, b


def _override(obj, **values):
    """``dataclasses.replace`` with the values that are not None."""
    return dataclasses.replace(obj, **{k: v for k, v in values.items() if v is not None})


def _override_training(training: Training, epochs=None, lr=None, batch_size=None) -> Training:
    return check_training(_override(training, epochs=epochs, lr=lr, batch_size=batch_size))


# --------------------------------------------------------------------------- data


def balanced_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` examples, as equally many per class as possible, drawn by ``seed``.

    ``n // C`` per class and one more for ``n % C`` classes drawn at random (``C`` classes present).
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.full(classes.size, n // classes.size)
    counts[rng.permutation(classes.size)[:n % classes.size]] += 1
    chosen = []
    for c, k in zip(classes, counts):
        candidates = np.flatnonzero(labels == c)
        if candidates.size < k:
            raise InvalidOptionError(f"class {c} has {candidates.size} examples, fewer than the {k} asked; "
                                     "lower --n-train / --n-test")
        chosen.append(rng.choice(candidates, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


def to_inputs(images: np.ndarray, dataset: str) -> np.ndarray:
    """uint8 NHWC -> float32 in [0, 1], zero-padded to the requested dataset's image side."""
    x = images.astype(np.float32) / 255.0
    side = _PAD_SIDE.get(dataset, 0)
    from tfbdl.data.transforms import pad_to_side

    return pad_to_side(x, side)


def standardize(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every array minus the training mean, over the training std, per channel (the reference's
    ``normalize_data``)."""
    mean = x_train.mean(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    std = x_train.std(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (x_train, *others)]


def load_subset(dataset: str, n_train: int, n_test: int, *, scale: str, data_dir, seed: int, pair=None):
    """Class-balanced training and test images (standardised) and their classes.

    With ``pair`` only those two classes are kept. A preset size beyond the data is reduced to
    all there is (noted); one the user typed (:func:`tfbdl.cli.common.typed_option`) is an
    error. Returns ``(x_train, c_train, x_test, c_test, provenance)``, the classes being the
    dataset's own (0..9).
    """
    from tfbdl.data import load_for_run

    parts, provenance = [], []
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        loaded = load_for_run(dataset, split, scale, data_dir)
        provenance.append(loaded.provenance)
        labels = loaded.labels
        pool = np.flatnonzero(np.isin(labels, pair)) if pair is not None else np.arange(labels.size)
        n = loaded.fit_count(n, option=typed_option(f"n_{split}"), available=pool.size,
                             what="images" if pair is None else f"images of classes {pair[0]} and {pair[1]}")
        keep = pool if n == pool.size else pool[balanced_indices(labels[pool], n, split_seed)]
        parts += [to_inputs(loaded.images[keep], dataset), labels[keep]]
    x_train, x_test = standardize(parts[0], parts[2])
    return x_train, parts[1], x_test, parts[3], provenance


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``linearized run`` at ``scale`` reads: the NTK subset and the CIFAR2 pair (no training)."""
    presets = PRESETS[scale]
    ntk = load_subset(presets.ntk.dataset, presets.ntk.n_train, presets.ntk.n_test, scale=scale, data_dir=data_dir,
                      seed=seed)[-1]
    cifar2 = presets.cifar2
    return ntk + load_subset(cifar2.dataset, cifar2.n_train, cifar2.n_test, scale=scale, data_dir=data_dir, seed=seed,
                             pair=cifar2.pair)[-1]


def halves(classes: np.ndarray) -> np.ndarray:
    """The reference's CIFAR2 labels: 1 for classes 0-4, 0 for 5-9 (int64)."""
    return (np.asarray(classes) <= HALVES_THRESHOLD).astype(np.int64)


# --------------------------------------------------------------------------- networks


def build_net(net: Net, input_shape, seed: int):
    """The one-logit network ``net`` for images of ``input_shape``, initialised by ``seed``."""
    check_net(net)
    if net.model == "lenet":
        from tfbdl.nn import ntk_lenet

        return ntk_lenet(1, input_shape, widths=net.widths, activation=net.activation, seed=seed)
    from tfbdl.nn import resnet18

    return resnet18(1, tuple(input_shape), widths=net.widths, seed=seed)


def net_at(net: Net, input_shape, weights):
    """``net`` built for ``input_shape`` holding ``weights`` (every variable, ``model.weights`` order)."""
    model = build_net(net, input_shape, seed=0)
    model.set_weights([np.asarray(w) for w in weights])
    return model


def net_from_attrs(attrs: dict) -> Net:
    """The :class:`Net` stored as a dict in a file's attributes."""
    stored = dict(attrs["net"])
    return Net(model=stored["model"], widths=tuple(stored["widths"]), activation=stored["activation"])


@functools.cache
def _binary_logits_class():
    import keras
    import tensorflow as tf

    class BinaryLogits(keras.Model):
        """``[-z/2, z/2]`` from a one-logit network ``z``: their softmax cross-entropy is the binary
        cross-entropy of ``sigmoid(z)`` and their argmax is ``z > 0`` (ties: class 0)."""

        def __init__(self, net, **kwargs):
            super().__init__(**kwargs)
            self.net = net
            self.built = True

        def call(self, x, training=None):
            z = self.net(x, training=training)
            return tf.concat([-0.5 * z, 0.5 * z], axis=-1)

    return BinaryLogits


def logits(model, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """The one-logit network's outputs ``[N]`` in inference mode (float64)."""
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False), np.float64).reshape(-1)
                           for i in range(0, len(x), batch)])


def accuracy_of(z: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the predictions ``z > 0`` against 0/1 labels."""
    return float(np.mean((z > 0).astype(np.int64) == y))


def distance(model, weights0) -> float:
    """``||theta - theta0||_2`` over the trainable weights."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(v.numpy(), np.float64) - np.asarray(w0, np.float64)))
                             for v, w0 in zip(model.trainable_variables, weights0))))


# --------------------------------------------------------------------------- training


class _EpochEnd:
    """Trainer callback: test loss and accuracy after every epoch, and a tick of a progress bar."""

    def __init__(self, x, y, bar):
        self.x, self.y, self.bar = x, y, bar

    def on_epoch_end(self, trainer, epoch, logs):
        result = trainer.evaluate((self.x, self.y), batch_size=500)
        self.bar.update(1)
        return {"test_loss": result["loss"], "test_accuracy": result["accuracy"]}


def fit_binary(run, name: str, net, train, test, training: Training, *, seed: int, label: str) -> list[dict]:
    """Train the one-logit ``net`` (a network or a LinearizedModel) on ``train = (x, y)`` with the
    reference's loss and schedule, resumably in ``run`` (``checkpoints/<name>/``, ``<name>.csv``).

    Returns the metric rows of every epoch (with ``test_accuracy`` on ``test = (x, y)``).
    """
    import keras

    from tfbdl.progress import progress
    from tfbdl.train.loop import Trainer

    epochs, lr = training.epochs, training.lr
    trainer = Trainer(_binary_logits_class()(net),
                      lambda: keras.optimizers.SGD(learning_rate=lr, momentum=training.momentum))
    done = run.is_done(f"{name}/epoch-{epochs}")
    with progress(epochs, label, show=not done) as bar:
        return trainer.fit(train, epochs, run_dir=run, seed=seed, batch_size=training.batch_size,
                           lr_schedule=lambda t: lr * max(0.0, 1.0 - t / epochs), lr_per_step=True,
                           callbacks=[_EpochEnd(*test, bar)], name=name, metrics_file=f"{name}.csv", verbose=False)


def curve(rows: list[dict], init_accuracy: float, key: str = "test_accuracy") -> list[float]:
    """``[accuracy at initialisation, after epoch 1, ...]``."""
    return [float(init_accuracy)] + [float(r[key]) for r in rows]


def train_both(run, net, train, test, training: Training, *, seed: int, label: str) -> dict:
    """The network and its linearization, from ``net``'s current weights, on the same data with the
    same loop and optimizer settings. Returns final and per-epoch numbers of both."""
    from tfbdl.ntk.linearize import LinearizedModel

    weights0 = [v.numpy() for v in net.trainable_variables]
    lin = LinearizedModel(net)
    z_net, z_lin = logits(net, test[0]), logits(lin, test[0])
    init = {"max_abs_logit_difference": float(np.max(np.abs(z_net - z_lin))),
            "nonlinear_test_accuracy": accuracy_of(z_net, test[1]), "linear_test_accuracy": accuracy_of(z_lin, test[1])}
    out = {"init": init}
    for name, model in (("nonlinear", net), ("linear", lin)):
        rows = fit_binary(run, name, model, train, test, training, seed=seed, label=f"{label}: {name}")
        out[name] = {"test_accuracy": float(rows[-1]["test_accuracy"]),
                     "train_accuracy": float(rows[-1]["train_accuracy"]),
                     "test_curve": curve(rows, init[f"{name}_test_accuracy"]),
                     "train_curve": [float(r["train_accuracy"]) for r in rows],
                     "distance_to_init": lin.distance_to_init() if model is lin else distance(net, weights0)}
        if name == "nonlinear":
            out["trained_net"] = net
    return out


# --------------------------------------------------------------------------- run directories


def stage_run(parent, stage: str, config: dict):
    """The resumable sub-run ``<parent run>/<stage>/``."""
    from tfbdl.io import RunDir

    return RunDir.open(parent.path.parent, parent.path.name, stage, config)


def stage_config(stage: str, preset, **extra) -> dict:
    """A stage's config: its preset and what else determines its results."""
    return {"stage": stage, **dataclasses.asdict(preset), **extra}


def read_json(path) -> dict:
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def finished_run(path, stage: str, files: tuple[str, ...], option: str) -> pathlib.Path:
    """The finished ``stage`` folder at ``path`` (a ``<stage>`` run or a ``linearized run`` directory
    holding one), else InvalidOptionError."""
    folder = pathlib.Path(path)
    if (folder / stage / "config.json").is_file():
        folder = folder / stage
    missing = [name for name in ("config.json", *files) if not (folder / name).is_file()]
    progress = folder / "progress.json"
    complete = progress.is_file() and "__complete__" in read_json(progress)
    if missing or not complete:
        raise InvalidOptionError(f"{option} {path} is not a finished `tfbdl linearized {stage}` run "
                                 f"({'no ' + ', '.join(missing) if missing else 'unfinished'}); run that command first")
    return folder


def eigen_count(folder: pathlib.Path, name: str = "eigen.h5") -> int:
    """Number of eigenvectors stored in ``folder/name`` (reads only the shape)."""
    import h5py

    with h5py.File(folder / name, "r") as f:
        return int(f["eigenvalues"].shape[0])


def _net_text(net: Net) -> str:
    name = "the reference's LeNet" if net.model == "lenet" else "ResNet18"
    return f"{name} (widths {', '.join(map(str, net.widths))}, {net.activation}, one output logit)"


def _training_text(training: Training) -> str:
    return (f"{training.epochs} epochs, SGD momentum {training.momentum:g}, lr {training.lr:g} decayed linearly to 0, "
            f"batch {training.batch_size}")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


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
    strategy = _stored_strategy(run.file("ntk.h5"))
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


def _stored_strategy(path) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        value = f.attrs["strategy"]
    return value.decode() if isinstance(value, bytes) else str(value)


def spectrum_figure(path, values: np.ndarray, preset: NTKPreset) -> None:
    """Eigenvalues of the NTK Gram matrix against their index, log scale."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    index = np.arange(values.size)
    positive = values > 0
    ax.semilogy(index[positive], values[positive], lw=1.2)
    ax.set_xlabel("eigenvalue index k")
    ax.set_ylabel("eigenvalue λ_k of the NTK")
    ax.set_title(f"NTK spectrum at initialisation ({preset.net.model}, {preset.n_train + preset.n_test} images)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def ntk_summary(preset: NTKPreset, metrics: dict) -> str:
    head = ", ".join(f"{v:.3g}" for v in metrics["eigenvalues_head"][:6])
    return (f"Empirical NTK at initialisation of {_net_text(preset.net)}, {metrics['num_params']:,} parameters, on "
            f"{metrics['n_train']} training + {metrics['n_test']} test images ({metrics['input_shape']}): computed in "
            f"{metrics['seconds']:.1f} s (strategy {metrics['strategy']}). {metrics['num_eigvecs']} eigenpairs kept; "
            f"largest eigenvalues {head}; smallest {metrics['eigenvalue_min']:.3g} "
            f"({metrics['negative_eigenvalues']} below 0 from rounding). `ntk_spectrum.png`: the spectrum; "
            f"`eigen.h5`: eigenvalues, eigenvectors, initial weights and inputs.\n\nData: {metrics['data']}.\n")


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
    eigenvectors when those images are all of them. Cached in ``alignment.json``."""
    from tfbdl.ntk.eigen import alignment
    from tfbdl.ntk.empirical import compute_ntk

    cached = task_run.path / "alignment.json"
    if cached.is_file():
        return read_json(cached)
    n = len(gram0)
    if strategy == "auto":
        strategy = "vmap_jacobian"
    gram = compute_ntk(net, x[:n], block_size=min(block_size, n), strategy=strategy)
    gram = np.asarray(gram, np.float64)
    result = {"points": n, "init": alignment(gram0, signs[:n]), "final": alignment(gram, signs[:n])}
    if n == eigvecs.shape[0]:
        result["energy_final"] = [float(e) for e in np.einsum("ij,ij->j", eigvecs, gram @ eigvecs)]
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
               "tasks": [_task_row(t) for t in tasks]}
    run.write_metrics(metrics)
    eigenfunction_figure(run.file("eigenfunction_accuracy.png"), metrics["tasks"])
    alignment_figure(run.file("ntk_alignment.png"), tasks, eig.eigenvalues)
    run.finish(tasks_summary(preset, metrics))
    return metrics


def _task_row(task: dict) -> dict:
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


def _index_axis(ax, indices) -> None:
    """A symmetric-log x axis for indices that may start at 0."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.2 if min(indices) == 0 else min(indices) * 0.8)


def _linear_vs_nonlinear_axes(rows: list[dict], index_key: str, xlabel: str, title: str):
    """A figure of the linear and non-linear networks' test accuracy against ``row[index_key]``."""
    from tfbdl.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    index = [r[index_key] for r in rows]
    ax.plot(index, [r["linear_test_accuracy"] for r in rows], marker="o", label="linearized network")
    ax.plot(index, [r["nonlinear_test_accuracy"] for r in rows], marker="s", label="non-linear network")
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    _index_axis(ax, index)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig, ax, index


def eigenfunction_figure(path, rows: list[dict]) -> None:
    """Test accuracy of the linear and non-linear networks against the eigenfunction index, with λ_k."""
    from tfbdl.plots import save_figure

    fig, ax, k = _linear_vs_nonlinear_axes(rows, "label_idx", "eigenfunction index k (task sign(φ_k))",
                                           "NTK eigenfunctions: linear vs non-linear training")
    twin = ax.twinx()
    twin.semilogy(k, [max(r["eigenvalue"], 1e-12) for r in rows], color="gray", ls="--", lw=0.9)
    twin.set_ylabel("λ_k (dashed)", color="gray", fontsize=8)
    save_figure(fig, path)


def alignment_figure(path, tasks: list[dict], eigenvalues: np.ndarray) -> None:
    """(a) alignment of the labels with the NTK at initialisation and after training the network;
    (b) the reference's energies of the final NTK along the initial eigenvectors."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    energies = [t for t in tasks if "energy_final" in t["alignment"]]
    fig, axes = plt.subplots(1, 2 if energies else 1, figsize=(9.2 if energies else 4.8, 3.4), squeeze=False)
    ax = axes[0, 0]
    k = [t["label_idx"] for t in tasks]
    ax.plot(k, [t["alignment"]["init"] for t in tasks], marker="o", label="NTK at initialisation")
    ax.plot(k, [t["alignment"]["final"] for t in tasks], marker="s", label="NTK of the trained network")
    _index_axis(ax, k)
    ax.set_yscale("log")
    ax.set_xlabel("eigenfunction index k")
    ax.set_ylabel("alignment yᵀΘy / (‖Θ‖_F ‖y‖²)")
    ax.legend(fontsize=8)
    ax.set_title("kernel-target alignment", fontsize=9)
    if energies:
        ax = axes[0, 1]
        j = np.arange(1, eigenvalues.size + 1)
        ax.loglog(j, np.maximum(eigenvalues, 1e-12), color="black", lw=1.0, label="λ_j (initialisation)")
        for t in energies:
            ax.loglog(j, np.maximum(t["alignment"]["energy_final"], 1e-12), lw=0.8,
                      label=f"trained on k = {t['label_idx']}")
        ax.set_xlabel("initial eigenvector index j + 1")
        ax.set_ylabel("v_jᵀ Θ_final v_j")
        ax.set_title("final NTK along the initial eigenvectors", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)


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
    lines = [f"Binary tasks sign(φ_k(x)) from the eigenvectors of the NTK at initialisation, learnt by "
             f"{_net_text(net_from_attrs(metrics))} and by its "
             f"linearization from the same initial weights ({_training_text(preset.training)}; "
             f"{metrics['n_train']} training / {metrics['n_test']} test images). `eigenfunction_accuracy.png`, "
             "`ntk_alignment.png`.", ""]
    lines += tasks_table(metrics["tasks"]) + [""] + tasks_findings(metrics["tasks"])
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- compute-nads


def stage_compute_nads(run, preset: NADPreset, *, seed: int) -> dict:
    """The NADs of ``preset.net`` on ``side x side`` grey images and their figures, in ``run``."""
    from tfbdl.ntk.eigen import save_eigen
    from tfbdl.ntk.nads import compute_nads

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
               "low_frequency_energy": low_frequency_energy(nads[:preset.shown])}
    run.write_metrics(metrics)
    run.finish(nads_summary(preset, metrics))
    return metrics


def low_frequency_energy(nads: np.ndarray) -> list[float]:
    """For each NAD, the fraction of its energy in the central quarter of the (shifted) 2-D spectrum."""
    out = []
    for nad in nads:
        power = np.abs(np.fft.fftshift(np.fft.fft2(nad[..., 0]))) ** 2
        h, w = power.shape
        centre = power[h // 4:h - h // 4, w // 4:w - w // 4]
        out.append(float(centre.sum() / power.sum()))
    return out


def nads_figure(path, nads: np.ndarray, shown: int) -> None:
    """The first NADs in pixel space (top) and the magnitude of their 2-D DFT, centred (bottom)."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    shown = min(shown, len(nads))
    fig, axes = plt.subplots(2, shown, figsize=(1.2 * shown, 2.7), squeeze=False)
    for i in range(shown):
        image = nads[i][..., 0]
        limit = float(np.max(np.abs(image)))
        axes[0, i].imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[1, i].imshow(np.abs(np.fft.fftshift(np.fft.fft2(image))), cmap="magma")
        axes[0, i].set_title(f"NAD {i}", fontsize=7)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle("first NADs (top) and |DFT| (bottom, zero frequency at the centre)", fontsize=8)
    save_figure(fig, path)


def nad_spectrum_figure(path, values: np.ndarray) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    positive = values > 0
    ax.semilogy(np.arange(values.size)[positive], values[positive], lw=1.2)
    ax.set_xlabel("NAD index i")
    ax.set_ylabel("eigenvalue of the NAD Gram matrix")
    ax.set_title("NAD spectrum (mixed-derivative NTK at initialisation)", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def nads_summary(preset: NADPreset, metrics: dict) -> str:
    head = ", ".join(f"{v:.3g}" for v in metrics["eigenvalues_head"][:5])
    low = ", ".join(f"{v:.2f}" for v in metrics["low_frequency_energy"])
    point = "x0 = 0" if preset.eval_std == 0 else f"x0 ~ {preset.eval_std:g} N(0, I)"
    return (f"NADs of {_net_text(preset.net)} on {preset.side}x{preset.side} grey images ({metrics['num_params']:,} "
            f"parameters): eigenvectors of the mixed-derivative Gram matrix at {point}, averaged over "
            f"{preset.num_inits} initialisation(s), in {metrics['seconds']:.1f} s. Largest eigenvalues {head}. "
            f"`nads.png`: the first {len(metrics['low_frequency_energy'])} NADs and their spectra (fraction of energy "
            f"in the central, low-frequency quarter: {low}); `nad_spectrum.png`.\n")


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


def nad_accuracy_figure(path, rows: list[dict]) -> None:
    """Test accuracy of the linear and non-linear networks against the NAD index of the task."""
    from tfbdl.plots import save_figure

    fig, _, _ = _linear_vs_nonlinear_axes(rows, "nad_idx", "NAD index of the discriminative direction",
                                          "linearly separable data along one NAD")
    save_figure(fig, path)


def nad_tasks_table(rows: list[dict]) -> list[str]:
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
    lines = [f"Linearly separable datasets along single NADs (margin ε = {preset.epsilon:g}, noise σ = "
             f"{preset.noise_std:g} orthogonal to the NAD; {preset.n_train} training / {preset.n_test} test "
             f"images), learnt by the network and its linearization ({_training_text(preset.training)}). "
             "`nad_accuracy.png`.", ""]
    lines += nad_tasks_table(metrics["tasks"]) + [""] + nad_tasks_findings(metrics["tasks"])
    return "\n".join(lines) + "\n"


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
            curves[_NONLINEAR_CURVE] = curve(rows, accuracy_of(z0, data[1][1]))
        plan.append((f"linear-{source}", net))
    for name, net in plan:
        rows = fit_binary(run, name, LinearizedModel(net, offset=False), *task, preset.training, seed=seed,
                          label=name)
        curves[_CURVE_NAMES[name]] = curve(rows, zero)
    metrics = {"label_idx": k, "eigenvalue": float(eig.eigenvalues[k]), "pretrain_epochs": preset.pretrain_epochs,
               "pretrained_test_accuracy": pretrained_accuracy, "curves": curves,
               "final": {name: c[-1] for name, c in curves.items()}}
    run.write_metrics(metrics)
    pretrained_figure(run.file("pretrained_ntk_comparison.png"), ordered(curves), k)
    run.finish(pretrained_summary(preset, metrics))
    return metrics


_CURVE_NAMES = {"linear-init": "linearized at initialisation",
                "linear-task": "linearized after pre-training on the task",
                "linear-classes": "linearized after pre-training on the classes"}
_NONLINEAR_CURVE = "non-linear network"
CURVE_ORDER = (*_CURVE_NAMES.values(), _NONLINEAR_CURVE)


def ordered(curves: dict) -> dict:
    """The curves in :data:`CURVE_ORDER` (JSON files keep them sorted by name)."""
    return {name: curves[name] for name in CURVE_ORDER if name in curves}


def pretrained_figure(path, curves: dict, k: int) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, marker="." if len(values) < 40 else None, label=name,
                ls=":" if name == _NONLINEAR_CURVE else "-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"eigenfunction task k = {k}: the kernel at initialisation vs after pre-training", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def pretrained_summary(preset: PretrainedPreset, metrics: dict) -> str:
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


def cifar2_figure(path, metrics: dict) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, label, colour in (("linear", "linearized", "tab:blue"), ("nonlinear", "non-linear", "tab:orange")):
        test = metrics[name]["test_curve"]
        ax.plot(np.arange(len(test)), test, color=colour, label=f"{label}: test")
        ax.plot(np.arange(1, len(test)), metrics[name]["train_curve"], color=colour, ls="--", label=f"{label}: train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("binary CIFAR-10 task: network vs its linearization", fontsize=9)
    save_figure(fig, path)


def cifar2_summary(preset: Cifar2Preset, metrics: dict) -> str:
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


# --------------------------------------------------------------------------- the whole pipeline

#: Each stage's figures, copied into the top run directory (REPORT.md shows those).
FIGURES = {"compute-ntk": ("ntk_spectrum.png",),
           "train-ntk": ("eigenfunction_accuracy.png", "ntk_alignment.png"),
           "compute-nads": ("nads.png", "nad_spectrum.png"),
           "train-nads": ("nad_accuracy.png",),
           "pretrained-ntk-comparison": ("pretrained_ntk_comparison.png",),
           "train-cifar2": ("cifar2_curves.png",)}


def run_pipeline(presets: Presets, *, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Every part in ``OUT/linearized/<run-id>/<part>/`` (each skipped when finished), then the summary."""
    from tfbdl.io import atomic_write_bytes

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **{name: dataclasses.asdict(getattr(presets, name)) for name in _fields(presets)}}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    common = {"scale": scale, "seed": seed}
    stages = {}

    def stage(name, preset, work, **inputs):
        stages[name] = stage_run(run, name, stage_config(name, preset, **common, **inputs))
        if not stages[name].is_complete:
            click.echo(f"== {name}", err=True)
            work(stages[name])

    stage("compute-ntk", presets.ntk,
          lambda r: stage_compute_ntk(r, presets.ntk, scale=scale, data_dir=data_dir, seed=seed), data_dir=data_dir)
    stage("train-ntk", presets.tasks,
          lambda r: stage_train_ntk(r, presets.tasks, stages["compute-ntk"].path, seed=seed), ntk_run="compute-ntk")
    stage("compute-nads", presets.nads, lambda r: stage_compute_nads(r, presets.nads, seed=seed))
    stage("train-nads", presets.nad_tasks,
          lambda r: stage_train_nads(r, presets.nad_tasks, stages["compute-nads"].path, seed=seed),
          nads_run="compute-nads")
    stage("pretrained-ntk-comparison", presets.pretrained,
          lambda r: stage_pretrained(r, presets.pretrained, stages["compute-ntk"].path, seed=seed),
          ntk_run="compute-ntk")
    stage("train-cifar2", presets.cifar2,
          lambda r: stage_cifar2(r, presets.cifar2, scale=scale, data_dir=data_dir, seed=seed), data_dir=data_dir)

    for name, figures in FIGURES.items():
        for figure in figures:
            atomic_write_bytes(run.file(figure), stages[name].file(figure).read_bytes())
    provenance = sum((read_json(stages[name].file("config.json")).get("data", [])
                      for name in ("compute-ntk", "train-cifar2")), [])
    run.record_data(provenance)
    metrics = {name: read_json(r.file("metrics.json")) for name, r in stages.items()}
    run.write_metrics(metrics)
    run.finish(pipeline_summary(presets, metrics, provenance))
    record_run(run)
    return run


def _fields(obj) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


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


# --------------------------------------------------------------------------- command line


@click.group("linearized")
def linearized():
    """What can linearized neural networks actually say about generalization? (Ortiz-Jiménez et al., 2021):
    NTK eigenfunctions, NADs, linear vs non-linear training."""


def ntk_options(function):
    """--dataset --model --widths --activation --n-train --n-test --block-size --ntk-strategy --num-eigvecs."""
    options = [
        click.option("--dataset", type=click.Choice(DATASETS), default=None,
                     help="Images of the NTK (default: cifar10; at tiny/smoke an absent CIFAR-10 is replaced by "
                          "Fashion-MNIST padded to 32x32, MNIST by 10,000 embedded digits)."),
        click.option("--model", type=click.Choice(MODELS), default=None,
                     help="lenet: the reference's LeNet (default); resnet18: the CIFAR ResNet18."),
        click.option("--widths", default=None,
                     help="Comma-separated widths: lenet conv,conv,dense,dense (default 6,16,120,84); resnet18 "
                          "its four stages (e.g. 16,32,64,128)."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
                     help="Activation of the lenet (default relu, as the reference's NTK experiments)."),
        click.option("--n-train", type=click.IntRange(min=2), default=None,
                     help="Class-balanced training images (default: scale preset; paper 50,000)."),
        click.option("--n-test", type=click.IntRange(min=1), default=None,
                     help="Class-balanced test images, appended to the training ones in the Gram matrix "
                          "(default: scale preset; paper 10,000)."),
        click.option("--block-size", type=click.IntRange(min=1), default=None,
                     help="Images per NTK block: memory is a few blocks' Jacobians (default: scale preset)."),
        click.option("--ntk-strategy", type=click.Choice(NTK_STRATEGIES), default=None,
                     help="How NTK blocks are computed (tfbdl.ntk.empirical; auto times them; default: scale preset)."),
        click.option("--num-eigvecs", type=click.IntRange(min=1), default=None,
                     help="Eigenpairs kept, largest first (default: all at tiny/smoke, 1,000 at paper)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def training_options(function):
    """--epochs --lr --batch-size."""
    for option in reversed([
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help="Training epochs of every network (default: scale preset; paper 100)."),
        click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Initial learning rate, decayed linearly to 0 (default 0.05, the reference's)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Batch size (default: scale preset; paper 128)."),
    ]):
        function = option(function)
    return function


label_idx_option = click.option(
    "--label-idx", "label_indices", type=click.IntRange(min=0), multiple=True,
    help="Eigenfunction index k of a task sign(φ_k); repeat for several (default: scale preset).")
nad_idx_option = click.option(
    "--nad-idx", "nad_indices", type=click.IntRange(min=0), multiple=True,
    help="NAD index of a linearly separable task; repeat for several (default: scale preset).")
ntk_run_option = click.option(
    "--ntk-run", type=click.Path(exists=True, file_okay=False), default=None,
    help="A finished `linearized compute-ntk` run (or `linearized run` folder) to use instead of computing the NTK.")


def resolve_ntk(scale: str, dataset=None, model=None, widths=None, activation=None, n_train=None, n_test=None,
                block_size=None, ntk_strategy=None, num_eigvecs=None) -> NTKPreset:
    """The scale's NTK preset with the given options, checked."""
    preset = PRESETS[scale].ntk
    net = _override(preset.net, model=model, widths=parse_widths(widths), activation=activation)
    if model == "resnet18" and widths is None:
        net = dataclasses.replace(net, widths=(64, 128, 256, 512) if scale == "paper" else (16, 32, 64, 128))
    return check_ntk(_override(preset, dataset=dataset, net=net, n_train=n_train, n_test=n_test,
                               block_size=block_size, strategy=ntk_strategy, num_eigvecs=num_eigvecs))


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
                                 training=_override_training(base.training, epochs, lr, batch_size))
    check_indices(preset.label_indices, _available_eigenvectors(ntk_run, ntk), "--label-idx", "eigenvectors")
    source = {"ntk_run": str(pathlib.Path(ntk_run).resolve())} if ntk_run else {"ntk": ntk}
    run = _open_command("linearized-train-ntk", scale, seed, out, resume, data_dir, tasks=preset, **source)
    if not run.is_complete:
        folder = _ntk_folder(run, ntk_run, ntk, scale=scale, data_dir=data_dir, seed=seed)
        stage_train_ntk(run, preset, folder, seed=seed)
    record_run(run)
    click.echo(f"linearized train-ntk run written to {run.path}")


def resolve_nads(scale: str, side=None, activation=None, widths=None, num_inits=None, eval_std=None) -> NADPreset:
    preset = PRESETS[scale].nads
    net = check_net(_override(preset.net, activation=activation, widths=parse_widths(widths)))
    if side is not None and side < 16:
        raise InvalidOptionError(f"--side {side} is too small: the LeNet's two 2x2 poolings need at least 16")
    return _override(preset, side=side, net=net, num_inits=num_inits, eval_std=eval_std)


def nad_options(function):
    """--side --activation --widths --num-inits --eval-std."""
    for option in reversed([
        click.option("--side", type=click.IntRange(min=1), default=None,
                     help="Side of the square grey images whose NADs are computed (default: 32, tiny 16)."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
                     help="Activation of the LeNet (default gelu: a ReLU net at x0 = 0 has no NADs)."),
        click.option("--widths", default=None, help="LeNet widths conv,conv,dense,dense (default 6,16,120,84)."),
        click.option("--num-inits", type=click.IntRange(min=1), default=None,
                     help="Initialisations the NAD Gram matrix is averaged over (default 1, the reference)."),
        click.option("--eval-std", type=FiniteFloatRange(min=0), default=None,
                     help="Evaluate at x0 = EVAL_STD * N(0, I) instead of the reference's x0 = 0."),
    ]):
        function = option(function)
    return function


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
    preset = _override(base, nad_indices=tuple(nad_indices) or None, n_train=n_train, n_test=n_test,
                       training=_override_training(base.training, epochs, lr, batch_size))
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
    preset = _override(base, label_idx=label_idx, pretrain_on=tuple(dict.fromkeys(pretrain_on)) or None,
                       pretrain_epochs=pretrain_epochs, training=_override_training(base.training, epochs, lr,
                                                                                    batch_size))
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


def resolve_cifar2(scale: str, pair=None, model=None, widths=None, n_train=None, n_test=None, epochs=None, lr=None,
                   batch_size=None) -> Cifar2Preset:
    base = PRESETS[scale].cifar2
    net = _override(base.net, model=model, widths=parse_widths(widths))
    if model == "resnet18" and widths is None:
        net = dataclasses.replace(net, widths=(64, 128, 256, 512) if scale == "paper" else (16, 32, 64, 128))
    return _override(base, pair=check_pair(pair) if pair else None, net=check_net(net), n_train=n_train,
                     n_test=n_test, training=_override_training(base.training, epochs, lr, batch_size))


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
                                training=_override_training(base.tasks.training, epochs))
    check_indices(tasks.label_indices, num_eigenvectors(ntk), "--label-idx", "eigenvectors")
    check_indices((base.pretrained.label_idx,), num_eigenvectors(ntk), "--label-idx (pretrained comparison)",
                  "eigenvectors")
    nad_tasks = _override(base.nad_tasks, nad_indices=tuple(nad_indices) or None,
                          training=_override_training(base.nad_tasks.training, epochs))
    check_indices(nad_tasks.nad_indices, base.nads.side ** 2, "--nad-idx", "NADs")
    presets = Presets(
        ntk=ntk, tasks=tasks, nads=base.nads, nad_tasks=nad_tasks,
        pretrained=_override(base.pretrained, pretrain_epochs=epochs,
                             training=_override_training(base.pretrained.training, epochs)),
        cifar2=resolve_cifar2(scale, model=model, epochs=epochs))
    run = run_pipeline(presets, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"linearized run written to {run.path}")
