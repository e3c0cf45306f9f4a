"""The VGG family of "Rethinking Layer-wise Feature Amounts in CNN Architectures" (Mundt et al. 2018).

Every member keeps the total number of convolutional features (the sum of the conv layer
widths) of the reference VGG of the same depth and moves it between layers. Where the
features go follows a skew-normal density over the conv layers (the paper's scheme, in the
reference code ``lib/Models/skew_normal_models.py``)::

    pdf(x) = 2 / scale * phi((x - mean) / scale) * Phi(skew * (x - mean) / scale)

on ``x in [0, L]`` (``L`` conv layers, layer ``i`` owns ``[i, i + 1)``). Layer ``i`` gets the
probability mass of its unit interval, ``p_i = CDF(i + 1) - CDF(i)``, and the widths are
``p_i / sum(p) * total`` rounded to integers by the largest-remainder method so that their
sum is exactly ``total`` (:func:`apportion`). The grid of parameters is the reference's:

- ``mean`` in ``0, 1, ..., L`` (step 1),
- ``scale`` in ``0.5, 1.0, ..., 5.5`` (the reference's "variance" grid, step 0.5, without 0,
  where the density is undefined),
- ``skew`` in ``-40, -36, ..., 40`` (step 4),

and a triple is a variant when at least 95% of the density lies on ``[0, L]`` (not truncated
away) and every layer gets at least 2 features (:data:`MIN_LAYER_FEATURES`). For VGG-16 this
gives :func:`enumerate_variants` ``(16)`` = 222 variants ("about 200" in the paper).

Differences from the reference code, on purpose: it spread the features over the two hidden
classifier layers too and rounded each layer up (``ceil``), so its totals drift by up to one
feature per layer; here the classifier keeps the reference widths (512, 512) and the conv
total is exact. It integrated the density with a trapezoid rule on a 0.01 grid; here the
masses are exact skew-normal CDF differences (through Owen's T function).

A variant's id is a pure function of its parameters (:func:`variant_id`), e.g.
``d16-m3-s1.5-a-12``, so ids do not move when the grid or the list order changes; the
reference network itself is ``d16-ref``. Depths are ``7 + 3k`` (10, 13, 16 = VGG-D,
19 = VGG-E, ...): five stages of 2, 2, k, k, k same-padded 3x3 convolutions (see
:func:`tfbdl.nn.vgg.vgg_layerwise`, which builds every member).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np

from tfbdl.errors import InvalidOptionError

__all__ = [
    "INITIALIZERS",
    "MEANS_STEP",
    "MIN_LAYER_FEATURES",
    "SCALES",
    "SKEWS",
    "Variant",
    "apportion",
    "build_variant",
    "enumerate_variants",
    "get_variant",
    "layer_masses",
    "parse_variant_id",
    "reference_widths",
    "select_spread",
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
_ID = re.compile(r"^d(\d+)-(?:ref|m(-?\d+(?:\.\d+)?)-s(\d+(?:\.\d+)?)-a(-?\d+(?:\.\d+)?))$")


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


def reference_widths(depth: int, width_scale: float = 1.0) -> list[int]:
    """The reference VGG's ``depth - 1`` widths (conv layers then 2 x 512), each scaled by
    ``width_scale`` (rounded, at least 1): ``reference_widths(16)`` is VGG-D's
    ``64, 64, 128, 128, 256 x3, 512 x6, 512, 512``."""
    k = (_depth(depth) - 7) // 3
    ws = _width_scale(width_scale)
    full = [64] * 2 + [128] * 2 + [256] * k + [512] * (2 * k) + [CLASSIFIER_WIDTH] * 2  # = vgg_layer_widths
    return [_scaled(w, ws) for w in full]


def skewnorm_cdf(x, mean, scale, skew) -> np.ndarray:
    """The skew-normal CDF ``Phi(z) - 2 T(z, skew)``, ``z = (x - mean) / scale`` (Owen's T), broadcast."""
    from scipy.special import ndtr, owens_t

    z = (np.asarray(x, np.float64) - np.asarray(mean, np.float64)) / np.asarray(scale, np.float64)
    return ndtr(z) - 2.0 * owens_t(z, np.asarray(skew, np.float64))


def layer_masses(layers: int, mean: float, scale: float, skew: float) -> np.ndarray:
    """Skew-normal probability mass of each unit interval ``[i, i + 1)``, ``i < layers`` (float64)."""
    if not scale > 0:
        raise InvalidOptionError(f"the skew-normal scale must be > 0, got {scale!r}")
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


def _redistribute(depth: int, mean: float, scale: float, skew: float, width_scale: float):
    """(widths, valid) of one parameter triple; ``valid`` applies the paper's rules at full width."""
    ref_full = reference_widths(depth)
    conv_full = ref_full[:-2]
    masses = layer_masses(len(conv_full), mean, scale, skew)
    if masses.sum() < MIN_AREA:
        return None, False
    valid = min(apportion(masses, sum(conv_full))) >= MIN_LAYER_FEATURES
    ref = reference_widths(depth, width_scale)
    conv = apportion(masses, sum(ref[:-2]), minimum=1)
    return conv + ref[-2:], valid


def variant_widths(depth: int, mean: float, scale: float, skew: float, width_scale: float = 1.0) -> list[int]:
    """The ``depth - 1`` widths of the variant ``(mean, scale, skew)``: conv widths that sum to
    the reference's conv total (both scaled by ``width_scale``), classifier widths as the
    reference. Raises InvalidOptionError if more than 5% of the density falls outside the layers."""
    depth, width_scale = _depth(depth), _width_scale(width_scale)
    widths, _ = _redistribute(depth, mean, scale, skew, width_scale)
    if widths is None:
        raise InvalidOptionError(f"the skew-normal (mean {mean}, scale {scale}, skew {skew}) puts more than "
                                 f"{100 * (1 - MIN_AREA):g}% of its mass outside the conv layers of depth {depth}")
    return widths


def variant_id(depth: int, mean: float | None = None, scale: float | None = None, skew: float | None = None) -> str:
    """The stable id ``d<depth>-m<mean>-s<scale>-a<skew>`` (``%g`` numbers, e.g.
    ``d16-m3-s1.5-a-12``), or ``d<depth>-ref`` for the reference network."""
    if mean is None:
        return f"d{int(depth)}-ref"
    return f"d{int(depth)}-m{float(mean):g}-s{float(scale):g}-a{float(skew):g}"


def parse_variant_id(text: str) -> tuple[int, float | None, float | None, float | None]:
    """``(depth, mean, scale, skew)`` of an id (None parameters for ``d<depth>-ref``)."""
    m = _ID.match(str(text).strip())
    if m is None:
        raise InvalidOptionError(f"{text!r} is not a variant id (like d16-m3-s1.5-a-12 or d16-ref); "
                                 "list them with 'tfbdl feature-amounts list-variants'")
    depth = int(m.group(1))
    if m.group(2) is None:
        return depth, None, None, None
    return depth, float(m.group(2)), float(m.group(3)), float(m.group(4))


@functools.lru_cache(maxsize=16)
def _grid(depth: int) -> tuple[tuple[float, float, float], ...]:
    """The valid parameter triples of ``depth``, in (mean, scale, skew) order."""
    layers = len(reference_widths(depth)) - 2
    means = [MEANS_STEP * k for k in range(int(layers / MEANS_STEP) + 1)]
    valid = []
    for mean in means:
        for scale in SCALES:
            for skew in SKEWS:
                _, ok = _redistribute(depth, mean, scale, float(skew), 1.0)
                if ok:
                    valid.append((float(mean), float(scale), float(skew)))
    return tuple(valid)


def enumerate_variants(depth: int = 16, width_scale: float = 1.0, *, include_reference: bool = False) -> list[Variant]:
    """Every variant of the paper's grid for ``depth`` (222 for 16), optionally preceded by the
    reference network; widths scaled by ``width_scale`` (the set itself does not depend on it: the
    paper's rules are applied at full width, so a narrow member may have layers of 1 feature)."""
    depth, width_scale = _depth(depth), _width_scale(width_scale)
    out = []
    if include_reference:
        out.append(Variant(variant_id(depth), depth, None, None, None, tuple(reference_widths(depth, width_scale))))
    for mean, scale, skew in _grid(depth):
        widths = variant_widths(depth, mean, scale, skew, width_scale)
        out.append(Variant(variant_id(depth, mean, scale, skew), depth, mean, scale, skew, tuple(widths)))
    return out


def get_variant(text: str, width_scale: float = 1.0) -> Variant:
    """The variant with id ``text`` (the reference ``d<depth>-ref`` included); a one-line error if
    the id is not in the family of its depth."""
    depth, mean, scale, skew = parse_variant_id(text)
    depth = _depth(depth)
    if mean is None:
        return Variant(variant_id(depth), depth, None, None, None, tuple(reference_widths(depth, width_scale)))
    if (mean, scale, skew) not in set(_grid(depth)):
        raise InvalidOptionError(f"{text!r} is not one of the {len(_grid(depth))} variants of depth {depth}; list them "
                                 f"with 'tfbdl feature-amounts list-variants --vgg-depth {depth}'")
    widths = variant_widths(depth, mean, scale, skew, width_scale)
    return Variant(variant_id(depth, mean, scale, skew), depth, mean, scale, skew, tuple(widths))


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
        layer_seed = None if seed is None else int(np.random.SeedSequence([int(seed), k, 0xFA]).generate_state(1)[0])
        kernel.assign(_initializer(init, layer_seed)(kernel.shape, kernel.dtype))
