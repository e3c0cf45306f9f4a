"""Keras 3 model zoo: plain ``keras.Model``s built by small factory functions, no training logic.

Images are ``float32`` NHWC; every classifier returns logits ``[batch, num_classes]``. Every
factory takes a ``seed`` that fixes its initial weights. Architectures follow the papers' own
PyTorch code (see each module's docstring for the file it follows and what differs):

- :func:`lenet5`: the SWAG / understandingbdl LeNet5 (20-50 conv, 500 dense).
- :func:`vgg` (any per-layer widths), :func:`vgg16`, :func:`vgg16_bn`, and :func:`vgg_layerwise`
  for the "layer-wise feature amounts" paper.
- :func:`preresnet` / :func:`preresnet20`: pre-activation ResNets for CIFAR.
- :func:`resnet18`: the CIFAR ResNet18 of the linearized-networks paper (with a width option).
- :func:`ntk_lenet`: the linearized-networks paper's LeNet (6/16/120/84, 'same' convs, avg-pool).
- :func:`mlp`: fully connected networks for regression and linearised networks.
- :func:`fconv`: the deep weight prior paper's 7x7 / 5x5 convolutional network.

:func:`build_model` builds one by name from :data:`MODELS`; :func:`count_params` and
:func:`batch_norm_layers` inspect built models.
"""

from tfbdl.nn.fconv import fconv
from tfbdl.nn.initializers import (
    SeedStream,
    glorot_normal,
    he_normal_fan_in,
    he_normal_fan_out,
    torch_bias,
    torch_linear_kernel,
)
from tfbdl.nn.lenet import lenet5
from tfbdl.nn.mlp import mlp
from tfbdl.nn.ntk_lenet import ntk_lenet
from tfbdl.nn.preresnet import preresnet, preresnet20
from tfbdl.nn.resnet18 import resnet18
from tfbdl.nn.registry import MODELS, build_model
from tfbdl.nn.utils import batch_norm_layers, count_params
from tfbdl.nn.vgg import VGG16_STAGES, VGG19_STAGES, vgg, vgg16, vgg16_bn, vgg_layer_widths, vgg_layerwise

__all__ = [
    "MODELS",
    "build_model",
    "count_params",
    "batch_norm_layers",
    "lenet5",
    "vgg",
    "vgg16",
    "vgg16_bn",
    "vgg_layerwise",
    "vgg_layer_widths",
    "VGG16_STAGES",
    "VGG19_STAGES",
    "preresnet",
    "preresnet20",
    "resnet18",
    "mlp",
    "fconv",
    "ntk_lenet",
    "SeedStream",
    "torch_linear_kernel",
    "torch_bias",
    "he_normal_fan_out",
    "he_normal_fan_in",
    "glorot_normal",
]
