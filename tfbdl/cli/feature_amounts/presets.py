"""The feature-amounts experiment's name, choices and per-scale presets (the reference's
lib/cmdparser.py options where it has them), and how command-line options override a preset."""

from __future__ import annotations

import dataclasses

__all__ = ["DATASETS", "EXPERIMENT", "FAMILIES", "INITS", "PRESETS", "Preset", "resolve_preset"]

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


def resolve_preset(scale: str, **overrides) -> Preset:
    """The scale's preset with the given options (None: keep the preset's) applied."""
    return dataclasses.replace(PRESETS[scale], **{k: v for k, v in overrides.items() if v is not None})
