"""CIFAR-10-C corruptions (Hendrycks & Dietterich 2019) in numpy, scipy and Pillow.

"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations" (ICLR 2019)
defines 19 corruptions at 5 severities. The parameters below are those of the CIFAR variant of the
authors' generator (``hendrycks/robustness``, ``ImageNet-C/create_c/make_cifar_c.py``); the code is
an independent implementation that needs neither OpenCV, scikit-image nor ImageMagick.

Every corruption is a function ``f(images, severity, rng) -> images``:

* ``images``: ``uint8`` NHWC ``[N, H, W, C]`` with ``C`` = 1 or 3 (H, W >= 8), values 0..255;
* ``severity``: an int in 1..5;
* ``rng``: a :class:`numpy.random.Generator`, the only source of randomness, so the same
  generator state gives the same output;
* the result is a new ``uint8`` array of the same shape.

The work is done in floats in [0, 1] (or [0, 255] where the reference works there) and the final
conversion to ``uint8`` truncates, as the reference's ``np.uint8(...)`` of the returned
``clip(x, 0, 1) * 255`` does when it stores CIFAR-10-C (``motion_blur`` rounds to nearest instead:
there the reference's output is ImageMagick's 8-bit image). Casts to ``uint8`` *inside* a corruption
(glass blur, snow, spatter) truncate as the reference does, after clipping to 0..255 (where the
reference's cast could wrap around).

Exactness: the deterministic corruptions (``contrast``, ``brightness``, ``saturate`` on RGB,
``pixelate``, ``jpeg_compression``, ``gaussian_blur``, ``defocus_blur``, ``zoom_blur``) follow the
reference's arithmetic step by step (float32 where it works in float32, the same operation order,
scikit-image's HSV formulas, OpenCV's float32 disk kernel, ``scipy.ndimage.zoom``'s order-1 weights,
the zoom factors as the floats ``np.arange(1, end, 0.01)``), so for the same input image they give
the stored CIFAR-10-C pixels exactly, given the same scipy (``gaussian_blur``) and Pillow
(``pixelate``, ``jpeg_compression``). The one computation not replayed operation by operation is
``cv2.filter2D`` in ``defocus_blur`` (OpenCV correlates a 17x17 kernel through a DFT; here it is a
direct correlation): the float results differ by about 1e-15, which changes a stored pixel only if
its value lies within that distance of an integer grey level (none did in 900 test images per
severity compared against OpenCV 4.10).

Parameters (``c`` is indexed by severity 1..5)
----------------------------------------------

=================  =======================================================================
corruption         per-severity parameters (severity 1, 2, 3, 4, 5)
=================  =======================================================================
gaussian_noise     std of additive N(0, std): .04, .06, .08, .09, .10
shot_noise         Poisson rate (photons at white): 500, 250, 100, 75, 50
impulse_noise      fraction of values set to 0 or 1 (half each): .01, .02, .03, .05, .07
speckle_noise      std of multiplicative x + x*N(0, std): .06, .10, .12, .16, .20
gaussian_blur      sigma: .4, .6, .7, .8, 1
defocus_blur       (disk radius, anti-alias sigma): (.3,.4) (.4,.5) (.5,.6) (1,.2) (1.5,.1)
glass_blur         (sigma, max shift, iterations): (.05,1,1) (.25,1,1) (.4,1,1) (.25,1,2) (.4,1,2)
motion_blur        (radius, sigma); angle ~ U(-45, 45) deg: (6,1) (6,1.5) (6,2) (8,2) (9,2.5)
zoom_blur          zooms np.arange(1, end, .01), end = 1.06, 1.11, 1.16, 1.21, 1.26 (7, 12, 16,
                   21, 26 zooms: 1.00, 1.01, ... as floats, e.g. 1.2500000000000002)
snow               (mean, std, zoom, threshold, blur radius, blur sigma, blend):
                   (.1,.2,1,.6,8,3,.95) (.1,.2,1,.5,10,4,.9) (.15,.3,1.75,.55,10,4,.9)
                   (.25,.3,2.25,.6,12,6,.85) (.3,.3,1.25,.65,14,12,.8); angle ~ U(-135, -45)
frost              (image weight, frost weight): (1,.2) (1,.3) (.9,.4) (.85,.4) (.75,.45)
fog                (fog amount, fractal decay): (.2,3) (.5,3) (.75,2.5) (1,2) (1.5,1.75)
spatter            (mean, std, sigma, threshold, intensity, mud):
                   (.62,.1,.7,.7,.5,0) (.65,.1,.8,.7,.5,0) (.65,.3,1,.69,.5,0)
                   (.65,.1,.7,.69,.6,1) (.65,.1,.5,.68,.6,1)
brightness         added to HSV value: .05, .1, .15, .2, .3
contrast           factor towards the per-channel mean: .75, .5, .4, .3, .15
saturate           (HSV saturation factor, offset): (.3,0) (.1,0) (1.5,0) (2,.1) (2.5,.2)
elastic_transform  (alpha, sigma, affine) as fractions of the image side (32 in the reference):
                   (0,0,.08) (.05,.2,.07) (.08,.06,.06) (.1,.04,.05) (.1,.03,.03)
pixelate           down-scale factor (box filter both ways): .95, .9, .85, .75, .65
jpeg_compression   JPEG quality: 80, 65, 58, 50, 40
=================  =======================================================================

Severity is monotone in the parameters of most corruptions, and then the change to the image
(PSNR to the clean image) grows with severity. Exceptions, all inherited from the reference
parameters:

* ``saturate``: severities 1-2 desaturate (x.3, x.1), 3-5 oversaturate (x1.5 .. x2.5 + .2);
* ``glass_blur``: sigma falls from .4 to .25 at severity 4 while the passes double, and
  severities 1 and 2 differ only by a blur too small to matter next to the pixel shuffle;
* ``elastic_transform``: the affine part shrinks (2.56 -> .96 px at 32x32) while the local
  elastic part grows, so the PSNR *rises* with severity (severity 1 is a pure affine warp);
* ``frost``: the image weight falls (1, 1, .9, .85, .75) while the frost weight rises by steps of
  0 to .1, which partly cancels, so the change need not grow from severity 3 on;
* ``spatter``: water at severities 1-3, mud at 4-5;
* ``pixelate``: on 32x32 images severities 2 and 3 are 28 and 27 px; the box-resampling error
  depends on where edges fall on the pixel grid, and for about half of the images severity 3
  changes less than severity 2 (over a batch the two are within a fraction of a dB);
* ``motion_blur``: severities 3 (6, 2) and 4 (8, 2) are the same blur: the longer kernel only
  adds taps whose weights are below 1e-7.

Severity 5 changes the image more than severity 1 for every corruption but ``elastic_transform``,
``saturate`` on grey images (a no-op), and ``saturate`` on strongly saturated colours: severity 5
changes the HSV saturation ``s`` by ``min(1.5 s + .2, 1 - s)`` and severity 1 by ``.7 s``, which
is more only for ``s`` below about 0.59 (the case of most photographs).

Approximations, where the reference used libraries this module does without
-----------------------------------------------------------------------------

* ``motion_blur`` (and the snow layer's blur): the reference calls ImageMagick's
  ``MotionBlurImage(radius, sigma, angle)``. It is reproduced as ImageMagick defines it: a
  one-sided line kernel of ``2*ceil(radius)+1`` taps with weights ``exp(-i^2 / (2 sigma^2))``
  (normalised), tap ``i`` at the integer offset ``(ceil(i cos a - .5), ceil(i sin a - .5))``
  (columns, rows), edge pixels replicated outside the image. It is evaluated as the sum of the
  kernel's shifted copies, which equals ``scipy.ndimage.correlate(mode="nearest")`` with the
  rasterised line kernel (:func:`line_kernel`) but costs only one pass per tap. Not reproduced:
  ImageMagick's 16-bit quantum and the PNG round trip (rounding differences of one grey level).
* ``defocus_blur``: the disk is built in float32 and smoothed by the 3x3 anti-alias Gaussian as
  ``cv2.GaussianBlur`` does it (float32 kernel from ``getGaussianKernel``, separable float32
  passes, reflect-101 border), which gives OpenCV's kernel bit for bit; the filtering is a direct
  correlation in float64 with reflect-101 borders like ``cv2.filter2D`` (see Exactness above).
* ``spatter`` (water, severities 1-3): OpenCV's ``Canny(50, 150)`` is replaced by a Canny of our
  own (3x3 Sobel, L1 magnitude, OpenCV's 4-sector non-maximum suppression, 8-connected
  hysteresis), and the 5x5-mask ``distanceTransform`` by the exact Euclidean distance
  (``scipy.ndimage.distance_transform_edt``); histogram equalisation, the 3x3 box blurs and the
  emboss filter follow OpenCV's definitions.
* ``elastic_transform``: ``cv2.warpAffine`` (bilinear, reflect-101 border) is done with
  ``scipy.ndimage.map_coordinates(order=1, mode="mirror")`` in double precision (OpenCV
  interpolates in 1/32-pixel fixed point). The displacement scales are fractions of the image
  side, which are the reference's numbers for 32x32 images.
* ``brightness`` / ``saturate``: scikit-image's ``rgb2hsv`` / ``hsv2rgb`` are re-implemented in
  numpy with the same formulas (``hsv2rgb`` picks among ``v, p = v(1-s), q = v(1-fs),
  t = v(1-(1-f)s)`` by sector), so the floats are identical.
* ``frost``: the textures are down-scaled by 0.2 as ``cv2.resize(INTER_LINEAR)`` does at that
  factor (it samples every fifth pixel starting at offset 2). Like the reference, only the
  first five textures are drawn (``frost6.jpg`` is not used).
* ``impulse_noise``: each value is replaced independently with probability ``c`` (salt or pepper
  with equal odds), as ``skimage.util.random_noise(mode="s&p")`` does in its recent versions.
* ``fog``: the plasma fractal is our diamond-square on a torus of side ``max(32, next power of
  two >= max(H, W))``, with the reference's noise scale (uniform of half-width ``w^2`` with
  ``w = 100`` divided by the decay at every level), cropped to the image.
* ``glass_blur`` keeps the reference's pixel shuffle as it actually behaves: shifts drawn from
  ``[-d, d - 1]`` (NumPy's ``randint`` excludes the upper bound) and a "swap" that, done through
  NumPy views, copies the neighbour into the pixel (see :func:`glass_blur`).

One-channel (grey) images
-------------------------

Corruptions that only need intensities work on the grey channel directly. Colour-dependent
ones use the grey equivalent of the replicated-RGB computation: ``brightness`` is exact on the
replicated channels (a grey pixel stays grey); ``snow`` uses the image itself as its grey
version; ``frost`` and ``spatter`` add the luma (0.299 R + 0.587 G + 0.114 B) of the frost
texture and of the water / mud colour. ``saturate`` is a no-op on grey images (they have no
saturation to scale; the replicated-RGB route would tint them red at severities 4-5).

Producing a data set
--------------------

:func:`corrupt` validates its arguments and seeds per block of :data:`CHUNK` images;
:func:`make_corrupted_set` writes ``<out_dir>/<name>.npz`` with ``severity_1`` .. ``severity_5``,
``labels``, ``seed`` and ``source_sha256`` (:func:`images_fingerprint` of the clean images),
atomically, skipping files that are already complete. Each block of images gets its own generator
derived from ``(seed, name, severity, block index)``, so ``make_corrupted_set(x, y, d, seed=s)``
stores exactly ``corrupt(x, name, k, seed=s)``. A stored file is reused only when it was made from
the same images (same fingerprint), labels and seed; otherwise it is recomputed, with a note.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import pathlib
import zipfile
import zlib
from typing import Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage

from tfbdl.errors import DataFormatError, DatasetNotFound, InvalidOptionError, ShapeError
from tfbdl.validate import integer

__all__ = [
    "CHUNK",
    "CORRUPTIONS",
    "FROST_DIR_ENV",
    "FROST_FILES",
    "SEVERITIES",
    "brightness",
    "contrast",
    "corrupt",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "gaussian_blur",
    "gaussian_noise",
    "glass_blur",
    "images_fingerprint",
    "impulse_noise",
    "informative_corruptions",
    "jpeg_compression",
    "line_kernel",
    "make_corrupted_set",
    "motion_blur",
    "pixelate",
    "saturate",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
]

SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 1000  # images per independently seeded block in corrupt / make_corrupted_set
FROST_DIR_ENV = "TFBDL_FROST_DIR"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
_FROST_SOURCE = ("the frost images of the CIFAR-10-C / ImageNet-C generator: "
                 "https://github.com/hendrycks/robustness, folder ImageNet-C/create_c/ "
                 "(frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg)")
_MIN_SIDE = 8
_LUMA = np.array([0.299, 0.587, 0.114])

Corruption = Callable[..., np.ndarray]
CORRUPTIONS: dict[str, Corruption] = {}

# ----------------------------------------------------------------------------- validation


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise InvalidOptionError(f"images must be a numpy uint8 array, got {type(images).__name__}; "
                                 f"convert with np.asarray(images, dtype=np.uint8)")
    if images.dtype != np.uint8:
        raise InvalidOptionError(f"images must have dtype uint8 (0..255), got {images.dtype}; corruptions "
                                 f"follow CIFAR-10-C, which works on 8-bit images: convert with "
                                 f"np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for floats in [0, 1]")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ShapeError(f"images must be NHWC [N, H, W, C] with C = 1 or 3, got shape {images.shape}; "
                         f"use images[..., None] for one channel without a channel axis, images[None] for "
                         f"a single image")
    if min(images.shape[1:3]) < _MIN_SIDE:
        raise ShapeError(f"images must be at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got "
                         f"{images.shape[1]}x{images.shape[2]}")
    return images


def _check_severity(severity) -> int:
    if isinstance(severity, (bool, np.bool_)) or not isinstance(severity, (int, np.integer)) \
            or not 1 <= int(severity) <= 5:
        raise InvalidOptionError(f"severity must be an integer in 1..5, got {severity!r}")
    return int(severity)


def _check_name(name) -> str:
    if name not in CORRUPTIONS:
        raise InvalidOptionError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")
    return name


def _corruption(func):
    """Register ``func`` in CORRUPTIONS and validate its arguments before it runs."""

    @functools.wraps(func)
    def wrapper(images, severity, rng, **options):
        images = _check_images(images)
        severity = _check_severity(severity)
        if not isinstance(rng, np.random.Generator):
            raise InvalidOptionError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                                     f"got {type(rng).__name__}")
        if images.shape[0] == 0:
            return images.copy()
        out = func(images, severity, rng, **options)
        assert out.shape == images.shape and out.dtype == np.uint8, (func.__name__, out.shape, out.dtype)
        return out

    CORRUPTIONS[func.__name__] = wrapper
    return wrapper


# ----------------------------------------------------------------------------- helpers


def _unit(images: np.ndarray) -> np.ndarray:
    """uint8 -> float64 in [0, 1]."""
    return images.astype(np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8 as the reference stores it: ``np.uint8(clip(x, 0, 1) * 255)``
    (truncation), in the dtype of ``x`` (float32 where the reference works in float32)."""
    return (np.clip(x, 0, 1) * x.dtype.type(255)).astype(np.uint8)


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, clipping and rounding to nearest (an 8-bit image encoder's rule)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _trunc_uint8(x: np.ndarray) -> np.ndarray:
    """The reference's internal ``np.uint8(...)`` cast (truncation), with clipping first."""
    return np.clip(x, 0, 255).astype(np.uint8)


def _colour(rgb, channels: int) -> np.ndarray:
    """An RGB colour in [0, 1] as a vector for ``channels`` channels (its luma when grey)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb if channels == 3 else np.array([rgb @ _LUMA])


def _spatial_gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """Gaussian blur over H and W of an [N, H, W] or [N, H, W, C] array (skimage's defaults)."""
    sig = (0.0, sigma, sigma) + (0.0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sig, mode=mode, truncate=truncate)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    s = np.divide(delta, v, out=np.zeros_like(v), where=v > 0)
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(b == v, 4.0 + (r - g) / safe, np.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """scikit-image's ``hsv2rgb`` formulas (so the floats, not only the colours, are the same)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6)
    f = h * 6 - sector
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = sector.astype(np.int64) % 6
    table = np.stack([np.stack(rgb, axis=-1) for rgb in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, sector[None, ..., None], axis=0)[0]


def _zoom_taps(length: int, crop: int, factor: float):
    """For the central ``length`` outputs of ``scipy.ndimage.zoom(order=1)`` of a length-``crop``
    axis by ``factor``: the two input indices and their weights, computed as scipy does (output
    size ``round(crop * factor)``, coordinate ``k * (crop - 1) / (out - 1)``, weights ``1 - x`` and
    ``1 - (1 - x)``)."""
    out_len = int(round(crop * factor))
    step = (crop - 1) / (out_len - 1) if out_len > 1 else 1.0
    trim = (out_len - length) // 2
    coords = np.arange(trim, trim + length, dtype=np.float64) * step
    low = np.floor(coords)
    w_low = 1.0 - (coords - low)
    low = low.astype(np.int64)
    return low, np.minimum(low + 1, crop - 1), w_low, 1.0 - w_low


def _zoom_planes(planes: np.ndarray, factor: float) -> np.ndarray:
    """The reference's ``clipped_zoom`` of [B, H, W] planes: crop the central ``ceil(side / factor)``
    pixels, zoom them with ``scipy.ndimage.zoom(order=1)`` and keep the central ``side`` pixels.

    Evaluated as scipy does, bit for bit: in float64, each output the sum over the four neighbours
    (rows outer, columns inner) of ``value * row weight * column weight``, cast to the planes'
    dtype."""
    _, h, w = planes.shape
    ch, cw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = planes[:, top:top + ch, left:left + cw].astype(np.float64, copy=False)
    r0, r1, a0, a1 = _zoom_taps(h, ch, factor)
    c0, c1, b0, b1 = _zoom_taps(w, cw, factor)
    upper = crop[:, r0] * a0[:, None]
    lower = crop[:, r1] * a1[:, None]
    out = upper[:, :, c0] * b0
    out += upper[:, :, c1] * b1
    out += lower[:, :, c0] * b0
    out += lower[:, :, c1] * b1
    return out.astype(planes.dtype, copy=False)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """:func:`_zoom_planes` of each channel of [N, H, W, C] images."""
    n, h, w, c = x.shape
    planes = x.transpose(0, 3, 1, 2).reshape(n * c, h, w)
    return _zoom_planes(planes, factor).reshape(n, c, h, w).transpose(0, 2, 3, 1)


def _motion_offsets(radius: float, sigma: float, angles_deg: np.ndarray):
    """ImageMagick's motion-blur taps: weights [T] and integer offsets (rows, cols) [N, T]."""
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i ** 2) / (2.0 * sigma ** 2))
    weights /= weights.sum()
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))[:, None]
    cols = np.ceil(i * np.cos(a) - 0.5).astype(np.int64)
    rows = np.ceil(i * np.sin(a) - 0.5).astype(np.int64)
    return weights, rows, cols


