"""Seeded Keras initialisers that reproduce PyTorch's, and the seed stream the model factories use.

The reference implementations of the papers are PyTorch code; to start from the same weight
distribution the Keras models use these initialisers:

- :func:`torch_linear_kernel` / :func:`torch_bias`: PyTorch's default ``nn.Linear`` /
  ``nn.Conv2d`` initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights
  (``kaiming_uniform_(a=sqrt(5))``) and biases.
- :func:`he_normal_fan_out`: ``normal(0, sqrt(2 / (k * k * out_channels)))``, the explicit
  convolution initialisation of the SWAG / understandingbdl models (LeNet5, VGG, PreResNet).
- :func:`he_normal_fan_in`: ``torch.nn.init.kaiming_normal_`` (untruncated), used by the
  layer-wise feature amounts code.
- :func:`glorot_normal`: ``torch.nn.init.xavier_normal_`` (untruncated, unlike Keras's
  ``GlorotNormal`` which truncates), used by the deep weight prior code.

Keras kernels are ``[kh, kw, in, out]`` (conv) or ``[in, out]`` (dense); their fans are those of
PyTorch's ``[out, in, kh, kw]`` / ``[out, in]`` weights, so the variances agree.

Seeds: a model factory takes one ``seed`` and gives every layer its own seed drawn from a
:class:`SeedStream`, so the same seed gives the same initial weights and layers differ.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tfbdl.errors import InvalidOptionError
from tfbdl.seeding import derive_seed

__all__ = [
    "SeedStream",
    "glorot_normal",
    "he_normal_fan_in",
    "he_normal_fan_out",
    "torch_bias",
    "torch_linear_kernel",
]


class SeedStream:
    """Deterministic per-layer seeds derived from one model seed.

    ``SeedStream(seed)()`` returns the next seed: an ``int`` in ``[0, 2**31)`` derived from
    ``(seed, counter)`` by :func:`tfbdl.seeding.derive_seed`, or ``None`` every time when
    ``seed`` is ``None`` (Keras then draws its own seeds, which ``keras.utils.set_random_seed``
    makes reproducible).
    """

    def __init__(self, seed: int | None):
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise InvalidOptionError(f"seed must be a non-negative integer or None, got {seed!r}")
            seed = int(seed)
        self.seed = seed
        self._count = 0

    def __call__(self) -> int | None:
        if self.seed is None:
            return None
        seed = derive_seed(self.seed, self._count)
        self._count += 1
        return seed


def torch_linear_kernel(seed: int | None = None) -> keras.initializers.Initializer:
    """PyTorch's default weight initialisation of ``nn.Linear`` and ``nn.Conv2d``:
    ``U(-b, b)`` with ``b = 1 / sqrt(fan_in)``."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


def torch_bias(fan_in: int, seed: int | None = None) -> keras.initializers.Initializer:
    """PyTorch's default bias initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    ``fan_in`` is the layer's (a bias has no fan of its own): ``in_features`` for a dense
    layer, ``in_channels * kh * kw`` for a convolution.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(minval=-bound, maxval=bound, seed=seed)


def he_normal_fan_out(seed: int | None = None) -> keras.initializers.Initializer:
    """``normal(0, sqrt(2 / fan_out))`` with ``fan_out = kh * kw * out_channels``, untruncated."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal",
                                              seed=seed)


def he_normal_fan_in(seed: int | None = None) -> keras.initializers.Initializer:
    """``normal(0, sqrt(2 / fan_in))``, untruncated (``torch.nn.init.kaiming_normal_``)."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_in", distribution="untruncated_normal",
                                              seed=seed)


def glorot_normal(seed: int | None = None) -> keras.initializers.Initializer:
    """``normal(0, sqrt(2 / (fan_in + fan_out)))``, untruncated (``torch.nn.init.xavier_normal_``)."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_avg", distribution="untruncated_normal",
                                              seed=seed)
