"""Fully connected networks for 1-D regression and linearised-network experiments.

The reference is the regression network of SWAG / understandingbdl
(``swag/models/regression_net.py``, ``RegNetBase``): ``Linear -> ReLU`` for each hidden width,
then a linear output, every layer with PyTorch's default initialisation
(``U(+-1/sqrt(fan_in))`` for weights and biases). The reference's optional extras (MC-dropout
masks, a softplus variance column) are training-time concerns and are left to the callers.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream
from tfbdl.validate import positive_int

__all__ = ["mlp"]


def mlp(hidden_widths, num_outputs: int = 1, input_shape=(1,), activation: str | Callable = "relu", *,
        output_activation: str | Callable | None = None, seed: int | None = None, name: str = "mlp") -> keras.Model:
    """A multilayer perceptron.

    Args:
        hidden_widths: widths of the hidden layers, e.g. ``(50, 50)`` or the reference's toy
            regression ``(200, 50, 50, 50)``; empty for a linear model.
        num_outputs: width of the output layer.
        input_shape: shape of one example without the batch axis; ``(1,)`` for 1-D regression.
            Inputs of more than one axis (images) are flattened first.
        activation: a Keras activation name (``"relu"``, ``"tanh"``, ...) or a callable, applied
            after every hidden layer.
        output_activation: activation of the output layer (``None``: linear).
        seed: seeds every initialiser; ``None`` for Keras's own.

    Returns:
        A built ``keras.Model``: ``float32 [batch, *input_shape] -> [batch, num_outputs]``.
    """
    hidden_widths = c.widths(hidden_widths, "hidden_widths", allow_empty=True)
    num_outputs = positive_int(num_outputs, "num_outputs")
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (not shape
            or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape)):
        raise ShapeError(f"mlp input_shape must be a non-empty tuple of positive integers (no batch axis), "
                         f"e.g. (1,) for 1-D regression; got {input_shape!r}")
    act = _activation(activation, "activation")
    out_act = None if output_activation is None else _activation(output_activation, "output_activation")
    seeds = SeedStream(seed)

    inputs = keras.Input(shape=tuple(int(d) for d in shape), dtype="float32", name="inputs")
    x = inputs if len(shape) == 1 else keras.layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(hidden_widths, start=1):
        x = c.torch_dense(x, width, seeds, name=f"fc{i}")
        x = keras.layers.Activation(act, name=f"act{i}")(x)
    outputs = c.torch_dense(x, num_outputs, seeds, name="outputs")
    if out_act is not None:
        outputs = keras.layers.Activation(out_act, name="output_activation")(outputs)
    return keras.Model(inputs, outputs, name=name)


def _activation(value, what: str):
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError):
        raise InvalidOptionError(f"{what} {value!r} is not a Keras activation name or a callable") from None
