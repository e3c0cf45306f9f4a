"""The LeNet of the linearized-networks paper (Ortiz-Jiménez et al. 2021, ``models/jax/lenet.py``).

Not the zoo's :func:`tfbdl.nn.lenet5` (the Caffe LeNet of the SWAG code: valid convolutions,
max-pool, ReLU only). This one is LeCun's 6/16/120/84 network as the reference writes it in Flax::

    conv 5x5 'same' (w0) -> act -> avg-pool 2 -> conv 5x5 'same' (w1) -> act -> avg-pool 2 ->
    flatten -> dense w2 -> act -> dense w3 -> act -> dense num_outputs

with Flax's default initialisation: LeCun normal kernels (truncated, variance ``1 / fan_in``) and
zero biases. The activation is a choice (the reference's ``gelu`` is the tanh approximation).
"""

from __future__ import annotations

import functools

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream
from tfbdl.validate import positive_int

__all__ = ["ntk_lenet"]


def _activation(name: str):
    if name == "gelu":  # Flax's nn.gelu, the reference's, is the tanh approximation
        return functools.partial(keras.activations.gelu, approximate=True)
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        raise InvalidOptionError(f"unknown activation {name!r} (a Keras activation name, e.g. relu or gelu)") from None


def ntk_lenet(num_outputs: int = 1, input_shape=(32, 32, 3), *, widths=(6, 16, 120, 84), activation: str = "relu",
              seed: int | None = None, name: str = "lenet") -> keras.Model:
    """The linearized-networks paper's LeNet (see the module docstring).

    Args:
        num_outputs: width of the last dense layer (one logit for the paper's binary tasks).
        input_shape: ``(height, width, channels)``, at least 4x4 (two 2x2 average pools).
        widths: the two convolutions' channels, then the two hidden dense widths.
        activation: a Keras activation name; ``"gelu"`` is the tanh approximation.
        seed: seeds every initialiser (same seed, same weights).

    Returns:
        A built ``keras.Model``: ``float32 [batch, H, W, C] -> [batch, num_outputs]``; layers
        ``conv1, conv2, fc1, fc2, logit``.
    """
    num_outputs = positive_int(num_outputs, "num_outputs")
    h, w, _ = c.image_shape(input_shape, "ntk_lenet")
    widths = c.widths(widths, "widths")
    if len(widths) != 4:
        raise InvalidOptionError(f"ntk_lenet needs 4 widths (two convolutions, two dense layers), got {widths}")
    if h < 4 or w < 4:
        raise c.too_small("ntk_lenet", input_shape, "two 2x2 average pools need 4x4")
    act = _activation(activation)
    seeds = SeedStream(seed)

    inputs = c.image_input(input_shape)
    x = inputs
    for i, width in enumerate(widths[:2], start=1):
        x = keras.layers.Conv2D(width, 5, padding="same", kernel_initializer=keras.initializers.LecunNormal(seeds()),
                                name=f"conv{i}")(x)
        x = keras.layers.Activation(act, name=f"act{i}")(x)
        x = keras.layers.AveragePooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate(widths[2:], start=1):
        x = keras.layers.Dense(width, kernel_initializer=keras.initializers.LecunNormal(seeds()), name=f"fc{i}")(x)
        x = keras.layers.Activation(act, name=f"fc{i}_act")(x)
    outputs = keras.layers.Dense(num_outputs, kernel_initializer=keras.initializers.LecunNormal(seeds()),
                                 name="logit")(x)
    return keras.Model(inputs, outputs, name=name)
