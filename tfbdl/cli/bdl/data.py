"""The images of the ``swag`` and ``multiswag`` runs: loaded, subsampled, scaled and padded.

Images reach the networks as float32 in [0, 1], zero-padded to the smallest side the model's
reference architecture accepts (28x28 digits in a 32x32 CIFAR network); a validation split
can be held out for temperature scaling, and the CIFAR runs train on padded random crops and
flips.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.bdl.presets import SwagPreset
from tfbdl.data.subsets import seeded_subset
from tfbdl.errors import InvalidOptionError

__all__ = ["MODEL_SIDES", "augmented_epochs", "load_training_data", "model_side", "prepare_images",
           "split_validation"]

# Models whose reference architecture needs 32x32 inputs: smaller images are zero-padded to it.
MODEL_SIDES = {"preresnet20": 32, "vgg16": 32, "vgg16_bn": 32}


def model_side(model: str) -> int:
    """The smallest image side ``model`` accepts (0: any)."""
    return MODEL_SIDES.get(model, 0)


def prepare_images(images: np.ndarray, model: str) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 in [0, 1], zero-padded to the model's smallest input side."""
    from tfbdl.data.transforms import pad_to_side, to_float01

    return pad_to_side(to_float01(images), model_side(model))


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


def split_validation(x, y, n_val: int, seed: int, provenance: dict | None = None, option: str | None = None):
    """(x_fit, y_fit, x_val, y_val): ``n_val`` seeded random training images held out (at most
    half; see :func:`tfbdl.data.sources.fit_holdout` for what a larger one becomes)."""
    from tfbdl.data.sources import fit_holdout

    n_val = fit_holdout(provenance or {"scale": "paper"}, n_val, y.size, option=option)
    held = np.zeros(y.size, bool)
    held[seeded_subset(y.size, n_val, seed + 2)] = True
    return x[~held], y[~held], x[held], y[held]


def augmented_epochs(x, y, batch_size: int, seed: int):
    """epoch -> batches of (padded random crops and flips of x, y) in a (seed, epoch) order."""
    from tfbdl.data.transforms import pad_crop_flip

    def epoch_batches(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(y.size)
        images = pad_crop_flip(x[order], rng)
        return [(images[i:i + batch_size], y[order[i:i + batch_size]]) for i in range(0, y.size, batch_size)]

    return epoch_batches
