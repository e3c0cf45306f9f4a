"""LeNet5 as in the SWAG / "Bayesian deep learning and a probabilistic perspective of
generalization" code (``izmailovpavel/understandingbdl``, ``swag/models/lenet5.py``).

That reference ``LeNet5`` is the Caffe-style LeNet, not LeCun's 6/16/120/84 network:

    conv 5x5, 20 channels, no padding -> ReLU -> max-pool 2x2
    conv 5x5, 50 channels, no padding -> ReLU -> max-pool 2x2
    flatten (50 * 4 * 4 = 800 on 28x28 inputs) -> dense 500 -> ReLU -> dense num_classes (logits)

Initialisation as in the reference: convolution weights ``normal(0, sqrt(2 / (25 * out)))``
and zero biases; dense layers PyTorch's default ``U(+-1/sqrt(fan_in))`` for weights and biases.
The classic LeNet-5 widths are one call away: ``lenet5(conv_widths=(6, 16), dense_widths=(120, 84))``.

Differences forced by Keras: images are NHWC, so the flattened features are ordered
``(h, w, c)`` instead of PyTorch's ``(c, h, w)`` (the same function, a permuted first dense
weight when porting weights). The reference hard-codes one input channel and 28x28 inputs;
here the input shape is an argument and the first dense layer follows the feature map size.
"""

from __future__ import annotations

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream, he_normal_fan_out
from tfbdl.validate import positive_int

__all__ = ["lenet5"]


def lenet5(num_classes: int = 10, input_shape=(28, 28, 1), *, conv_widths=(20, 50), dense_widths=(500,),
           seed: int | None = None, name: str = "lenet5") -> keras.Model:
    """LeNet5 of the understandingbdl / SWAG code (see the module docstring).

    Args:
        num_classes: number of outputs (logits).
        input_shape: ``(height, width, channels)``, at least 16x16 (two valid 5x5 convs, two
            2x2 pools). 28x28x1 (MNIST) by default; 3 channels work too.
        conv_widths: channels of the two 5x5 convolutions (reference: 20, 50).
        dense_widths: hidden dense widths after flattening (reference: one layer of 500).
        seed: seeds every initialiser (same seed, same weights); ``None`` for Keras's own.

    Returns:
        A built functional ``keras.Model``: ``float32 [batch, H, W, C] -> logits [batch, num_classes]``.
        On 28x28x1 with the defaults it has 431,080 parameters.
    """
    num_classes = positive_int(num_classes, "num_classes")
    h, w, ch = c.image_shape(input_shape, "lenet5")
    conv_widths = c.widths(conv_widths, "conv_widths")
    if len(conv_widths) != 2:
        raise InvalidOptionError(f"lenet5 has two convolutions: conv_widths needs 2 widths, got {conv_widths}")
    dense_widths = c.widths(dense_widths, "dense_widths", allow_empty=True)
    for _ in range(2):
        h, w = (h - 4) // 2, (w - 4) // 2
    if h < 1 or w < 1:
        raise c.too_small("lenet5", input_shape, "two valid 5x5 convolutions and two 2x2 poolings need 16x16")
    seeds = SeedStream(seed)

    inputs = c.image_input(input_shape)
    x = inputs
    for i, width in enumerate(conv_widths, start=1):
        x = c.torch_conv(x, width, 5, use_bias=True, kernel_initializer=he_normal_fan_out(seeds()),
                         name=f"conv{i}")
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate(dense_widths, start=1):
        x = c.torch_dense(x, width, seeds, name=f"fc{i}")
        x = keras.layers.ReLU(name=f"fc{i}_relu")(x)
    outputs = c.torch_dense(x, num_classes, seeds, name="logits")
    return keras.Model(inputs, outputs, name=name)

