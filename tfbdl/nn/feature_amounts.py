"""The VGG family of "Rethinking Layer-wise Feature Amounts in CNN Architectures" (Mundt et al. 2018).

A member moves the features of the reference VGG of the same depth (16 = VGG-D, 19 = VGG-E, any
``7 + 3k``) between its layers so that the widths follow a skew-normal density::

    pdf(x) = 2 / scale * phi((x - mean) / scale) * Phi(skew * (x - mean) / scale)

over the layers, layer ``i`` owning ``[i, i + 1)``. Two families (``family=``):

``"release"`` (the default) is the one of the paper's code (``lib/Models/skew_normal_models.py``):

- the profile spans all ``depth - 1`` layers: the convolutions *and* the two hidden classifier
  layers, and the budget is the reference's total over all of them, ``T`` (5248 for VGG-D,
  6528 for VGG-E: the classifier's 2 x 512 included);
- the density is sampled every 0.01 on ``[0, depth - 1)`` and layer ``i`` gets the trapezoid
  integral over its own 100 samples, i.e. over ``[i, i + 0.99]`` (:func:`sampled_layer_masses`);
- layer ``i`` gets ``ceil(mass_i * T)`` features, so the total is not kept exactly: it is more
  than 95% of ``T`` and never more than ``T``;
- the grid is ``mean`` in ``0, 1, ..., depth - 1``, ``scale`` in ``0.5, 1.0, ..., 5.5`` (the
  code's "variance" grid; its 0 is never valid) and ``skew`` in ``-40, -36, ..., 40``, iterated
  in that order (mean outermost);
- a triple is rejected when the masses sum to at most 0.95 (the density is truncated by the
  layer range) or when a layer would get fewer than 2 features.

This gives 153, 194, 193 and 139 variants for depths 10, 13, 16 and 19.

``"conv-only"`` keeps the two classifier layers at 512 and moves only the conv features: the
masses are exact skew-normal CDF differences over the conv layers (Owen's T), rounded by the
largest-remainder method so that the conv total is exactly the reference's (:func:`apportion`);
same grid (the means over the conv layers), same 95% and 2-feature rules (222 variants for
VGG-D, 180 for VGG-E).

A variant's id is a pure function of its family and parameters (:func:`variant_id`):
``d16-m3-s1.5-a-12`` (release), ``d16-conv-m3-s1.5-a-12`` (conv-only); the reference network
itself is ``d16-ref``. Every member is built by :func:`tfbdl.nn.vgg.vgg_layerwise` (five stages
of 2, 2, k, k, k same-padded 3x3 convolutions, then the two hidden dense layers).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np

from tfbdl.errors import InvalidOptionError
from tfbdl.seeding import derive_seed

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "INITIALIZERS",
    "MEANS_STEP",
    "MIN_LAYER_FEATURES",
    "SCALES",
    "SKEWS",
    "Variant",
    "apportion",
    "build_variant",
    "early_fraction",
    "enumerate_variants",
    "get_variant",
    "layer_masses",
    "parse_variant_id",
    "reference_widths",
    "sampled_layer_masses",
    "select_spread",
    "skewnorm_cdf",
    "skewnorm_pdf",
    "variant_id",
    "variant_widths",
]

MEANS_STEP = 1.0
#: The reference's "variance" grid (the skew-normal's scale), without the undefined 0.
SCALES = tuple(0.5 * k for k in range(1, 12))
SKEWS = tuple(range(-40, 41, 4))
MIN_LAYER_FEATURES = 2
MIN_AREA = 0.95
CLASSIFIER_WIDTH = 512
#: Spacing of the density samples of the release family.
SAMPLE_STEP = 0.01
FAMILIES = ("release", "conv-only")
DEFAULT_FAMILY = "release"
_ID_TAG = {"release": "", "conv-only": "conv-"}
_LAYER_STREAM = 0xFA  # stream key of the per-layer seeds of a re-initialised variant
_ID = re.compile(r"^d(\d+)-(?:ref|(conv-)?m(-?\d+(?:\.\d+)?)-s(\d+(?:\.\d+)?)-a(-?\d+(?:\.\d+)?))$")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One member of the family: its parameters, id and per-layer widths.

    ``widths`` are the ``depth - 1`` widths of :func:`tfbdl.nn.vgg.vgg_layerwise`: the conv
    layers, then the two hidden classifier layers. ``mean``/``scale``/``skew`` are None for
    the reference network.
    """

    id: str
    depth: int
    mean: float | None
    scale: float | None
    skew: float | None
    widths: tuple[int, ...]
    family: str = DEFAULT_FAMILY

    @property
    def conv_widths(self) -> tuple[int, ...]:
        return self.widths[:-2]

    @property
    def is_reference(self) -> bool:
        return self.mean is None

    @property
    def early_fraction(self) -> float:
        """Fraction of the conv features in the first half of the conv layers (the middle
        layer of an odd count counts half)."""
        return early_fraction(self.conv_widths)

    @property
    def centre(self) -> float:
        """Centre of mass of the conv features, 0 = all in the first layer, 1 = all in the last."""
        w = np.asarray(self.conv_widths, np.float64)
        return float(np.dot(np.arange(w.size), w) / w.sum() / (w.size - 1))


