"""Pre-activation ResNets for CIFAR as in SWAG / understandingbdl (``swag/models/preresnet.py``,
itself from bearpaw/pytorch-classification).

Architecture (depth ``6n + 2`` with basic blocks below 44, ``9n + 2`` with bottlenecks from 44):

    conv 3x3, 16 channels, no bias
    stage 1: n blocks, widths[0] channels, stride 1
    stage 2: n blocks, widths[1] channels, first block stride 2
    stage 3: n blocks, widths[2] channels, first block stride 2
    BatchNorm -> ReLU -> average pool 8x8 -> flatten -> dense num_classes (logits)

Basic block (pre-activation): ``BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> conv3x3``, plus
the block input (through a 1x1 strided convolution without bias when the shape changes; the
shortcut takes the raw input, not the pre-activated one). Bottleneck: ``BN-ReLU-conv1x1(w)``,
``BN-ReLU-conv3x3(w, stride)``, ``BN-ReLU-conv1x1(4w)`` plus the shortcut. Without skip
connections (the reference's ``PreResNet20NoSkip``) a block is ``conv-BN-ReLU-conv-BN-ReLU``.

Initialisation as in the reference: convolutions ``normal(0, sqrt(2 / (k * k * out)))``, batch
norm scale 1 and offset 0, the dense layer PyTorch's default.

Differences forced by Keras: a stride-2 3x3 convolution is an explicit 1-pixel zero padding and
a "valid" convolution (Keras's "same" pads only bottom/right at stride 2, PyTorch pads both
sides). The reference's no-skip blocks still create unused 1x1 shortcut convolutions (counted
by PyTorch's ``parameters()``); here they are not created.
"""

from __future__ import annotations

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream, he_normal_fan_out
from tfbdl.validate import positive_int

__all__ = ["preresnet", "preresnet20"]

_BOTTLENECK_FROM = 44
_EXPANSION = {"basic": 1, "bottleneck": 4}


