"""VGG networks for 32x32 images with arbitrary per-layer widths.

Two references:

- SWAG / understandingbdl, ``swag/models/vgg.py`` (``VGG16``, ``VGG16BN``, ...): stages of
  3x3 convolutions (padding 1, with bias) -> [BatchNorm] -> ReLU, a 2x2 max-pool after every
  stage, then the classifier ``Dropout(0.5) -> Linear(512, 512) -> ReLU -> Dropout(0.5) ->
  Linear(512, 512) -> ReLU -> Linear(512, num_classes)``. Convolutions are initialised
  ``normal(0, sqrt(2 / (9 * out)))`` with zero biases, dense layers with PyTorch's default.
  VGG16's configuration is ``64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M``.
- "Rethinking Layer-wise Feature Amounts in CNN Architectures" (Mundt et al. 2018,
  ``MrtnMndt/Rethinking_CNN_Layerwise_Feature_Amounts``, ``lib/Models/architectures.py``):
  the same five stages (2, 2, k, k, k convolutions for depth 7 + 3k) with an arbitrary width for
  every layer, convolutions without bias -> BatchNorm(eps) -> ReLU, a classifier of two hidden
  dense layers (no bias, BatchNorm, ReLU), one ``Dropout(0.5)`` before the output layer, and
  Kaiming-normal (fan-in) initialisation with zero biases. :func:`vgg_layerwise` builds it from
  the paper's flat list of per-layer widths.

:func:`vgg` is the general builder both are made from.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import common as c
from tfbdl.nn.initializers import SeedStream, he_normal_fan_in, he_normal_fan_out
from tfbdl.validate import positive_int

__all__ = ["VGG16_STAGES", "VGG19_STAGES", "vgg", "vgg16", "vgg16_bn", "vgg_layer_widths", "vgg_layerwise"]

#: Convolution widths of VGG16 (configuration "D"), one tuple per stage; a 2x2 max-pool follows each.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
#: Convolution widths of VGG19 (configuration "E").
VGG19_STAGES = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)

_INITS = ("torch", "he_normal")


def vgg(widths_per_stage, num_classes: int = 10, input_shape=(32, 32, 3), batch_norm: bool = False,
        dense_widths=(512, 512), dropout: float = 0.5, *, final_dropout: float = 0.0, conv_bias: bool = True,
        dense_batch_norm: bool = False, dense_bias: bool = True, batch_norm_epsilon: float = c.TORCH_BN_EPSILON,
        init: str = "torch", seed: int | None = None, name: str = "vgg") -> keras.Model:
    """A VGG network: stages of 3x3 convolutions, each stage ending in a 2x2 max-pool, then dense layers.

    Args:
        widths_per_stage: one sequence of convolution widths per stage, any widths and any number
            of layers per stage, e.g. :data:`VGG16_STAGES` or ``((16, 48), (200,), (7, 7, 7))``.
        num_classes: number of outputs (logits).
        input_shape: ``(height, width, channels)``; each stage halves the size (floor), so S
            stages need at least ``2**S`` pixels per side (32x32 for five stages).
        batch_norm: a ``keras.layers.BatchNormalization`` between each convolution and its ReLU.
        dense_widths: hidden dense widths of the classifier (the reference: 512, 512).
        dropout: dropout rate before each hidden dense layer (the SWAG reference: 0.5; 0 disables).
        final_dropout: dropout rate before the output layer (the feature-amounts reference: 0.5).
        conv_bias: convolutions have a bias (SWAG: yes, also with batch norm; feature amounts: no).
        dense_batch_norm: BatchNormalization between each hidden dense layer and its ReLU.
        dense_bias: hidden dense layers have a bias.
        batch_norm_epsilon: epsilon of every batch norm (PyTorch's default 1e-5); momentum is
            PyTorch's 0.1 (Keras ``momentum=0.9``).
        init: ``"torch"`` (SWAG: conv kernels ``normal(0, sqrt(2 / (9 * out)))``, zero conv biases,
            dense layers PyTorch's default uniform) or ``"he_normal"`` (feature amounts: every
            kernel ``normal(0, sqrt(2 / fan_in))``, zero biases).
        seed: seeds every initialiser and dropout layer; ``None`` for Keras's own seeds.

    Returns:
        A built ``keras.Model``: ``float32 [batch, H, W, C] -> logits [batch, num_classes]``. The
        classifier sees the flattened last feature map (``last_width * (H / 2**S) * (W / 2**S)``
        features; 512 for VGG16 on 32x32).
    """
    if isinstance(widths_per_stage, (str, bytes)) or not isinstance(widths_per_stage, Sequence):
        raise InvalidOptionError(f"widths_per_stage must be a sequence of stages, each a sequence of "
                                 f"convolution widths, got {widths_per_stage!r}")
    stages = [c.widths(stage, f"stage {i + 1} of widths_per_stage") for i, stage in enumerate(widths_per_stage)]
    if not stages:
        raise InvalidOptionError("widths_per_stage must have at least one stage")
    num_classes = positive_int(num_classes, "num_classes")
    h, w, _ = c.image_shape(input_shape, name)
    dense_widths = c.widths(dense_widths, "dense_widths", allow_empty=True)
    dropout = c.rate(dropout, "dropout")
    final_dropout = c.rate(final_dropout, "final_dropout")
    if init not in _INITS:
        raise InvalidOptionError(f"init must be one of {', '.join(_INITS)}, got {init!r}")
    if not float(batch_norm_epsilon) > 0:
        raise InvalidOptionError(f"batch_norm_epsilon must be positive, got {batch_norm_epsilon!r}")
    if h >> len(stages) < 1 or w >> len(stages) < 1:
        raise c.too_small(name, input_shape, f"{len(stages)} stages of 2x2 pooling need "
                                             f"{2 ** len(stages)}x{2 ** len(stages)}")
    seeds = SeedStream(seed)

    def conv_kernel_init():
        return he_normal_fan_out(seeds()) if init == "torch" else he_normal_fan_in(seeds())

    inputs = c.image_input(input_shape)
    x = inputs
    for s, stage in enumerate(stages, start=1):
        for i, width in enumerate(stage, start=1):
            prefix = f"stage{s}_"
            x = c.torch_conv(x, width, 3, padding=1, use_bias=conv_bias, kernel_initializer=conv_kernel_init(),
                             name=f"{prefix}conv{i}")
            if batch_norm:
                x = c.batch_norm(f"{prefix}bn{i}", batch_norm_epsilon)(x)
            x = keras.layers.ReLU(name=f"{prefix}relu{i}")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"stage{s}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate(dense_widths, start=1):
        if dropout > 0:
            x = keras.layers.Dropout(dropout, seed=seeds(), name=f"dropout{i}")(x)
        x = _dense(x, width, init, seeds, use_bias=dense_bias, name=f"fc{i}")
        if dense_batch_norm:
            x = c.batch_norm(f"fc{i}_bn", batch_norm_epsilon)(x)
        x = keras.layers.ReLU(name=f"fc{i}_relu")(x)
    if final_dropout > 0:
        x = keras.layers.Dropout(final_dropout, seed=seeds(), name="final_dropout")(x)
    outputs = _dense(x, num_classes, init, seeds, use_bias=True, name="logits")
    return keras.Model(inputs, outputs, name=name)


def _dense(x, units: int, init: str, seeds: SeedStream, *, use_bias: bool, name: str):
    if init == "torch":
        return c.torch_dense(x, units, seeds, use_bias=use_bias, name=name)
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=he_normal_fan_in(seeds()),
                              bias_initializer="zeros", name=name)(x)


def vgg16(num_classes: int = 10, batch_norm: bool = False, input_shape=(32, 32, 3), *, dropout: float = 0.5,
          seed: int | None = None) -> keras.Model:
    """VGG16 for CIFAR as in SWAG / understandingbdl (``VGG16``, or ``VGG16BN`` with ``batch_norm``).

    13 convolutions in :data:`VGG16_STAGES`, classifier ``Dropout -> 512 -> ReLU -> Dropout -> 512
    -> ReLU -> num_classes``; ``dropout=0`` gives the reference's ``VGG16NoDrop``.
    ``float32 [batch, 32, 32, C] -> logits [batch, num_classes]``; 15,245,130 parameters for
    10 classes on 3 channels (VGG16-BN: 8,448 more trainable and 8,448 non-trainable).
    """
    return vgg(VGG16_STAGES, num_classes, input_shape, batch_norm=batch_norm, dense_widths=(512, 512),
               dropout=dropout, seed=seed, name="vgg16_bn" if batch_norm else "vgg16")


def vgg16_bn(num_classes: int = 10, input_shape=(32, 32, 3), *, dropout: float = 0.5,
             seed: int | None = None) -> keras.Model:
    """VGG16 with batch norm (the reference's ``VGG16BN``): ``vgg16(..., batch_norm=True)``."""
    return vgg16(num_classes, True, input_shape, dropout=dropout, seed=seed)


def vgg_layer_widths(depth: int = 16, classifier_width: int = 512) -> list[int]:
    """The feature-amounts paper's flat list of widths for a standard VGG of ``depth`` layers:
    ``2 x 64, 2 x 128, k x 256, 2k x 512`` convolutions then ``2 x classifier_width``, with
    ``k = (depth - 7) / 3`` (depth 16 -> 15 widths)."""
    k = _layers_per_block(depth)
    classifier_width = positive_int(classifier_width, "classifier_width")
    return [64] * 2 + [128] * 2 + [256] * k + [512] * (2 * k) + [classifier_width] * 2


def vgg_layerwise(layer_widths, num_classes: int = 10, input_shape=(32, 32, 3), *,
                  batch_norm_epsilon: float = 1e-4, dropout: float = 0.5, seed: int | None = None,
                  name: str = "vgg_layerwise") -> keras.Model:
    """The VGG of "Rethinking Layer-wise Feature Amounts" from its flat list of per-layer widths.

    Args:
        layer_widths: ``depth - 1`` widths: the convolutions of the five stages (2, 2, k, k, k
            layers, ``k = (depth - 7) / 3``) followed by the two hidden dense widths, e.g.
            :func:`vgg_layer_widths` or a skew-normal redistribution of it.
        batch_norm_epsilon: epsilon of the batch norms after every convolution and hidden dense
            layer (the paper's ``--batch-norm``, 1e-4 by default); 0 builds the network without
            batch norm.
        dropout: rate of the one dropout before the output layer.
        seed: seeds every initialiser (Kaiming normal, fan-in) and the dropout.

    ``float32 [batch, H, W, C] -> logits [batch, num_classes]``.
    """
    if isinstance(layer_widths, (str, bytes)) or not isinstance(layer_widths, Sequence):
        raise InvalidOptionError(f"layer_widths must be a sequence of positive integers, got {layer_widths!r}")
    layer_widths = c.widths(layer_widths, "layer_widths")
    k = _layers_per_block(len(layer_widths) + 1)
    bounds = [0, 2, 4, 4 + k, 4 + 2 * k, 4 + 3 * k]
    stages = [layer_widths[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    epsilon = float(batch_norm_epsilon)
    if epsilon < 0:
        raise InvalidOptionError(f"batch_norm_epsilon must be >= 0 (0 turns batch norm off), got {epsilon}")
    use_bn = epsilon > 0
    return vgg(stages, num_classes, input_shape, batch_norm=use_bn, dense_widths=layer_widths[-2:],
               dropout=0.0, final_dropout=dropout, conv_bias=False, dense_batch_norm=use_bn, dense_bias=False,
               batch_norm_epsilon=epsilon if use_bn else c.TORCH_BN_EPSILON, init="he_normal", seed=seed,
               name=name)


def _layers_per_block(depth) -> int:
    depth = positive_int(depth, "VGG depth")
    if depth < 10 or (depth - 7) % 3:
        raise InvalidOptionError(f"a feature-amounts VGG has depth 7 + 3k (k >= 1: 10, 13, 16, 19, ...), "
                                 f"i.e. {depth - 1} layer widths do not fit; got depth {depth}")
    return (depth - 7) // 3