def line_kernel(radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """The rasterised motion-blur line kernel for ``scipy.ndimage.correlate`` (centre = origin).

    ``correlate(image, line_kernel(r, s, a), mode="nearest")`` is what :func:`motion_blur` computes
    for one grey image at angle ``a``; :func:`motion_blur` evaluates it as a sum of shifts.
    """
    weights, rows, cols = _motion_offsets(radius, sigma, np.array([angle_deg]))
    half = len(weights) - 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    np.add.at(kernel, (rows[0] + half, cols[0] + half), weights)
    return kernel


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles_deg: np.ndarray) -> np.ndarray:
    """Motion-blur [N, H, W, C] floats, one angle per image, edge pixels replicated."""
    n, h, w, _ = x.shape
    weights, rows, cols = _motion_offsets(radius, sigma, angles_deg)
    pad = len(weights)
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(x)
    batch = np.arange(n)[:, None, None]
    base_r, base_c = np.arange(h) + pad, np.arange(w) + pad
    for t, weight in enumerate(weights):
        r = (base_r[None, :] + rows[:, t:t + 1])[:, :, None]
        c = (base_c[None, :] + cols[:, t:t + 1])[:, None, :]
        out += weight * padded[batch, r, c]
    return out


# ----------------------------------------------------------------------------- noise


