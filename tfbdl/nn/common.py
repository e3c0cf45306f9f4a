"""Argument checks and small layer helpers shared by the model factories (PyTorch-default layers)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn.initializers import torch_bias, torch_linear_kernel
from tfbdl.validate import positive_int, probability

__all__ = ["TORCH_BN_EPSILON", "TORCH_BN_MOMENTUM", "batch_norm", "image_input", "image_shape", "rate", "too_small",
           "torch_conv", "torch_dense", "widths"]

# PyTorch's BatchNorm2d defaults: running stats updated with momentum 0.1 (Keras counts the
# other way: new = momentum * old + (1 - momentum) * batch), epsilon 1e-5.
TORCH_BN_MOMENTUM = 0.9
TORCH_BN_EPSILON = 1e-5


def widths(values, what: str, allow_empty: bool = False) -> tuple[int, ...]:
    """A sequence of positive integers (layer widths) as a tuple."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidOptionError(f"{what} must be a sequence of positive integers, got {values!r}")
    out = tuple(positive_int(v, f"each of {what}") for v in values)
    if not out and not allow_empty:
        raise InvalidOptionError(f"{what} must not be empty")
    return out


def rate(value, what: str) -> float:
    """A dropout rate in [0, 1)."""
    return probability(value, what, below_one=True)


def image_shape(input_shape, model: str) -> tuple[int, int, int]:
    """``(height, width, channels)`` of an NHWC image input, else ShapeError."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) != 3
            or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape)):
        raise ShapeError(f"{model} takes images as input_shape=(height, width, channels) with positive "
                         f"integers (NHWC, no batch axis), got {input_shape!r}")
    return tuple(int(d) for d in shape)


def too_small(model: str, input_shape, needed: str) -> ShapeError:
    return ShapeError(f"{model}: input_shape {tuple(input_shape)} is too small ({needed}); "
                      f"resize or pad the images, or use a model made for this size")


def image_input(shape) -> keras.KerasTensor:
    return keras.Input(shape=tuple(shape), dtype="float32", name="images")


def batch_norm(name: str, epsilon: float = TORCH_BN_EPSILON) -> keras.layers.BatchNormalization:
    """A standard Keras BatchNormalization over the last (channel) axis with PyTorch's defaults."""
    return keras.layers.BatchNormalization(axis=-1, momentum=TORCH_BN_MOMENTUM, epsilon=epsilon, name=name)


def torch_conv(x, filters: int, kernel_size: int, *, stride: int = 1, padding: int = 0, use_bias: bool,
               kernel_initializer, bias_initializer="zeros", name: str):
    """``nn.Conv2d(kernel_size, stride, padding)`` in Keras.

    PyTorch pads ``padding`` zeros on every side. Keras ``"same"`` pads asymmetrically when the
    stride is 2, so that case (and any padding other than "same" at stride 1) is an explicit
    ``ZeroPadding2D`` followed by a ``"valid"`` convolution: the outputs then match PyTorch's
    pixel for pixel.
    """
    if padding == 0:
        mode = "valid"
    elif stride == 1 and kernel_size % 2 == 1 and padding == kernel_size // 2:
        mode = "same"
    else:
        x = keras.layers.ZeroPadding2D(padding=padding, name=f"{name}_pad")(x)
        mode = "valid"
    conv = keras.layers.Conv2D(filters, kernel_size, strides=stride, padding=mode, use_bias=use_bias,
                               kernel_initializer=kernel_initializer,
                               bias_initializer=bias_initializer if use_bias else "zeros", name=name)
    return conv(x)


def torch_dense(x, units: int, seeds, *, name: str, use_bias: bool = True):
    """``nn.Linear(x.shape[-1], units)`` with PyTorch's default initialisation (seeded from ``seeds``)."""
    fan_in = int(x.shape[-1])
    kernel_seed = seeds()
    bias_seed = seeds() if use_bias else None
    layer = keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=torch_linear_kernel(kernel_seed),
                               bias_initializer=torch_bias(fan_in, bias_seed) if use_bias else "zeros",
                               name=name)
    return layer(x)
