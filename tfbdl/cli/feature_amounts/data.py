"""The images a feature-amounts sweep trains and validates on: seeded subsets of the splits
(validation on the test split, as the reference does), as float32 zero-padded to 32x32."""

from __future__ import annotations

import numpy as np

from tfbdl.cli.common import typed_option
from tfbdl.cli.feature_amounts.presets import PRESETS, Preset

__all__ = ["load_data", "prepare_images", "resolve_data"]


def prepare_images(images: np.ndarray, gcn: bool) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 (in [0, 1], or GCN'd), zero-padded to at least 32x32 (the
    five poolings of a VGG need it; after GCN zero is each image's mean)."""
    from tfbdl.data.transforms import global_contrast_normalize, pad_to_side, to_float01

    x = global_contrast_normalize(images) if gcn else to_float01(images)
    x = np.asarray(x, np.float32)
    return pad_to_side(x, 32)


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``feature-amounts sweep`` at ``scale`` reads, sizes fitted to the data here."""
    return load_data(PRESETS[scale], scale, data_dir, seed)[-1]


def load_data(preset: Preset, scale: str, data_dir, seed: int):
    """``(x_train, y_train, x_val, y_val, num_classes, provenance)``; validation is (a subset of)
    the test split, as the reference validates on the test set. Images are float32
    ``[N, 32, 32, C]`` (:func:`prepare_images`)."""
    from tfbdl.data import load_for_run

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, seed, option=typed_option("n_train"))
    val = test.subset(preset.n_val, seed + 1, option=typed_option("n_val"))
    return (prepare_images(train.images[keep], preset.gcn), train.labels[keep],
            prepare_images(test.images[val], preset.gcn), test.labels[val], train.num_classes,
            [train.provenance, test.provenance])