@_corruption
def gaussian_noise(images, severity, rng):
    """Additive Gaussian noise of std .04, .06, .08, .09, .10 (in [0, 1] units)."""
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    x = _unit(images)
    return _to_uint8(x + rng.normal(scale=c, size=x.shape))


@_corruption
def shot_noise(images, severity, rng):
    """Poisson noise: ``Poisson(x * c) / c`` with c = 500, 250, 100, 75, 50."""
    c = (500, 250, 100, 75, 50)[severity - 1]
    return _to_uint8(rng.poisson(_unit(images) * c) / c)


@_corruption
def impulse_noise(images, severity, rng):
    """Salt-and-pepper: each value becomes 0 or 255 with probability .01, .02, .03, .05, .07."""
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    x = _unit(images)
    flipped = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    x[flipped & salt] = 1.0
    x[flipped & ~salt] = 0.0
    return _to_uint8(x)


@_corruption
def speckle_noise(images, severity, rng):
    """Multiplicative noise ``x + x * N(0, c)`` with c = .06, .1, .12, .16, .2."""
    c = (0.06, 0.10, 0.12, 0.16, 0.20)[severity - 1]
    x = _unit(images)
    return _to_uint8(x + x * rng.normal(scale=c, size=x.shape))


# ----------------------------------------------------------------------------- blur


