"""Scale presets of ``tfbdl linearized`` and the checks that turn command-line options into a
consistent preset (no TensorFlow needed, so a bad option fails before anything is computed).

One frozen dataclass per part of the experiment (:class:`NTKPreset`, :class:`TasksPreset`,
:class:`NADPreset`, :class:`NADTasksPreset`, :class:`PretrainedPreset`, :class:`Cifar2Preset`),
gathered in :class:`Presets`; :data:`PRESETS` holds them for the tiny, smoke and paper scales.
The ``resolve_*`` functions apply a command's options to its scale's preset and check the result.
"""

from __future__ import annotations

import dataclasses

from tfbdl.errors import InvalidOptionError

__all__ = ["ACTIVATIONS", "CURVE_NAMES", "CURVE_ORDER", "Cifar2Preset", "DATASETS", "EXPERIMENT", "HALVES_THRESHOLD",
           "LENET", "MODELS", "NADPreset", "NADTasksPreset", "NONLINEAR_CURVE", "NTKPreset", "NTK_STRATEGIES", "Net",
           "PRESETS", "PRETRAIN_TASKS", "Presets", "PretrainedPreset", "TasksPreset", "Training", "check_indices",
           "check_net", "check_ntk", "check_pair", "check_training", "num_eigenvectors", "ordered", "override",
           "override_training", "parse_widths", "resolve_cifar2", "resolve_nads", "resolve_ntk"]

EXPERIMENT = "linearized"
MODELS = ("lenet", "resnet18")
ACTIVATIONS = ("relu", "gelu", "tanh", "softplus", "sigmoid")
DATASETS = ("cifar10", "mnist")
NTK_STRATEGIES = ("auto", "jacobian", "vmap_jacobian", "ntk_vector")
PRETRAIN_TASKS = ("task", "classes")
#: The reference's CIFAR2 labels: class <= 4 is the positive class (``binarize_labels(labels, 4)``).
HALVES_THRESHOLD = 4
#: The pretrained comparison's curves: the linearizations (by training run name) and the network itself.
CURVE_NAMES = {"linear-init": "linearized at initialisation",
               "linear-task": "linearized after pre-training on the task",
               "linear-classes": "linearized after pre-training on the classes"}
NONLINEAR_CURVE = "non-linear network"
CURVE_ORDER = (*CURVE_NAMES.values(), NONLINEAR_CURVE)


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


def override(obj, **values):
    """``dataclasses.replace`` with the values that are not None."""
    return dataclasses.replace(obj, **{k: v for k, v in values.items() if v is not None})


def override_training(training: Training, epochs=None, lr=None, batch_size=None) -> Training:
    """``training`` with the given epochs, learning rate and batch size (None keeps one), checked."""
    return check_training(override(training, epochs=epochs, lr=lr, batch_size=batch_size))


def resolve_ntk(scale: str, dataset=None, model=None, widths=None, activation=None, n_train=None, n_test=None,
                block_size=None, ntk_strategy=None, num_eigvecs=None) -> NTKPreset:
    """The scale's NTK preset with the given options, checked."""
    preset = PRESETS[scale].ntk
    net = override(preset.net, model=model, widths=parse_widths(widths), activation=activation)
    if model == "resnet18" and widths is None:
        net = dataclasses.replace(net, widths=(64, 128, 256, 512) if scale == "paper" else (16, 32, 64, 128))
    return check_ntk(override(preset, dataset=dataset, net=net, n_train=n_train, n_test=n_test,
                              block_size=block_size, strategy=ntk_strategy, num_eigvecs=num_eigvecs))


def resolve_nads(scale: str, side=None, activation=None, widths=None, num_inits=None, eval_std=None) -> NADPreset:
    """The scale's NAD preset with the given options, checked."""
    preset = PRESETS[scale].nads
    net = check_net(override(preset.net, activation=activation, widths=parse_widths(widths)))
    if side is not None and side < 16:
        raise InvalidOptionError(f"--side {side} is too small: the LeNet's two 2x2 poolings need at least 16")
    return override(preset, side=side, net=net, num_inits=num_inits, eval_std=eval_std)


def resolve_cifar2(scale: str, pair=None, model=None, widths=None, n_train=None, n_test=None, epochs=None, lr=None,
                   batch_size=None) -> Cifar2Preset:
    """The scale's CIFAR2 preset with the given options, checked."""
    base = PRESETS[scale].cifar2
    net = override(base.net, model=model, widths=parse_widths(widths))
    if model == "resnet18" and widths is None:
        net = dataclasses.replace(net, widths=(64, 128, 256, 512) if scale == "paper" else (16, 32, 64, 128))
    return override(base, pair=check_pair(pair) if pair else None, net=check_net(net), n_train=n_train,
                    n_test=n_test, training=override_training(base.training, epochs, lr, batch_size))


def ordered(curves: dict) -> dict:
    """The curves in :data:`CURVE_ORDER` (JSON files keep them sorted by name)."""
    return {name: curves[name] for name in CURVE_ORDER if name in curves}
