"""The CIFAR ResNet18 of "What can linearized neural networks actually say about generalization?"
(``gortizji/linearized-networks``, ``models/jax/resnet.py``: the Flax ResNet V1 with
``stage_sizes=[2, 2, 2, 2]`` and basic blocks).

Architecture (``widths = (w1, w2, w3, w4)``, reference ``(64, 128, 256, 512)``):

    conv 3x3, w1 channels, stride 1, no bias -> BN -> ReLU          (CIFAR stem: no max-pool)
    stage s = 1..4: 2 basic blocks of ws channels, the first of stages 2-4 with stride 2
    global average pool -> dense num_classes (logits, with bias)

Basic block (post-activation, ResNet V1)::

    y = conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN
    shortcut = x, or conv1x1(stride) -> BN where the shape changes
    out = ReLU(y + shortcut)

Convolutions have no bias. With the reference widths and 10 classes on 32x32x3 inputs this is the
standard CIFAR ResNet18 of 11,173,962 trainable parameters (and 9,600 batch-norm statistics).

Initialisation as in the Flax reference: convolution and dense kernels LeCun normal (truncated
normal of variance ``1 / fan_in``, Flax's default and ``keras.initializers.LecunNormal``), dense
bias zero, batch norm scale 1 and offset 0 except the second batch norm of every block, whose scale
starts at 0 (``zero_init_residual=True``: each residual branch is the zero function at
initialisation). Batch norm uses momentum 0.9 and epsilon 1e-5 as in the reference.

The projection shortcut's 1x1 stride-2 convolution is computed as a 2x subsampling
(:class:`Subsample2D`) followed by a 1x1 convolution: the same function with the same weights,
avoiding a oneDNN bug of TF 2.21 (Conv2DBackpropFilter with a 1x1 stride-2 kernel corrupts memory
at batch size 1, which a last training batch of one example or a second derivative hits).

Padding follows the reference too: Flax's and Keras's ``"same"`` pad a stride-2 3x3 convolution
with one pixel at the bottom/right only (PyTorch ports of ResNet18 pad both sides; the parameter
count is the same).
"""

from __future__ import annotations

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream
from tfbdl.validate import positive_int

__all__ = ["Subsample2D", "resnet18"]

_BLOCKS_PER_STAGE = 2


def resnet18(num_classes: int = 10, input_shape=(32, 32, 3), *, widths=(64, 128, 256, 512),
             zero_init_residual: bool = True, seed: int | None = None, name: str = "resnet18") -> keras.Model:
    """The CIFAR ResNet18 (see the module docstring).

    Args:
        num_classes: number of outputs (logits); the linearized-networks experiments use 1.
        input_shape: ``(height, width, channels)``; any size (three stride-2 stages, then a
            global average pool).
        widths: channels of the four stages (the stem has ``widths[0]``); ``(64, 128, 256, 512)``
            is the standard network, e.g. ``(16, 32, 64, 128)`` a narrow one for CPUs.
        zero_init_residual: start the second batch-norm scale of each block at 0 (reference);
            ``False`` starts every scale at 1.
        seed: seeds every initialiser; ``None`` for Keras's own.

    Returns:
        A built functional ``keras.Model``: ``float32 [batch, H, W, C] -> logits [batch, num_classes]``.
    """
    num_classes = positive_int(num_classes, "num_classes")
    c.image_shape(input_shape, "resnet18")
    widths = c.widths(widths, "widths")
    if len(widths) != 4:
        raise InvalidOptionError(f"resnet18 has four stages: widths needs 4 values, got {widths}")
    if not isinstance(zero_init_residual, bool):
        raise InvalidOptionError(f"zero_init_residual must be True or False, got {zero_init_residual!r}")
    seeds = SeedStream(seed)

    inputs = c.image_input(input_shape)
    x = _conv(inputs, widths[0], 3, 1, seeds, "stem_conv")
    x = c.batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for s, width in enumerate(widths, start=1):
        for b in range(1, _BLOCKS_PER_STAGE + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(x, width, stride, seeds, zero_init_residual, f"stage{s}_block{b}_")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.LecunNormal(seed=seeds()),
                                 bias_initializer="zeros", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="tfbdl")
class Subsample2D(keras.layers.Layer):
    """Every ``stride``-th row and column: ``[b, H, W, C] -> [b, ceil(H / s), ceil(W / s), C]``.

    Followed by a 1x1 convolution it is exactly a 1x1 convolution of stride ``s`` (same weights),
    which TF 2.21's oneDNN Conv2DBackpropFilter mishandles (heap corruption) at batch size 1.
    """

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = positive_int(stride, "stride")

    def call(self, x):
        return x[:, ::self.stride, ::self.stride, :]

    def compute_output_shape(self, input_shape):
        b, h, w, ch = input_shape
        s = self.stride
        return (b, None if h is None else -(-h // s), None if w is None else -(-w // s), ch)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def _conv(x, filters: int, kernel_size: int, stride: int, seeds: SeedStream, name: str):
    """A bias-free ``"same"`` convolution with LeCun-normal weights (Flax's ``nn.Conv`` default)."""
    layer = keras.layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False,
                                kernel_initializer=keras.initializers.LecunNormal(seed=seeds()), name=name)
    return layer(x)


def _basic_block(x, width: int, stride: int, seeds: SeedStream, zero_init_residual: bool, prefix: str):
    """ResNet V1 basic block: ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``."""
    y = _conv(x, width, 3, stride, seeds, prefix + "conv1")
    y = c.batch_norm(prefix + "bn1")(y)
    y = keras.layers.ReLU(name=prefix + "relu1")(y)
    y = _conv(y, width, 3, 1, seeds, prefix + "conv2")
    y = keras.layers.BatchNormalization(axis=-1, momentum=c.TORCH_BN_MOMENTUM, epsilon=c.TORCH_BN_EPSILON,
                                        gamma_initializer="zeros" if zero_init_residual else "ones",
                                        name=prefix + "bn2")(y)
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != width:
        if stride != 1:
            shortcut = Subsample2D(stride, name=prefix + "proj_subsample")(shortcut)
        shortcut = _conv(shortcut, width, 1, 1, seeds, prefix + "proj_conv")
        shortcut = c.batch_norm(prefix + "proj_bn")(shortcut)
    out = keras.layers.Add(name=prefix + "add")([y, shortcut])
    return keras.layers.ReLU(name=prefix + "relu2")(out)
