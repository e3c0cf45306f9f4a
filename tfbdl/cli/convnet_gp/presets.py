"""The convnet-gp experiments' names, file names, paper numbers and per-scale presets.

Three experiments share them: ``run`` (kernel matrices, then exact GP classification),
``search`` (random search over the ConvNet GP family, then marginal-likelihood optimisation) and
``learning-curve`` (test error against the number of training images).
"""

from __future__ import annotations

import dataclasses

from tfbdl.errors import InvalidOptionError

__all__ = ["CURVE_EXPERIMENT", "CURVE_FILE", "CURVE_PRESETS", "CurvePreset", "DATA_FILE", "EXPERIMENT",
           "KERNEL_FILE", "KERNEL_NAMES", "PAPER_ERROR_NOTE", "PAPER_N_TRAIN", "PAPER_TEST_ERROR", "PRESETS",
           "Preset", "REFERENCE_TRAIN_RANGE", "SEARCH_EXPERIMENT", "SEARCH_PRESETS", "SEARCH_SPACE", "SearchPreset",
           "resolve"]

EXPERIMENT = "convnet-gp"
SEARCH_EXPERIMENT = "convnet-gp-search"
CURVE_EXPERIMENT = "convnet-gp-curve"
KERNEL_NAMES = ("convnet_gp", "residual_cnn_gp", "resnet_gp")
DATA_FILE = "data.npz"  # labels and indices (into the official splits), in kernel order
KERNEL_FILE = "kernels.h5"
CURVE_FILE = "learning_curve.csv"
PAPER_ERROR_NOTE = "the paper reports about 1% MNIST test error with all 60,000 training images"

#: The reference's training pool within the official 60,000 training images (cnn-gp's train_range).
REFERENCE_TRAIN_RANGE = (5000, 55000)

#: Paper, Table 1: MNIST test error (%) with 50,000 training images.
PAPER_TEST_ERROR = {"convnet_gp": 1.03, "residual_cnn_gp": 0.96, "resnet_gp": 0.84}
PAPER_N_TRAIN = 50000


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of a kernel run at one scale (None: the whole split)."""

    n_train: int | None
    n_test: int | None
    block: int


PRESETS = {
    "tiny": Preset(n_train=200, n_test=200, block=100),
    "smoke": Preset(n_train=5000, n_test=None, block=500),
    "paper": Preset(n_train=None, n_test=None, block=200),
}


def resolve(scale: str, n_train, n_test, block) -> Preset:
    """The scale's preset with explicit options overriding it."""
    base = PRESETS[scale]
    preset = Preset(n_train if n_train is not None else base.n_train,
                    n_test if n_test is not None else base.n_test,
                    block if block is not None else base.block)
    for name, value in dataclasses.asdict(preset).items():
        if value is not None and value < 1:
            raise InvalidOptionError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return preset


# Ranges of the random search over the ConvNet GP family (depth, and the variances per patch
# element), sampled log-uniformly for the variances.
SEARCH_SPACE = {"depth": (1, 8, "int"), "var_weight": (0.1, 10.0, "log"), "var_bias": (0.1, 10.0, "log")}


@dataclasses.dataclass(frozen=True)
class SearchPreset:
    """Trials and sizes of a hyperparameter search at one scale."""

    trials: int
    n_train: int
    n_val: int
    ml_steps: int
    # Points of the marginal-likelihood fit: its gradient keeps every layer's maps for all
    # n (n + 1) / 2 pairs (about 0.4 MB per pair for the ConvNet GP on 28x28 images).
    ml_points: int


SEARCH_PRESETS = {
    "tiny": SearchPreset(trials=3, n_train=60, n_val=60, ml_steps=3, ml_points=40),
    "smoke": SearchPreset(trials=10, n_train=500, n_val=500, ml_steps=20, ml_points=100),
    "paper": SearchPreset(trials=100, n_train=5000, n_val=5000, ml_steps=100, ml_points=300),
}


@dataclasses.dataclass(frozen=True)
class CurvePreset:
    """Training sizes (ascending) and test images (None: all) of a learning curve at one scale."""

    sizes: tuple[int, ...]
    n_test: int | None
    block: int


CURVE_PRESETS = {
    "tiny": CurvePreset(sizes=(50, 100, 200), n_test=200, block=100),
    "smoke": CurvePreset(sizes=(500, 1000, 2000, 5000, 7000), n_test=None, block=500),
    "paper": CurvePreset(sizes=(1000, 2000, 5000, 10000, 20000, 50000), n_test=None, block=500),
}
