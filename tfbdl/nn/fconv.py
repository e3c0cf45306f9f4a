"""The small convolutional network of the deep weight prior paper (Atanov et al. 2019).

Reference: ``FConvMNIST`` in ``models/lenet.py`` of the DWP code
(``SamsungLabs/deep-weight-prior``, the same code as ``bayesgroup/deep-weight-prior``),
configuration ``vanilla`` / ``vanilla-do``, default ``--hid_dim 32 64``:

    conv 7x7, widths[0] channels, no padding -> LeakyReLU(0.01) [-> Dropout] -> max-pool 2x2
    conv 5x5, widths[1] channels, no padding -> LeakyReLU(0.01) [-> Dropout] -> max-pool 2x2
    flatten (widths[1] * 3 * 3 on 28x28 inputs) -> dense num_classes (logits)

There is no global pooling in the reference: the classifier is one dense layer on the flattened
3x3 map, which is what is built here. The deep weight prior acts on the 7x7 and 5x5 kernels
(layers ``conv1`` and ``conv2``).

Initialisation as in the reference's ``weights_init``: every conv and dense kernel Xavier-normal
(untruncated), biases left at PyTorch's default ``U(+-1/sqrt(fan_in))``. Differences forced by
Keras: NHWC flattening order (``(h, w, c)`` instead of ``(c, h, w)``); PyTorch's
``LeakyReLU`` slope 0.01 is set explicitly (Keras defaults to 0.3); the reference hard-codes
28x28x1 inputs and 10 classes, which are arguments here.
"""

from __future__ import annotations

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream, glorot_normal, torch_bias
from tfbdl.validate import positive_int

__all__ = ["check_fconv_shapes", "fconv"]

_LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU default


def check_fconv_shapes(input_shape, widths, model: str) -> tuple[int, tuple[int, ...]]:
    """``(input channels, widths)`` after checking that ``widths`` has two positive values and that
    ``input_shape`` survives a 7x7 and a 5x5 valid convolution with two 2x2 poolings (18x18 or more)."""
    h, w, channels = c.image_shape(input_shape, model)
    widths = c.widths(widths, "widths")
    if len(widths) != 2:
        raise InvalidOptionError(f"{model} has two convolutions: widths needs 2 values, got {widths}")
    for k in (7, 5):
        h, w = (h - k + 1) // 2, (w - k + 1) // 2
    if h < 1 or w < 1:
        raise c.too_small(model, input_shape, "a 7x7 and a 5x5 valid convolution with two 2x2 poolings need 18x18")
    return channels, widths


def fconv(num_classes: int = 10, input_shape=(28, 28, 1), *, widths=(32, 64), dropout=None,
          seed: int | None = None, name: str = "fconv") -> keras.Model:
    """The deep weight prior paper's MNIST / notMNIST network (see the module docstring).

    Args:
        num_classes: number of outputs (logits).
        input_shape: ``(height, width, channels)``, at least 18x18 (a 7x7 and a 5x5 valid
            convolution with two 2x2 poolings); 28x28x1 by default.
        widths: channels of the 7x7 and 5x5 convolutions (the paper's ``hid_dim``, 32 and 64).
        dropout: ``None`` or two rates, one after each convolution's activation (``vanilla-do``).
        seed: seeds every initialiser and dropout; ``None`` for Keras's own.

    Returns:
        A built ``keras.Model``: ``float32 [batch, H, W, C] -> logits [batch, num_classes]``;
        58,634 parameters with the defaults on 28x28x1.
    """
    num_classes = positive_int(num_classes, "num_classes")
    channels, widths = check_fconv_shapes(input_shape, widths, "fconv")
    if dropout is None:
        rates = (0.0, 0.0)
    else:
        try:
            rates = tuple(c.rate(r, "each dropout rate") for r in dropout)
        except TypeError:
            raise InvalidOptionError(f"dropout must be None or two rates, got {dropout!r}") from None
        if len(rates) != 2:
            raise InvalidOptionError(f"dropout must be None or two rates (one per convolution), got {dropout!r}")
    seeds = SeedStream(seed)

    inputs = c.image_input(input_shape)
    x = inputs
    in_channels = channels
    for i, (width, k, r) in enumerate(zip(widths, (7, 5), rates), start=1):
        kernel_seed, bias_seed = seeds(), seeds()
        x = c.torch_conv(x, width, k, use_bias=True, kernel_initializer=glorot_normal(kernel_seed),
                         bias_initializer=torch_bias(in_channels * k * k, bias_seed), name=f"conv{i}")
        x = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE, name=f"relu{i}")(x)
        if r > 0:
            x = keras.layers.Dropout(r, seed=seeds(), name=f"dropout{i}")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{i}")(x)
        in_channels = width
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = int(x.shape[-1])
    kernel_seed, bias_seed = seeds(), seeds()
    outputs = keras.layers.Dense(num_classes, kernel_initializer=glorot_normal(kernel_seed),
                                 bias_initializer=torch_bias(fan_in, bias_seed), name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
