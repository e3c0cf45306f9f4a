"""The pipeline's data: source images for the source networks, target images for the BNNs and the
initialisation study, as float32 NHWC in [0, 1] with their provenance records.

At tiny/smoke scale :func:`tfbdl.data.load_for_run` substitutes Fashion-MNIST for notMNIST and a
10,000-digit MNIST; the provenance says so.
"""

from __future__ import annotations

from tfbdl.cli.common import typed_option
from tfbdl.cli.deep_weight_prior.presets import (PRESETS, SEED_SUBSET, SEED_TEST, SOURCE_DATA, TARGET_DATA,
                                                  SourcePreset)
from tfbdl.data.transforms import to_float01
from tfbdl.seeding import derive_seed

__all__ = ["resolve_data", "source_data", "target_data"]


def source_data(preset: SourcePreset, scale: str, data_dir, seed: int) -> tuple[dict, list[dict]]:
    """``({x_train [N, 28, 28, 1], y_train [N], x_test, y_test, num_classes, describe}, provenance)``
    of the source data, subsampled to ``preset.n_train`` / ``preset.n_test`` images."""
    from tfbdl.data import load_for_run

    train, test = (load_for_run(SOURCE_DATA, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, derive_seed(seed, SEED_SUBSET), option=typed_option("n_train"))
    keep_test = test.subset(preset.n_test, derive_seed(seed, SEED_TEST), option=typed_option("n_test"))
    data = {"x_train": to_float01(train.images[keep]), "y_train": train.labels[keep],
            "x_test": to_float01(test.images[keep_test]), "y_test": test.labels[keep_test],
            "num_classes": train.num_classes, "describe": train.describe()}
    return data, [train.provenance, test.provenance]


def target_data(scale: str, data_dir, n_test: int | None, seed: int) -> tuple[dict, list[dict]]:
    """``({x_train, y_train, x_test, y_test, num_classes}, provenance)`` of the target data: every
    training image (the stages draw their splits), ``n_test`` test images (None: all)."""
    from tfbdl.data import load_for_run

    train, test = (load_for_run(TARGET_DATA, split, scale, data_dir) for split in ("train", "test"))
    keep_test = test.subset(n_test, derive_seed(seed, SEED_TEST), option=typed_option("n_test"))
    data = {"x_train": to_float01(train.images), "y_train": train.labels,
            "x_test": to_float01(test.images[keep_test]), "y_test": test.labels[keep_test],
            "num_classes": train.num_classes}
    return data, [train.provenance, test.provenance]


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``dwp run`` at ``scale`` reads: the source-net data and the BNN / initialisation data."""
    presets = PRESETS[scale]
    source = source_data(presets.source, scale, data_dir, seed)[1]
    target = target_data(scale, data_dir, presets.bnn.n_test, seed)[1]
    return source + target + target_data(scale, data_dir, presets.init.n_test, seed)[1][1:]
