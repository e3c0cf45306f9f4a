"""tf.data input pipelines for NHWC image arrays: scale, shuffle, augment, standardise, batch.

TensorFlow is imported inside the functions only, so importing this module stays cheap (the
command line's ``--help`` and error paths never pay for TensorFlow).

Determinism: shuffling and augmentation take their randomness from ``seed`` alone (through
tf.data's seeded ``shuffle`` and ``Dataset.random`` plus stateless image ops), so two datasets
made with the same seed yield the same batches, epoch after epoch. As for every op-level TF
seed, the numbers also depend on TF's global seed (``keras.utils.set_random_seed``) when one is
set; set it the same way in both runs.
"""

from __future__ import annotations

import math

import numpy as np

from tfbdl.data.labels import check_labels
from tfbdl.data.transforms import check_channel_stats, check_float01
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.seeding import derive_seed
from tfbdl.validate import integer

__all__ = ["dataset_size_batches", "make_dataset"]

_AUGMENT_STREAM = 0xA06  # stream key of the augmentation draws (the shuffle uses the seed itself)


def dataset_size_batches(n: int, batch_size: int, drop_remainder: bool) -> int:
    """Number of batches in one epoch of ``n`` examples: ``n // b`` or ``ceil(n / b)``."""
    n = integer(n, "n", 0)
    batch_size = integer(batch_size, "batch_size", 1)
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


def _augment_seed(seed: int) -> int:
    """A seed for the augmentation stream, derived from ``seed`` but distinct from the shuffle's."""
    return derive_seed(seed, _AUGMENT_STREAM, bits=32)


def _pad_crop_flip_batch(x, seed, pad: int):
    """TF version of :func:`tfbdl.data.transforms.pad_crop_flip` for a float batch ``[B, H, W, C]``.

    ``seed`` is a stateless seed ``[2]``: the same seed gives the same crops and flips.
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    h, w = x.shape[1], x.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    dy = tf.random.stateless_uniform([b], seeds[0], minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    dx = tf.random.stateless_uniform([b], seeds[1], minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([b], seeds[2]) < 0.5
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = dy[:, None] + tf.range(h)[None, :]  # [B, H]
    cols = dx[:, None] + tf.range(w)[None, :]  # [B, W]
    cols = tf.where(flip[:, None], tf.reverse(cols, axis=[1]), cols)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)  # [B, H, W + 2 pad, C]
    return tf.gather(out, cols, axis=2, batch_dims=1)  # [B, H, W, C]


def make_dataset(images, labels, batch_size: int, *, shuffle: bool = False, seed: int | None = None,
                 augment: bool = False, pad: int = 4, repeat: bool = False,
                 drop_remainder: bool = False, standardize=None):
    """A batched ``tf.data.Dataset`` of ``(images float32 [B, H, W, C], labels int64 [B])``.

    ``images`` are uint8 (0-255) or float (in [0, 1]) NHWC ``[N, H, W, C]``, ``labels`` int
    ``[N]``. Images are kept in their dtype in memory and scaled to float32 [0, 1] per batch.
    Steps, in order:

    - ``shuffle``: full-buffer shuffle seeded by ``seed`` (required), a new order every epoch;
    - ``repeat``: repeat forever (epochs follow each other, each reshuffled);
    - batch (``drop_remainder`` drops a last, smaller batch);
    - ``augment``: random zero-pad by ``pad`` / crop / horizontal flip per image, with stateless
      TF ops seeded per batch from a stream derived from ``seed`` (required), different in every
      epoch but identical for the same seed;
    - ``standardize=(mean, std)``: per-channel ``(x - mean) / std`` with ``mean, std [C]`` in
      [0, 1] units (``channel_stats(to_float01(train_images))``), after augmentation so the
      padding is black;
    - ``prefetch(AUTOTUNE)``.
    """
    import tensorflow as tf

    imgs = np.asarray(images)
    if imgs.ndim != 4:
        raise ShapeError(
            f"images must be NHWC [N, H, W, C], got shape {imgs.shape}; add the missing axes "
            f"(e.g. images[..., None] for one channel)"
        )
    if imgs.dtype == np.uint8:
        scale_uint8 = True
    elif np.issubdtype(imgs.dtype, np.floating):
        check_float01(imgs)
        imgs = imgs.astype(np.float32, copy=False)
        scale_uint8 = False
    else:
        raise InvalidOptionError(
            f"images must be uint8 (0-255) or float32 in [0, 1], got dtype {imgs.dtype}; "
            f"convert them first"
        )
    labs = check_labels(labels)
    n = imgs.shape[0]
    if labs.shape[0] != n:
        raise ShapeError(
            f"images hold {n} examples but labels {labs.shape[0]}; pass matching arrays"
        )
    if n == 0:
        raise ShapeError("images and labels are empty; pass at least one example")
    batch_size = integer(batch_size, "batch_size", 1)
    pad = integer(pad, "pad", 0)
    if (shuffle or augment) and seed is None:
        raise InvalidOptionError(
            "shuffle=True and augment=True need an explicit seed so runs are reproducible; "
            "pass seed=<int> (e.g. the run's --seed)"
        )
    if seed is not None:
        seed = integer(seed, "seed", 0)
    if standardize is not None:
        try:
            mean, std = standardize
        except (TypeError, ValueError):
            raise InvalidOptionError(
                "standardize must be a pair (mean, std) of per-channel arrays"
            ) from None
        mean, std = (a.astype(np.float32) for a in check_channel_stats(mean, std, imgs.shape[-1]))

    ds = tf.data.Dataset.from_tensor_slices((imgs, labs))
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=bool(drop_remainder))

    def prepare(x, y, r=None):
        x = tf.cast(x, tf.float32)
        if scale_uint8:
            x = x / 255.0
        if augment:
            x = _pad_crop_flip_batch(x, tf.stack([r, tf.constant(seed, tf.int64)]), pad)
        if standardize is not None:
            x = (x - mean) / std
        return x, y

    if augment:
        stream = tf.data.Dataset.random(seed=_augment_seed(seed), rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, stream)).map(
            lambda xy, r: prepare(xy[0], xy[1], r),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
    else:
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