def preresnet(depth: int, num_classes: int = 10, input_shape=(32, 32, 3), *, widths=(16, 32, 64),
              stem_width: int = 16, skip_connections: bool = True, global_pool: bool = False,
              seed: int | None = None, name: str | None = None) -> keras.Model:
    """A pre-activation ResNet (see the module docstring).

    Args:
        depth: ``6n + 2`` (basic blocks, depth < 44: 8, 20, 56 is not, ...) or ``9n + 2``
            (bottleneck blocks, depth >= 44: 56, 83, 110, 164).
        num_classes: number of outputs (logits).
        input_shape: ``(height, width, channels)``; with the reference's 8x8 average pooling the
            last feature map (``ceil(H / 4)``) must be at least 8 pixels, so at least 29x29.
        widths: channels of the three stages (reference 16, 32, 64; ImageNette variant 4, 8, 16),
            times 4 at the output of bottleneck blocks.
        stem_width: channels of the first convolution (16 in the reference, whatever ``widths``).
        skip_connections: ``False`` builds the reference's no-skip basic blocks (depth < 44 only).
        global_pool: average over the whole last feature map instead of the reference's 8x8
            pooling + flatten (the same on 32x32 inputs, and works on any input size).
        seed: seeds every initialiser; ``None`` for Keras's own.

    Returns:
        A built ``keras.Model``: ``float32 [batch, H, W, C] -> logits [batch, num_classes]``.
        PreResNet20 on 32x32x3 with 10 classes: 272,282 trainable parameters (and 1,376
        non-trainable batch-norm statistics).
    """
    depth = positive_int(depth, "depth")
    if depth >= _BOTTLENECK_FROM:
        if (depth - 2) % 9:
            raise InvalidOptionError(f"preresnet depth >= {_BOTTLENECK_FROM} uses bottleneck blocks and must be "
                                     f"9n + 2 (56, 83, 110, 164, ...), got {depth}")
        block, n = "bottleneck", (depth - 2) // 9
        if not skip_connections:
            raise InvalidOptionError("skip_connections=False exists only for basic blocks (depth < 44), "
                                     f"got depth {depth}")
    else:
        if (depth - 2) % 6 or depth < 8:
            raise InvalidOptionError(f"preresnet depth < {_BOTTLENECK_FROM} uses basic blocks and must be 6n + 2 "
                                     f"(8, 14, 20, 26, 32, 38), got {depth}")
        block, n = "basic", (depth - 2) // 6
    num_classes = positive_int(num_classes, "num_classes")
    h, w, _ = c.image_shape(input_shape, "preresnet")
    widths = c.widths(widths, "widths")
    if len(widths) != 3:
        raise InvalidOptionError(f"preresnet has three stages: widths needs 3 values, got {widths}")
    stem_width = positive_int(stem_width, "stem_width")
    final_h, final_w = -(-h // 4), -(-w // 4)
    if not global_pool and (final_h < 8 or final_w < 8):
        raise c.too_small("preresnet", input_shape, "the reference's 8x8 average pooling needs a last feature "
                                                    "map of at least 8x8, i.e. 29x29 inputs; or pass "
                                                    "global_pool=True")
    seeds = SeedStream(seed)
    expansion = _EXPANSION[block]

    def conv(x, filters, kernel_size, stride, name):
        return c.torch_conv(x, filters, kernel_size, stride=stride, padding=kernel_size // 2, use_bias=False,
                            kernel_initializer=he_normal_fan_out(seeds()), name=name)

    inputs = c.image_input(input_shape)
    x = conv(inputs, stem_width, 3, 1, "conv1")
    in_width = stem_width
    for s, width in enumerate(widths, start=1):
        for b in range(1, n + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            prefix = f"stage{s}_block{b}_"
            if not skip_connections:
                x = conv(x, width, 3, stride, prefix + "conv1")
                x = c.batch_norm(prefix + "bn1")(x)
                x = keras.layers.ReLU(name=prefix + "relu1")(x)
                x = conv(x, width, 3, 1, prefix + "conv2")
                x = c.batch_norm(prefix + "bn2")(x)
                x = keras.layers.ReLU(name=prefix + "relu2")(x)
                in_width = width
                continue
            shortcut = x
            if stride != 1 or in_width != width * expansion:
                shortcut = conv(x, width * expansion, 1, stride, prefix + "downsample")
            if block == "basic":
                plan = [(width, 3, stride), (width, 3, 1)]
            else:
                plan = [(width, 1, 1), (width, 3, stride), (width * expansion, 1, 1)]
            out = x
            for i, (filters, kernel_size, conv_stride) in enumerate(plan, start=1):
                out = c.batch_norm(f"{prefix}bn{i}")(out)
                out = keras.layers.ReLU(name=f"{prefix}relu{i}")(out)
                out = conv(out, filters, kernel_size, conv_stride, f"{prefix}conv{i}")
            x = keras.layers.Add(name=prefix + "add")([out, shortcut])
            in_width = width * expansion
    x = c.batch_norm("bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    if global_pool:
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    else:
        x = keras.layers.AveragePooling2D(pool_size=8, strides=8, name="avgpool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    outputs = c.torch_dense(x, num_classes, seeds, name="logits")
    return keras.Model(inputs, outputs, name=name or f"preresnet{depth}")


def preresnet20(num_classes: int = 10, input_shape=(32, 32, 3), *, skip_connections: bool = True,
                seed: int | None = None) -> keras.Model:
    """PreResNet20 (3 basic blocks per stage, 16/32/64 channels): ``preresnet(20, ...)``.

    ``float32 [batch, 32, 32, C] -> logits [batch, num_classes]``; 272,282 trainable parameters
    for 10 classes on 3 channels.
    """
    return preresnet(20, num_classes, input_shape, skip_connections=skip_connections, seed=seed)
