"""Numpy image transforms: scaling, per-channel statistics, contrast normalisation, augmentation.

Images follow the package convention: ``uint8`` in [0, 255] or ``float32`` NHWC ``[N, H, W, C]``.
Everything here is plain numpy so it can run before TensorFlow is imported (kernels, GPs and
data preparation use it too); the tf.data version of the augmentation is in
:mod:`tfbdl.data.pipeline`.
"""

from __future__ import annotations

import numpy as np

from tfbdl.errors import InvalidOptionError, ShapeError

__all__ = [
    "channel_stats",
    "check_channel_stats",
    "check_float01",
    "global_contrast_normalize",
    "pad_crop_flip",
    "pad_to_side",
    "standardize",
    "to_float01",
]


def _as_nhwc(images, name: str = "images") -> np.ndarray:
    """Return ``images`` as an array, raising ShapeError unless it is 4-D NHWC."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ShapeError(
            f"{name} must be NHWC [N, H, W, C], got shape {arr.shape}; add the missing axes "
            f"(e.g. images[..., None] for one channel, images[None] for a single image)"
        )
    return arr


def _check_numeric(arr: np.ndarray, name: str = "images") -> None:
    """Raise InvalidOptionError unless ``arr`` holds real numbers (ints or floats)."""
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InvalidOptionError(
            f"{name} must hold real numbers, got dtype {arr.dtype}; convert them first"
        )


def check_float01(arr: np.ndarray, name: str = "images") -> None:
    """Raise InvalidOptionError unless the float array ``arr`` is finite and within [0, 1]."""
    if arr.size == 0:
        return
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidOptionError(f"{name} contain NaN or infinite values; clean the data first")
    if lo < 0.0 or hi > 1.0:
        raise InvalidOptionError(
            f"float {name} must lie in [0, 1], got values in [{lo:g}, {hi:g}]; pass uint8 "
            f"pixels (0-255) or rescale the floats to [0, 1] first"
        )


def to_float01(images) -> np.ndarray:
    """Scale pixels to float32 in [0, 1]: uint8 is divided by 255, floats in [0, 1] pass through.

    Any shape is accepted (the map is elementwise); NHWC ``[N, H, W, C]`` is the usual one.
    Other dtypes (int32, bool, ...) and floats outside [0, 1] are rejected, because guessing
    their range silently is how a model ends up trained on images 255 times too bright.
    """
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(arr.dtype, np.floating):
        check_float01(arr)
        return arr.astype(np.float32, copy=False)
    raise InvalidOptionError(
        f"images must be uint8 (0-255) or float in [0, 1], got dtype {arr.dtype}; "
        f"convert them with images.astype(np.uint8) or scale floats to [0, 1]"
    )


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over N, H, W: ``images [N, H, W, C] -> ([C], [C])``.

    Accumulated in float64 (a float32 sum over 50 000 CIFAR images loses digits); the std is
    the population one (ddof=0), which is what :func:`standardize` needs to give unit variance.
    Both results are float64 and in the units of the input (compute them on ``to_float01``
    output to standardise [0, 1] images).
    """
    arr = _as_nhwc(images)
    _check_numeric(arr)
    if arr.shape[0] * arr.shape[1] * arr.shape[2] == 0:
        raise ShapeError(f"images of shape {arr.shape} hold no pixels; pass a non-empty batch")
    x = arr.astype(np.float64, copy=False)
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2))
    return mean, std


def standardize(images, mean, std) -> np.ndarray:
    """Per-channel ``(images - mean) / std`` as float32: ``[N, H, W, C]`` with ``mean, std [C]``.

    ``mean`` and ``std`` must be in the units of ``images`` (e.g. from :func:`channel_stats` of the
    training set) and ``std`` must be positive; the arithmetic is done in float64.
    """
    arr = _as_nhwc(images)
    _check_numeric(arr)
    mean, std = check_channel_stats(mean, std, arr.shape[-1])
    return ((arr.astype(np.float64) - mean) / std).astype(np.float32)