@_corruption
def gaussian_blur(images, severity, rng):
    """Gaussian blur with sigma .4, .6, .7, .8, 1 (edge pixels replicated, truncated at 4 sigma)."""
    c = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return _to_uint8(_spatial_gaussian(_unit(images), c))


def _gaussian_taps32(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma, CV_32F)``: float32 taps, normalised in double."""
    x = np.arange(ksize) - (ksize - 1) * 0.5
    taps = np.exp((-0.5 / (sigma * sigma)) * x * x).astype(np.float32)
    return (taps.astype(np.float64) * (1.0 / taps.astype(np.float64).sum())).astype(np.float32)


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's float32 disk: an aliased disk normalised to sum 1, smoothed as
    ``cv2.GaussianBlur(ksize, sigmaX=alias_blur)`` does it (separable float32 passes, each
    ``centre * k0 + (left + right) * k1``, reflect-101 border), cropped to its nonzero support."""
    if radius <= 8:
        coords, ksize = np.arange(-8, 9), 3
    else:
        coords, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array(xx ** 2 + yy ** 2 <= radius ** 2, dtype=np.float32)
    disk /= np.sum(disk)
    taps = _gaussian_taps32(ksize, alias_blur)
    half = ksize // 2
    for axis in (1, 0):
        padded = np.pad(disk, [(half, half) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        length = disk.shape[axis]
        window = [padded.take(np.arange(j, j + length), axis=axis) for j in range(ksize)]
        out = window[half] * taps[half]
        for j in range(half):
            out = out + (window[j] + window[ksize - 1 - j]) * taps[j]
        disk = out
    centre = disk.shape[0] // 2
    support = np.nonzero(disk.any(axis=0))[0]
    half = int(max(centre - support.min(), support.max() - centre))
    return disk[centre - half:centre + half + 1, centre - half:centre + half + 1]


@_corruption
def defocus_blur(images, severity, rng):
    """Disk blur (radius, anti-alias sigma): (.3,.4) (.4,.5) (.5,.6) (1,.2) (1.5,.1)."""
    radius, alias = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))[severity - 1]
    kernel = _disk_kernel(radius, alias).astype(np.float64)
    out = ndimage.correlate(_unit(images), kernel[None, :, :, None], mode="mirror")
    return _to_uint8(out)


@_corruption
def glass_blur(images, severity, rng):
    """Blur, displace pixels locally, blur again: (sigma, max shift, iterations) per severity.

    (.05,1,1) (.25,1,1) (.4,1,1) (.25,1,2) (.4,1,2). The reference visits pixels from the
    bottom-right to the top-left (rows and columns ``d + 1 .. side - d``) and "swaps" each with the
    pixel at a shift ``(dy, dx)`` drawn from ``[-d, d - 1]`` (NumPy's ``randint`` excludes the upper
    bound). Its swap assigns through NumPy views, so it copies the neighbour into the pixel and
    leaves the neighbour unchanged; with ``d = 1`` (every severity) the neighbour is visited later,
    so each pass is ``x[h, w] = x_before[h + dy, w + dx]``. That is what CIFAR-10-C contains, and
    what is computed here.
    """
    sigma, delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2),
                                (0.4, 1, 2))[severity - 1]
    n, h, w, _ = images.shape
    x = _trunc_uint8(_spatial_gaussian(_unit(images), sigma) * 255.0)
    rows = np.arange(delta + 1, h - delta + 1)  # the pixels the reference visits
    cols = np.arange(delta + 1, w - delta + 1)
    batch = np.arange(n)[:, None, None]
    for _ in range(iterations):
        shifts = rng.integers(-delta, delta, size=(n, len(rows), len(cols), 2))
        source = x[batch, rows[None, :, None] + shifts[..., 1], cols[None, None, :] + shifts[..., 0]]
        x[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = source
    return _to_uint8(_spatial_gaussian(x / 255.0, sigma))


@_corruption
def motion_blur(images, severity, rng):
    """Line-kernel motion blur (radius, sigma): (6,1) (6,1.5) (6,2) (8,2) (9,2.5), angle U(-45, 45).

    An approximation of ImageMagick's ``MotionBlurImage`` used by the reference; see the module
    docstring and :func:`line_kernel`.
    """
    radius, sigma = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))[severity - 1]
    angles = rng.uniform(-45.0, 45.0, size=images.shape[0])
    return _round_uint8(_motion_blur(_unit(images), radius, sigma, angles))


