"""The images of ``tfbdl linearized``: class-balanced subsets scaled as the reference does.

Images in ``[0, 1]`` (zero-padded to the side the requested dataset's networks expect when a
stand-in with smaller images is read), standardised per channel with the training subset's mean
and standard deviation (the reference's ``normalize_data``).
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.common import typed_option
from tfbdl.cli.linearized.presets import HALVES_THRESHOLD, PRESETS
from tfbdl.data.subsets import balanced_indices
from tfbdl.data.transforms import channel_stats, pad_to_side, standardize, to_float01

__all__ = ["PAD_SIDE", "halves", "load_subset", "resolve_data", "standardize_like_train", "to_inputs"]

#: Datasets whose images the models see at another size: the stand-in's 28x28 images are padded.
PAD_SIDE = {"cifar10": 32}


def to_inputs(images: np.ndarray, dataset: str) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` -> float32 in [0, 1], zero-padded to the requested dataset's image side."""
    return pad_to_side(to_float01(images), PAD_SIDE.get(dataset, 0))


def standardize_like_train(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every ``[N, H, W, C]`` array minus the training mean, over the training std, per channel (the
    reference's ``normalize_data``); a constant channel is divided by 1. float32 arrays."""
    mean, std = channel_stats(x_train)
    std = np.where(std > 0, std, 1.0)
    return [standardize(x, mean, std) for x in (x_train, *others)]


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
    x_train, x_test = standardize_like_train(parts[0], parts[2])
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