def early_fraction(conv_widths) -> float:
    """Share of the features in the first half of the layers (an odd middle layer counts half)."""
    w = np.asarray(conv_widths, np.float64)
    half = w.size // 2
    early = w[:half].sum() + (0.5 * w[half] if w.size % 2 else 0.0)
    return float(early / w.sum())


def _depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 10 or (depth - 7) % 3:
        raise InvalidOptionError(f"--vgg-depth must be 7 + 3k with k >= 1 (10, 13, 16 = VGG-D, 19 = VGG-E, ...), "
                                 f"got {depth!r}")
    return int(depth)


def _scaled(width: int, width_scale: float) -> int:
    return max(1, int(round(width * width_scale)))


def _width_scale(width_scale) -> float:
    value = float(width_scale)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise InvalidOptionError(f"--width-scale must be in (0, 1], got {width_scale!r}")
    return value


def _family(family) -> str:
    if family not in FAMILIES:
        raise InvalidOptionError(f"--family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def reference_widths(depth: int, width_scale: float = 1.0) -> list[int]:
    """The reference VGG's ``depth - 1`` widths (conv layers then 2 x 512), each scaled by
    ``width_scale`` (rounded, at least 1): ``reference_widths(16)`` is VGG-D's
    ``64, 64, 128, 128, 256 x3, 512 x6, 512, 512``."""
    k = (_depth(depth) - 7) // 3
    ws = _width_scale(width_scale)
    full = [64] * 2 + [128] * 2 + [256] * k + [512] * (2 * k) + [CLASSIFIER_WIDTH] * 2  # = vgg_layer_widths
    return [_scaled(w, ws) for w in full]


def skewnorm_pdf(x, mean, scale, skew) -> np.ndarray:
    """The skew-normal density ``2 / scale * phi(z) * Phi(skew * z)``, ``z = (x - mean) / scale``."""
    from scipy.special import ndtr

    z = (np.asarray(x, np.float64) - mean) / scale
    return 2.0 / scale * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * ndtr(skew * z)


def skewnorm_cdf(x, mean, scale, skew) -> np.ndarray:
    """The skew-normal CDF ``Phi(z) - 2 T(z, skew)``, ``z = (x - mean) / scale`` (Owen's T), broadcast."""
    from scipy.special import ndtr, owens_t

    z = (np.asarray(x, np.float64) - np.asarray(mean, np.float64)) / np.asarray(scale, np.float64)
    return ndtr(z) - 2.0 * owens_t(z, np.asarray(skew, np.float64))


def _check_scale(scale) -> None:
    if not scale > 0:
        raise InvalidOptionError(f"the skew-normal scale must be > 0, got {scale!r}")


def sampled_layer_masses(layers: int, mean: float, scale: float, skew: float) -> np.ndarray:
    """The release family's mass of each layer (float64): the density sampled at ``0.01 k`` on
    ``[0, layers)``, trapezoid rule over each layer's 100 samples (``[i, i + 0.99]``, so the
    masses of an untruncated density sum to about 0.99, not 1)."""
    _check_scale(scale)
    per_layer = int(round(1 / SAMPLE_STEP))
    y = skewnorm_pdf(np.arange(layers * per_layer) * SAMPLE_STEP, mean, scale, skew).reshape(layers, per_layer)
    return SAMPLE_STEP * (y.sum(axis=1) - 0.5 * (y[:, 0] + y[:, -1]))


def layer_masses(layers: int, mean: float, scale: float, skew: float) -> np.ndarray:
    """Exact skew-normal probability mass of each ``[i, i + 1)``, ``i < layers`` (float64; the
    conv-only family)."""
    _check_scale(scale)
    cdf = skewnorm_cdf(np.arange(layers + 1, dtype=np.float64), mean, scale, skew)
    return np.clip(np.diff(cdf), 0.0, None)


def apportion(shares, total: int, minimum: int = 0) -> list[int]:
    """Integers proportional to ``shares`` summing exactly to ``total`` (largest remainder).

    Each gets ``floor(share * total / sum)``; the units left go to the largest fractional
    parts (ties to the earlier position). Then any entry below ``minimum`` is raised to it,
    one unit at a time taken from the currently largest entry, so the sum stays ``total``.
    """
    p = np.asarray(shares, np.float64)
    if p.ndim != 1 or p.size == 0 or (p < 0).any() or not p.sum() > 0:
        raise InvalidOptionError(f"shares must be non-negative with a positive sum, got {shares!r}")
    if total < minimum * p.size:
        raise InvalidOptionError(f"{total} features cannot give {p.size} layers at least {minimum} each")
    exact = p / p.sum() * total
    out = np.floor(exact).astype(np.int64)
    left = int(total - out.sum())
    order = np.argsort(-(exact - out), kind="stable")
    out[order[:left]] += 1
    while (out < minimum).any():
        out[int(np.argmax(out))] -= 1
        out[int(np.argmin(out))] += 1
    return [int(v) for v in out]


def _redistribute(depth: int, mean: float, scale: float, skew: float, width_scale: float, family: str):
    """(widths, valid) of one parameter triple; ``valid`` applies the family's rules at full width.
    ``widths`` is None when the density is truncated (masses summing to 95% or less)."""
    ref_full = reference_widths(depth)
    if family == "release":
        masses = sampled_layer_masses(len(ref_full), mean, scale, skew)
        if not masses.sum() > MIN_AREA:
            return None, False
        full = np.ceil(masses * sum(ref_full)).astype(np.int64)
        return [_scaled(int(w), width_scale) for w in full], int(full.min()) >= MIN_LAYER_FEATURES
    conv_full = ref_full[:-2]
    masses = layer_masses(len(conv_full), mean, scale, skew)
    if masses.sum() < MIN_AREA:
        return None, False
    valid = min(apportion(masses, sum(conv_full))) >= MIN_LAYER_FEATURES
    ref = reference_widths(depth, width_scale)
    conv = apportion(masses, sum(ref[:-2]), minimum=1)
    return conv + ref[-2:], valid


def variant_widths(depth: int, mean: float, scale: float, skew: float, width_scale: float = 1.0,
                   family: str = DEFAULT_FAMILY) -> list[int]:
    """The ``depth - 1`` widths of the variant ``(mean, scale, skew)`` of ``family``.

    release: ``ceil(mass_i * T)`` for every layer, classifier included, then each scaled by
    ``width_scale`` (rounded, at least 1). conv-only: conv widths summing to the reference's conv
    total (both scaled by ``width_scale``), classifier widths as the reference. Raises
    InvalidOptionError if the density is truncated (more than 5% of it off the layers)."""
    depth, width_scale, family = _depth(depth), _width_scale(width_scale), _family(family)
    widths, _ = _redistribute(depth, mean, scale, skew, width_scale, family)
    if widths is None:
        where = "layers" if family == "release" else "conv layers"
        raise InvalidOptionError(f"the skew-normal (mean {mean}, scale {scale}, skew {skew}) puts more than "
                                 f"{100 * (1 - MIN_AREA):g}% of its mass outside the {where} of depth {depth}")
    return widths


def variant_id(depth: int, mean: float | None = None, scale: float | None = None, skew: float | None = None,
               family: str = DEFAULT_FAMILY) -> str:
    """The stable id ``d<depth>-m<mean>-s<scale>-a<skew>`` (``%g`` numbers, e.g.
    ``d16-m3-s1.5-a-12``; ``d16-conv-m3-...`` in the conv-only family), or ``d<depth>-ref`` for
    the reference network."""
    if mean is None:
        return f"d{int(depth)}-ref"
    return f"d{int(depth)}-{_ID_TAG[_family(family)]}m{float(mean):g}-s{float(scale):g}-a{float(skew):g}"


def parse_variant_id(text: str) -> tuple[int, float | None, float | None, float | None, str]:
    """``(depth, mean, scale, skew, family)`` of an id (None parameters and the default family
    for ``d<depth>-ref``)."""
    m = _ID.match(str(text).strip())
    if m is None:
        raise InvalidOptionError(f"{text!r} is not a variant id (like d16-m3-s1.5-a-12 or d16-ref); "
                                 "list them with 'tfbdl feature-amounts list-variants'")
    depth = int(m.group(1))
    if m.group(3) is None:
        return depth, None, None, None, DEFAULT_FAMILY
    family = "conv-only" if m.group(2) else "release"
    return depth, float(m.group(3)), float(m.group(4)), float(m.group(5)), family


@functools.lru_cache(maxsize=32)
def _grid(depth: int, family: str) -> tuple[tuple[float, float, float], ...]:
    """The valid parameter triples of ``depth``, mean outermost, then scale, then skew."""
    layers = len(reference_widths(depth)) - (0 if family == "release" else 2)
    means = [MEANS_STEP * k for k in range(int(layers / MEANS_STEP) + 1)]
    valid = []
    for mean in means:
        for scale in SCALES:
            for skew in SKEWS:
                _, ok = _redistribute(depth, mean, scale, float(skew), 1.0, family)
                if ok:
                    valid.append((float(mean), float(scale), float(skew)))
    return tuple(valid)


def _reference(depth: int, width_scale: float, family: str) -> Variant:
    return Variant(variant_id(depth), depth, None, None, None, tuple(reference_widths(depth, width_scale)), family)


def enumerate_variants(depth: int = 16, width_scale: float = 1.0, *, include_reference: bool = False,
                       family: str = DEFAULT_FAMILY) -> list[Variant]:
    """Every variant of ``family``'s grid for ``depth`` (release: 193 for 16, 139 for 19),
    optionally preceded by the reference network; widths scaled by ``width_scale`` (the set does
    not depend on it: the rules are applied at full width, so a narrow member may have layers of
    1 feature)."""
    depth, width_scale, family = _depth(depth), _width_scale(width_scale), _family(family)
    out = [_reference(depth, width_scale, family)] if include_reference else []
    for mean, scale, skew in _grid(depth, family):
        widths = variant_widths(depth, mean, scale, skew, width_scale, family)
        out.append(Variant(variant_id(depth, mean, scale, skew, family), depth, mean, scale, skew, tuple(widths),
                           family))
    return out


def get_variant(text: str, width_scale: float = 1.0) -> Variant:
    """The variant with id ``text`` (its family is part of the id; the reference ``d<depth>-ref``
    included); a one-line error if the id is not in the family of its depth."""
    depth, mean, scale, skew, family = parse_variant_id(text)
    depth = _depth(depth)
    if mean is None:
        return _reference(depth, width_scale, family)
    grid = _grid(depth, family)
    if (mean, scale, skew) not in set(grid):
        raise InvalidOptionError(f"{text!r} is not one of the {len(grid)} {family} variants of depth {depth}; list "
                                 f"them with 'tfbdl feature-amounts list-variants --vgg-depth {depth}"
                                 f"{'' if family == DEFAULT_FAMILY else ' --family ' + family}'")
    widths = variant_widths(depth, mean, scale, skew, width_scale, family)
    return Variant(variant_id(depth, mean, scale, skew, family), depth, mean, scale, skew, tuple(widths), family)


def select_spread(variants, count: int) -> list[Variant]:
    """``count`` variants spread evenly over where their features sit (early fraction), the
    reference first if present; deterministic (ties by id)."""
    variants = list(variants)
    if count >= len(variants):
        return variants
    refs = [v for v in variants if v.is_reference][:count]
    rest = sorted((v for v in variants if not v.is_reference), key=lambda v: (v.early_fraction, v.id))
    k = count - len(refs)
    if k <= 0:
        return refs
    picks = np.unique(np.round(np.linspace(0, len(rest) - 1, k)).astype(int))
    return refs + [rest[i] for i in picks]


INITIALIZERS = ("kaiming-normal", "kaiming-uniform", "xavier-normal", "xavier-uniform")


def _initializer(name: str, seed):
    import keras

    table = {"kaiming-normal": keras.initializers.HeNormal, "kaiming-uniform": keras.initializers.HeUniform,
             "xavier-normal": keras.initializers.GlorotNormal, "xavier-uniform": keras.initializers.GlorotUniform}
    return table[name](seed=seed)


def build_variant(variant: Variant, num_classes: int = 10, input_shape=(32, 32, 3), *, batch_norm_epsilon=1e-4,
                  dropout: float = 0.5, init: str = "kaiming-normal", seed: int | None = None):
    """The Keras model of ``variant`` (:func:`~tfbdl.nn.vgg.vgg_layerwise`): conv -> BN -> ReLU
    blocks, two hidden dense layers with BN, ``dropout`` before the output layer.

    ``init`` is the paper's ``--weight-init``: Kaiming normal (fan-in; the default and what
    ``vgg_layerwise`` draws), Kaiming uniform, Xavier normal or uniform for every conv and
    dense kernel, biases zero (every initialiser seeded from ``seed``).
    """
    from tfbdl.nn.vgg import vgg_layerwise

    if init not in INITIALIZERS:
        raise InvalidOptionError(f"--init must be one of {', '.join(INITIALIZERS)}, got {init!r}")
    model = vgg_layerwise(list(variant.widths), num_classes, input_shape, batch_norm_epsilon=batch_norm_epsilon,
                          dropout=dropout, seed=seed, name=f"vgg_{variant.id.replace('-', '_').replace('.', 'p')}")
    if init != "kaiming-normal":
        _reinitialise(model, init, seed)
    return model


def _reinitialise(model, init: str, seed) -> None:
    import keras

    for k, layer in enumerate(l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))):
        kernel = layer.kernel
        layer_seed = None if seed is None else derive_seed(int(seed), k, _LAYER_STREAM, bits=32)
        kernel.assign(_initializer(init, layer_seed)(kernel.shape, kernel.dtype))