_ZOOM_ENDS = (1.06, 1.11, 1.16, 1.21, 1.26)


def _zoom_factors(severity: int) -> np.ndarray:
    """The reference's zoom factors: ``np.arange(1, end, 0.01)`` (7, 12, 16, 21, 26 floats)."""
    return np.arange(1, _ZOOM_ENDS[severity - 1], 0.01)


@_corruption
def zoom_blur(images, severity, rng):
    """Average of the image and its centre zoomed by each factor of ``np.arange(1, end, 0.01)``,
    end = 1.06, 1.11, 1.16, 1.21, 1.26 (7, 12, 16, 21, 26 zooms).

    As the reference: float32 images, the zooms summed in order into a float32 zero array, then
    ``(x + sum) / (zooms + 1)``. The factors are arange's floats, not rounded decimals: at
    severity 5 the last is 1.2500000000000002, whose zoom of the 26-pixel crop has
    ``round(26 * 1.2500000000000002) = 33`` pixels where 1.25 would give 32.
    """
    n, h, w, c = images.shape
    planes = np.ascontiguousarray(_unit(images).astype(np.float32).transpose(0, 3, 1, 2)).reshape(n * c, h, w)
    factors = _zoom_factors(severity)
    total = np.zeros_like(planes)
    for factor in factors:
        total += _zoom_planes(planes, float(factor))
    out = (planes + total) / np.float32(len(factors) + 1)
    return _to_uint8(out.reshape(n, c, h, w).transpose(0, 2, 3, 1))


# ----------------------------------------------------------------------------- weather


@_corruption
def snow(images, severity, rng):
    """Snow flakes: a thresholded, zoomed noise layer streaked by a motion blur (both directions)."""
    mean, std, zoom, threshold, radius, sigma, blend = (
        (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))[severity - 1]
    n, h, w, channels = images.shape
    x = _unit(images)
    layer = rng.normal(loc=mean, scale=std, size=(n, h, w, 1))
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0.0
    layer = _trunc_uint8(np.clip(layer, 0.0, 1.0) * 255.0).astype(np.float64)
    angles = rng.uniform(-135.0, -45.0, size=n)
    layer = np.rint(np.clip(_motion_blur(layer, radius, sigma, angles), 0, 255)) / 255.0
    grey = x if channels == 1 else (x @ _LUMA)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return _to_uint8(x + layer + layer[:, ::-1, ::-1])


def _frost_dir(texture_dir) -> pathlib.Path:
    chosen = texture_dir if texture_dir is not None else os.environ.get(FROST_DIR_ENV)
    if not chosen:
        raise DatasetNotFound(f"frost needs texture images and no folder was given: pass texture_dir or set "
                              f"${FROST_DIR_ENV} to a folder holding {', '.join(FROST_FILES)} ({_FROST_SOURCE})")
    folder = pathlib.Path(chosen).expanduser()
    missing = [name for name in FROST_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFound(f"frost textures missing in {folder}: {', '.join(missing)}; copy {_FROST_SOURCE} "
                              f"into that folder (or point texture_dir / ${FROST_DIR_ENV} elsewhere)")
    return folder


@functools.lru_cache(maxsize=4)
def _frost_textures_cached(folder: str, stamps: tuple) -> tuple:
    from PIL import Image

    textures = []
    for name in FROST_FILES:
        path = pathlib.Path(folder) / name
        try:
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read frost texture {path}: {exc}; replace it with {_FROST_SOURCE}") \
                from exc
        # cv2.resize(fx=fy=0.2, INTER_LINEAR) samples source pixel 5*i + 2 exactly
        rows = np.minimum(5 * np.arange(int(round(rgb.shape[0] * 0.2))) + 2, rgb.shape[0] - 1)
        cols = np.minimum(5 * np.arange(int(round(rgb.shape[1] * 0.2))) + 2, rgb.shape[1] - 1)
        textures.append(rgb[rows][:, cols])
    return tuple(textures)


def _frost_textures(folder: pathlib.Path) -> tuple:
    stamps = tuple((name, (folder / name).stat().st_mtime_ns, (folder / name).stat().st_size)
                   for name in FROST_FILES)
    return _frost_textures_cached(str(folder.resolve()), stamps)


@_corruption
def frost(images, severity, rng, texture_dir=None):
    """Blend with a random crop of a frost texture: (image weight, frost weight) per severity.

    (1,.2) (1,.3) (.9,.4) (.85,.4) (.75,.45). The textures are read from ``texture_dir`` or
    ``$TFBDL_FROST_DIR`` (files :data:`FROST_FILES`, from the reference repository); each is
    down-scaled by 0.2, which must leave it larger than the images. Grey images get the luma of
    the texture.
    """
    image_weight, frost_weight = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    folder = _frost_dir(texture_dir)
    textures = _frost_textures(folder)
    n, h, w, channels = images.shape
    for name, texture in zip(FROST_FILES, textures):
        if texture.shape[0] <= h or texture.shape[1] <= w:
            raise DataFormatError(f"frost texture {folder / name} is {texture.shape[0]}x{texture.shape[1]} after "
                                  f"the 0.2 down-scaling, not larger than the {h}x{w} images; use the reference "
                                  f"textures ({_FROST_SOURCE})")
    which = rng.integers(len(textures), size=n)
    heights = np.array([textures[k].shape[0] for k in which])
    widths = np.array([textures[k].shape[1] for k in which])
    tops = rng.integers(0, heights - h)
    lefts = rng.integers(0, widths - w)
    crops = np.stack([textures[k][t:t + h, l:l + w] for k, t, l in zip(which, tops, lefts)])
    if channels == 1:
        crops = (crops @ _LUMA)[..., None]
    out = image_weight * images.astype(np.float64) + frost_weight * crops
    return _trunc_uint8(out)  # the reference: np.uint8(np.clip(..., 0, 255))


def _plasma_fractal(rng: np.random.Generator, count: int, size: int, decay: float) -> np.ndarray:
    """``count`` diamond-square height maps [count, size, size] in [0, 1] on a torus.

    ``size`` is a power of two. Level ``k`` adds uniform noise of half-width ``w_k^2`` with
    ``w_0 = 100`` and ``w_{k+1} = w_k / decay`` (the reference's scale).
    """
    grid = np.zeros((count, size, size))
    step, wibble = size, 100.0

    def noisy_mean(total):
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, size=total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        # square step: each square's centre from its four corners
        total = corners + np.roll(corners, -1, axis=1)
        total = total + np.roll(total, -1, axis=2)
        grid[:, half::step, half::step] = noisy_mean(total)
        centres = grid[:, half::step, half::step]
        # diamond step: edge midpoints from their two corners and two centres
        across = corners + np.roll(corners, -1, axis=2) + centres + np.roll(centres, 1, axis=1)
        grid[:, ::step, half::step] = noisy_mean(across)
        down = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=2)
        grid[:, half::step, ::step] = noisy_mean(down)
        step = half
        wibble /= decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    top = grid.max(axis=(1, 2), keepdims=True)
    return grid / np.where(top > 0, top, 1.0)


