"""The images the convnet-gp experiments read: seeded subsets of the splits, flattened to
float64 ``[N, H*W*C]`` in [0, 1] (the kernels are computed in float64 unless asked otherwise),
with the provenance records each run stores."""

from __future__ import annotations

import numpy as np

from tfbdl.cli.common import typed_option
from tfbdl.cli.convnet_gp.presets import REFERENCE_TRAIN_RANGE, SEARCH_PRESETS, Preset, resolve

__all__ = ["load_curve_inputs", "load_inputs", "resolve_data", "resolve_search_data", "training_pool"]


def load_inputs(dataset: str, scale: str, data_dir, preset: Preset, seed: int, options=None):
    """Training and test images as float [N, H*W*C] in [0, 1], labels, and provenance records.

    Returns ``(x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape, provenance,
    described)``. A preset size larger than the data is reduced to what exists (noted in the
    provenance); one the user typed (:func:`~tfbdl.cli.common.typed_option`; ``options`` maps a
    field to the option to name instead) that cannot be met is an InvalidOptionError.
    """
    from tfbdl.data import load_for_run

    train = load_for_run(dataset, "train", scale, data_dir)
    test = load_for_run(dataset, "test", scale, data_dir)
    rng = np.random.default_rng(seed)

    def take(loaded, n, field):
        option = (options or {}).get(field, typed_option(field))
        n = None if n is None else loaded.fit_count(n, option=option)
        keep = np.sort(rng.permutation(loaded.labels.size)[:n]) if n is not None else np.arange(loaded.labels.size)
        images = loaded.images[keep].astype(np.float64) / 255.0  # scaled in float64, cast later
        return images.reshape(len(keep), -1), loaded.labels[keep], keep

    x_train, y_train, train_idx = take(train, preset.n_train, "n_train")
    x_test, y_test, test_idx = take(test, preset.n_test, "n_test")
    image_shape = train.images.shape[1:]
    return (x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape,
            [train.provenance, test.provenance], [train.describe(), test.describe()])


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``convnet-gp run`` at ``scale`` reads, sizes fitted to the data here (nothing computed)."""
    return load_inputs("mnist", scale, data_dir, resolve(scale, None, None, None), seed)[7]


def resolve_search_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``convnet-gp search`` at ``scale`` reads (nothing computed)."""
    preset = SEARCH_PRESETS[scale]
    sizes = Preset(n_train=preset.n_train + preset.n_val, n_test=1, block=1)
    return load_inputs("mnist", scale, data_dir, sizes, seed)[7][:1]


def training_pool(n_images: int) -> tuple[np.ndarray, str]:
    """Indices of the training pool and how it was chosen: the reference's 5,000-54,999 when the
    official 60,000 images are there, else every image (an embedded subset)."""
    if n_images >= REFERENCE_TRAIN_RANGE[1]:
        return np.arange(*REFERENCE_TRAIN_RANGE), "official training images 5,000-54,999 (the reference's split)"
    return np.arange(n_images), f"all {n_images:,} training images here (not the official 60,000)"


def load_curve_inputs(dataset: str, scale: str, data_dir, sizes: tuple[int, ...], n_test: int | None, seed: int):
    """Nested training images ``[max(sizes), D]`` in [0, 1], test images ``[Nt, D]``, labels, indices,
    image shape, provenance and the sizes actually used (a preset's larger sizes dropped, noted).

    Returns ``(x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape, used, provenance)``.
    """
    from tfbdl.data import load_for_run

    train = load_for_run(dataset, "train", scale, data_dir)
    test = load_for_run(dataset, "test", scale, data_dir)
    pool, pool_text = training_pool(train.labels.size)
    train.note(f"training sets drawn from {pool_text}")
    largest = train.fit_count(max(sizes), option=typed_option("sizes"), available=pool.size)
    used = tuple(n for n in sizes if n <= largest) or (largest,)
    if used != sizes:
        train.note(f"sizes {', '.join(f'{n:,}' for n in sizes if n not in used)} dropped: "
                   f"the pool has {pool.size:,} images")
    order = pool[np.random.default_rng(seed).permutation(pool.size)[:used[-1]]]
    if n_test is None:
        test_idx = np.arange(test.labels.size)
    else:
        n = test.fit_count(n_test, option=typed_option("n_test"))
        test_idx = np.sort(np.random.default_rng(seed + 1).permutation(test.labels.size)[:n])

    def flat(images, idx):
        return (images[idx].astype(np.float64) / 255.0).reshape(len(idx), -1)

    return (flat(train.images, order), train.labels[order], order, flat(test.images, test_idx),
            test.labels[test_idx], test_idx, train.images.shape[1:], used, [train.provenance, test.provenance])