def check_channel_stats(mean, std, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-channel ``mean, std [C]`` (finite, positive std) and return them as float64."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if mean.shape != (c,) or std.shape != (c,):
        raise ShapeError(
            f"mean and std must both have shape ({c},) for images with {c} channels, got "
            f"{mean.shape} and {std.shape}; compute them with channel_stats on the same layout"
        )
    if not (np.all(np.isfinite(std)) and np.all(std > 0)):
        raise InvalidOptionError(
            f"std must be finite and positive in every channel, got {std}; a constant channel "
            f"cannot be standardised, drop it or pass std=1 for it"
        )
    return mean, std


def global_contrast_normalize(images, scale: float = 1.0, sqrt_bias: float = 10.0,
                              eps: float = 1e-8) -> np.ndarray:
    """Global contrast normalisation per image, float32 ``[N, H, W, C] -> [N, H, W, C]``.

    For each image ``x`` (all its pixels and channels together)::

        xc  = x - mean(x)
        out = xc / max(eps, sqrt(sqrt_bias + mean(xc ** 2)) / scale)

    This is the GCN of Goodfellow et al. (2013, maxout networks) in the variant that divides by
    the image's standard deviation (ddof=0: ``mean(xc ** 2)`` is the variance), one of the
    input preprocessings of the "Rethinking layer-wise feature amounts" experiments. It removes each
    image's brightness and divides out its contrast, so images differ only in their pattern.

    ``sqrt_bias`` regularises the contrast of nearly flat images; its default of 10 is meant for
    pixel values 0-255 (pass uint8 images, or raw 0-255 floats, unchanged; for [0, 1] images a
    comparable bias is 10 / 255**2). With ``sqrt_bias=0`` every non-constant image ends with
    ``mean(out ** 2) == scale ** 2``; ``eps`` only guards the division for constant images,
    which come out all zero. The arithmetic is float64.
    """
    arr = _as_nhwc(images)
    _check_numeric(arr)
    for name, value, ok in (("scale", scale, scale > 0), ("sqrt_bias", sqrt_bias, sqrt_bias >= 0),
                            ("eps", eps, eps > 0)):
        if not (np.isfinite(value) and ok):
            raise InvalidOptionError(
                f"{name}={value!r} is out of range; use scale > 0, sqrt_bias >= 0 and eps > 0"
            )
    n = arr.shape[0]
    x = arr.reshape(n, -1).astype(np.float64)
    xc = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(sqrt_bias + np.mean(xc ** 2, axis=1, keepdims=True)) / scale
    out = xc / np.maximum(eps, norm)
    return out.reshape(arr.shape).astype(np.float32)


def pad_crop_flip(images, rng: np.random.Generator, pad: int = 4, flip: bool = True) -> np.ndarray:
    """Standard CIFAR augmentation of a batch: zero-pad, random crop back, random h-flip.

    ``images [N, H, W, C] -> [N, H, W, C]`` of the same dtype. Each image is padded with ``pad``
    zeros on both sides of H and W, a window of H x W is cut at an offset drawn uniformly from
    ``0 .. 2 * pad`` (independently for rows and columns), and, when ``flip``, it is mirrored
    left-right with probability 1/2. All draws come from ``rng`` (a ``np.random.Generator``, e.g.
    ``np.random.default_rng(seed)``) in a fixed order: row offsets, column offsets, flips, so the
    same seed gives the same batch. ``pad=0, flip=False`` returns an unchanged copy.
    """
    arr = _as_nhwc(images)
    if not isinstance(rng, np.random.Generator):
        raise InvalidOptionError(
            f"rng must be a numpy Generator, got {type(rng).__name__}; "
            f"pass np.random.default_rng(seed)"
        )
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise InvalidOptionError(f"pad must be a non-negative integer, got {pad!r}")
    pad = int(pad)
    n, h, w, _ = arr.shape
    padded = np.pad(arr, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    rows = dy[:, None] + np.arange(h)[None, :]  # [N, H]
    cols = dx[:, None] + np.arange(w)[None, :]  # [N, W]
    if flip:
        flipped = rng.random(n) < 0.5
        cols = np.where(flipped[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def pad_to_side(images, side: int) -> np.ndarray:
    """Zero-pad ``images [N, H, W, C]`` centrally to at least ``side x side`` (e.g. 28x28 digits to the
    32x32 a CIFAR architecture expects); larger images are returned unchanged. Same dtype."""
    arr = _as_nhwc(images)
    pad_h, pad_w = max(0, int(side) - arr.shape[1]), max(0, int(side) - arr.shape[2])
    if not (pad_h or pad_w):
        return arr
    return np.pad(arr, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