@_corruption
def fog(images, severity, rng):
    """Add a plasma fractal and rescale: (amount, fractal decay) (.2,3) (.5,3) (.75,2.5) (1,2) (1.5,1.75)."""
    amount, decay = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))[severity - 1]
    n, h, w, _ = images.shape
    size = max(32, 1 << (max(h, w) - 1).bit_length())
    x = _unit(images)
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + amount * _plasma_fractal(rng, n, size, decay)[:, :h, :w, None]
    return _to_uint8(x * peak / (peak + amount))


# ----------------------------------------------------------------------------- spatter


def _canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges of [N, H, W] images (OpenCV's 3x3 Sobel / L1 / 4-sector NMS / hysteresis)."""
    smooth, diff = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
    gx = ndimage.correlate1d(ndimage.correlate1d(image, diff, axis=2, mode="nearest"), smooth, axis=1,
                             mode="nearest")
    gy = ndimage.correlate1d(ndimage.correlate1d(image, diff, axis=1, mode="nearest"), smooth, axis=2,
                             mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    centre = m[:, 1:-1, 1:-1]

    def at(dr, dc):
        return m[:, 1 + dr:m.shape[1] - 1 + dr, 1 + dc:m.shape[2] - 1 + dc]

    ax, ay = np.abs(gx), np.abs(gy)
    tan22, tan67 = math.tan(math.pi / 8), math.tan(3 * math.pi / 8)
    horizontal = ay < ax * tan22
    vertical = ay > ax * tan67
    same_sign = (gx >= 0) == (gy >= 0)
    keep_h = (centre > at(0, -1)) & (centre >= at(0, 1))
    keep_v = (centre > at(-1, 0)) & (centre >= at(1, 0))
    keep_d = np.where(same_sign, (centre > at(-1, -1)) & (centre > at(1, 1)),
                      (centre > at(-1, 1)) & (centre > at(1, -1)))
    maxima = np.where(horizontal, keep_h, np.where(vertical, keep_v, keep_d)) & (mag > low)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected within an image, never across images
    labels, count = ndimage.label(maxima, structure=structure)
    strong = np.zeros(count + 1, dtype=bool)
    strong[np.unique(labels[maxima & (mag > high)])] = True
    strong[0] = False
    return strong[labels]


def _equalize_hist(images: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist for each [H, W] uint8 image of an [N, H, W] stack."""
    n = images.shape[0]
    flat = images.reshape(n, -1).astype(np.int64)
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    total = flat.shape[1]
    first = np.argmax(hist > 0, axis=1)
    first_count = hist[np.arange(n), first]
    cdf = np.cumsum(hist, axis=1) - first_count[:, None]
    scale = 255.0 / np.maximum(total - first_count, 1)
    lut = np.clip(np.rint(cdf * scale[:, None]), 0, 255)
    constant = first_count == total
    lut[constant] = first[constant, None]
    return np.take_along_axis(lut, flat, axis=1).reshape(images.shape).astype(np.uint8)


def _box3(x: np.ndarray) -> np.ndarray:
    """cv2.blur(x, (3, 3)) over H, W of [N, H, W] (reflect-101 border)."""
    return ndimage.uniform_filter(x, size=(1, 3, 3), mode="mirror")


@_corruption
def spatter(images, severity, rng):
    """Water drops (severities 1-3) or mud splashes (4-5) from a thresholded blurred noise layer.

    (mean, std, sigma, threshold, intensity, mud): (.62,.1,.7,.7,.5,0) (.65,.1,.8,.7,.5,0)
    (.65,.3,1,.69,.5,0) (.65,.1,.7,.69,.6,1) (.65,.1,.5,.68,.6,1).
    """
    mean, std, sigma, threshold, intensity, mud = (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1.0, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1))[severity - 1]
    n, h, w, channels = images.shape
    x = _unit(images)
    liquid = _spatial_gaussian(rng.normal(loc=mean, scale=std, size=(n, h, w)), sigma)
    liquid[liquid < threshold] = 0.0
    if not mud:
        liquid8 = _trunc_uint8(liquid * 255.0).astype(np.float64)
        edges = _canny(liquid8, 50.0, 150.0)
        if edges.any():
            # distance to the nearest edge of the same image (images kept far apart on axis 0)
            dist = ndimage.distance_transform_edt(~edges, sampling=(1e4, 1.0, 1.0))
        else:
            dist = np.full(edges.shape, 20.0)
        dist = np.minimum(dist, 20.0)
        dist = np.floor(_box3(dist) + 1e-9)
        dist = _equalize_hist(dist.astype(np.uint8)).astype(np.float64)
        emboss = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
        dist = np.clip(np.rint(ndimage.correlate(dist, emboss[None], mode="mirror")), 0, 255)
        dist = np.rint(_box3(dist))
        m = liquid8 * dist
        peak = m.max(axis=(1, 2), keepdims=True)
        m = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0) * intensity
        water = _colour((175 / 255.0, 238 / 255.0, 238 / 255.0), channels)
        return _to_uint8(x + m[..., None] * water)
    m = (liquid > threshold).astype(np.float64)
    m = _spatial_gaussian(m, intensity)
    m[m < 0.8] = 0.0
    mud_colour = _colour((63 / 255.0, 42 / 255.0, 20 / 255.0), channels)
    m = m[..., None]
    return _to_uint8(x * (1 - m) + mud_colour * m)


# ----------------------------------------------------------------------------- digital


@_corruption
def brightness(images, severity, rng):
    """Add .05, .1, .15, .2, .3 to the HSV value (clipped)."""
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    x = _unit(images)
    if images.shape[-1] == 1:  # exact: a replicated grey pixel has V = x and stays grey
        return _to_uint8(x + c)
    hsv = _rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return _to_uint8(_hsv_to_rgb(hsv))


@_corruption
def contrast(images, severity, rng):
    """Pull each channel towards its image mean by factor .75, .5, .4, .3, .15."""
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = _unit(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


@_corruption
def saturate(images, severity, rng):
    """HSV saturation ``s * a + b`` with (a, b) = (.3,0) (.1,0) (1.5,0) (2,.1) (2.5,.2).

    Grey (1-channel) images are returned unchanged: they have no saturation to scale.
    """
    scale, offset = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))[severity - 1]
    if images.shape[-1] == 1:
        return images.copy()
    hsv = _rgb_to_hsv(_unit(images))
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + offset, 0.0, 1.0)
    return _to_uint8(_hsv_to_rgb(hsv))


def _affine_warp(x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``cv2.warpAffine`` of [N, H, W, C] by the affine maps taking the (x, y) points ``src`` [3, 2]
    to ``dst`` [N, 3, 2]: bilinear, reflect-101 border (``out(p) = in(A^-1 p)``)."""
    n, h, w, _ = x.shape
    dst = np.broadcast_to(dst, (n, 3, 2))
    forward = np.linalg.solve(np.concatenate([src, np.ones((3, 1))], axis=1)[None], dst)  # [n, 3, 2]
    linear, shift = forward[:, :2, :].transpose(0, 2, 1), forward[:, 2, :]  # dst = linear @ p + shift
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    source = np.einsum("nij,nhwj->nhwi", np.linalg.inv(linear),
                       np.stack([xx, yy], axis=-1)[None] - shift[:, None, None, :])
    return _sample(x, source[..., 1], source[..., 0], mode="mirror")


def _sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear samples of [N, H, W, C] at per-image positions ``rows``, ``cols`` [N, H, W]."""
    n = x.shape[0]
    batch = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], rows.shape)
    coords = np.stack([batch, rows, cols])
    return np.stack([ndimage.map_coordinates(x[..., c], coords, order=1, mode=mode)
                     for c in range(x.shape[-1])], axis=-1)


_ELASTIC = ((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))


def _elastic_fields(rng: np.random.Generator, n: int, h: int, w: int, severity: int):
    """The random parts of elastic_transform: control points ``src`` [3, 2] (x, y), their moved
    positions ``dst`` [n, 3, 2], and the displacement fields ``dx``, ``dy`` [n, h, w] in pixels."""
    side = min(h, w)
    alpha, sigma, affine = (side * f for f in _ELASTIC[severity - 1])
    cx, cy, sq = w // 2, h // 2, side // 3
    src = np.array([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=np.float64)
    dst = src[None] + rng.uniform(-affine, affine, size=(n, 3, 2))
    dx = _spatial_gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3.0) * alpha
    dy = _spatial_gaussian(rng.uniform(-1, 1, size=(n, h, w)), sigma, mode="reflect", truncate=3.0) * alpha
    return src, dst, dx, dy


@_corruption
def elastic_transform(images, severity, rng):
    """Random affine warp then a smooth random displacement field.

    (alpha, sigma, affine) = side * ((0,0,.08) (.05,.2,.07) (.08,.06,.06) (.1,.04,.05)
    (.1,.03,.03)), with side = 32 for CIFAR (the smaller image side in general): the affine moves
    three control points by U(-affine, affine); the displacement is a Gaussian-smoothed (sigma,
    truncated at 3 sigma) U(-1, 1) field times alpha, sampled bilinearly with reflection. The
    affine part shrinks and the local part grows with severity, so the pixel-wise change (PSNR)
    is largest at severity 1, where the corruption is a pure affine warp.
    """
    n, h, w, _ = images.shape
    src, dst, dx, dy = _elastic_fields(rng, n, h, w, severity)
    x = _affine_warp(_unit(images), src, dst)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return _to_uint8(_sample(x, yy + dy, xx + dx, mode="reflect"))


def _per_image_pil(images: np.ndarray, transform) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(images)
    grey = images.shape[-1] == 1
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if grey else image, mode="L" if grey else "RGB")
        result = np.asarray(transform(pil), dtype=np.uint8)
        out[i] = result[..., None] if grey else result
    return out


@_corruption
def pixelate(images, severity, rng):
    """Box-down-scale by .95, .9, .85, .75, .65 (sizes truncated) and box-up-scale back (Pillow)."""
    from PIL import Image

    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    _, h, w, _ = images.shape
    small = (max(1, int(w * c)), max(1, int(h * c)))
    return _per_image_pil(images, lambda im: im.resize(small, Image.BOX).resize((w, h), Image.BOX))


@_corruption
def jpeg_compression(images, severity, rng):
    """JPEG round trip (Pillow, default 4:2:0 chroma subsampling) at quality 80, 65, 58, 50, 40."""
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]

    def round_trip(image):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert(image.mode)

    return _per_image_pil(images, round_trip)


# Registry order: the paper's 15 benchmark corruptions, then the 4 held-out ones.
_ORDER = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
          "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
          "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS = {name: CORRUPTIONS[name] for name in _ORDER}

# ----------------------------------------------------------------------------- data sets


def _block_rng(seed: int, name: str, severity: int, block: int) -> np.random.Generator:
    key = (zlib.crc32(name.encode()), severity, block)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _corrupt_blocks(images: np.ndarray, name: str, severity: int, seed: int, options: dict) -> Iterator[np.ndarray]:
    func = CORRUPTIONS[name]
    for block, start in enumerate(range(0, images.shape[0], CHUNK)):
        yield func(images[start:start + CHUNK], severity, _block_rng(seed, name, severity, block), **options)


def _options_for(name: str, texture_dir) -> dict:
    return {"texture_dir": texture_dir} if name == "frost" else {}


def informative_corruptions(channels: int, texture_dir=None) -> tuple[list[str], list[str]]:
    """``(used, skipped)`` corruption names worth evaluating on images with ``channels`` channels:
    frost is skipped without its texture images, saturate on grey images (it changes nothing)."""
    used, skipped = [], []
    for name in CORRUPTIONS:
        if (name == "frost" and not texture_dir) or (name == "saturate" and channels == 1):
            skipped.append(name)
        else:
            used.append(name)
    return used, skipped


def corrupt(images, name: str, severity: int, seed: int = 0, *, texture_dir=None) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1..5) to uint8 NHWC ``images``; deterministic in ``seed``.

    Each block of :data:`CHUNK` images gets its own generator derived from
    ``(seed, name, severity, block)``. ``texture_dir`` is passed to :func:`frost`. Raises
    InvalidOptionError for an unknown name, a severity outside 1..5, a bad seed or a non-uint8
    array, and ShapeError for a shape other than ``[N, H, W, 1 or 3]``.
    """
    name = _check_name(name)
    severity = _check_severity(severity)
    seed = integer(seed, "seed", 0)
    images = _check_images(images)
    if images.shape[0] == 0:
        return images.copy()
    blocks = list(_corrupt_blocks(images, name, severity, seed, _options_for(name, texture_dir)))
    return np.concatenate(blocks, axis=0)


def _npy_headers(path: pathlib.Path) -> dict:
    """{array name: (shape, dtype)} of an .npz, read from the headers without loading the data."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    return {}
            headers[member[:-4]] = (tuple(shape), np.dtype(dtype))
    return headers


def images_fingerprint(images: np.ndarray) -> str:
    """SHA-256 (hex) of uint8 images: their shape, then their bytes in C order."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    digest = hashlib.sha256(repr(tuple(int(n) for n in images.shape)).encode())
    digest.update(memoryview(images).cast("B"))
    return digest.hexdigest()


def _stored_state(path: pathlib.Path, images, labels, severities, seed: int, fingerprint: str) -> str:
    """'complete', 'missing', 'other-images' (same shapes, labels and seed but another
    fingerprint, or none stored) or 'incomplete' (anything else: another seed, damaged, ...)."""
    if not path.is_file():
        return "missing"
    try:
        headers = _npy_headers(path)
        wanted = {f"severity_{s}" for s in severities}
        if not wanted | {"labels", "seed"} <= set(headers):
            return "incomplete"
        if any(headers[key] != (images.shape, np.dtype(np.uint8)) for key in wanted):
            return "incomplete"
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["seed"]) != seed or not np.array_equal(archive["labels"], labels):
                return "incomplete"
            stored = str(archive["source_sha256"]) if "source_sha256" in archive.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return "incomplete"
    return "complete" if stored == fingerprint else "other-images"


def make_corrupted_set(images, labels, out_dir, names: Iterable[str] | None = None,
                       severities: Iterable[int] = SEVERITIES, seed: int = 0, progress: bool = True, *,
                       texture_dir=None) -> dict[str, pathlib.Path]:
    """Write ``out_dir/<name>.npz`` for each corruption: ``severity_<k>`` arrays, ``labels``, ``seed``
    and ``source_sha256`` (:func:`images_fingerprint` of ``images``).

    ``names`` defaults to all of :data:`CORRUPTIONS`. A file that already holds every requested
    severity made from the same images (same fingerprint), with the same labels and the same seed
    is skipped, so an interrupted run resumes where it stopped; each file is written atomically
    (:func:`tfbdl.io.atomic_path`). A file made from other source images (or stored without a
    fingerprint, by an older version) is recomputed, not reused, and a note on stderr says so:
    reusing it would evaluate on corruptions of images that are not the ones asked for.
    ``severity_<k>`` equals ``corrupt(images, name, k, seed)``. Frost textures are checked before
    any work starts. Returns ``{name: path}``.
    """
    from tfbdl.io import atomic_path
    from tfbdl.progress import progress as progress_bar

    images = _check_images(images)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ShapeError(f"labels must have shape [{images.shape[0]}] to match images {images.shape}, "
                         f"got {labels.shape}")
    names = list(CORRUPTIONS) if names is None else [_check_name(name) for name in names]
    if len(set(names)) != len(names):
        raise InvalidOptionError(f"names repeat a corruption: {names}")
    severities = [_check_severity(s) for s in severities]
    if not severities or len(set(severities)) != len(severities):
        raise InvalidOptionError(f"severities must be distinct values in 1..5, got {severities}")
    seed = integer(seed, "seed", 0)
    if "frost" in names:
        _frost_dir(texture_dir)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.npz" for name in names}
    fingerprint = images_fingerprint(images)
    states = {name: _stored_state(paths[name], images, labels, severities, seed, fingerprint) for name in names}
    todo = [name for name in names if states[name] != "complete"]
    stale = [name for name in todo if states[name] == "other-images"]
    if stale:
        import click

        click.echo(f"note: {', '.join(stale)} in {out_dir} {'was' if len(stale) == 1 else 'were'} made from other "
                   "source images (their SHA-256 fingerprint differs or is missing); recomputing", err=True)
    total = len(todo) * len(severities) * images.shape[0]
    with progress_bar(total, "corruptions", show=progress) as bar:
        for name in todo:
            arrays = {}
            for severity in severities:
                blocks = []
                for block in _corrupt_blocks(images, name, severity, seed, _options_for(name, texture_dir)):
                    blocks.append(block)
                    bar.update(block.shape[0])
                arrays[f"severity_{severity}"] = (np.concatenate(blocks, axis=0) if blocks
                                                  else images.copy())
            with atomic_path(paths[name]) as tmp:
                np.savez(tmp, labels=labels, seed=np.int64(seed), source_sha256=np.str_(fingerprint), **arrays)
    return paths
