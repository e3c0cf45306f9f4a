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
:func:`batch_norm_layers` inspect built models, :func:`softmax_in_batches` evaluates one.

The names load on first use (:mod:`tfbdl.lazy`), so ``import tfbdl.nn.feature_amounts`` (numpy
only) does not import Keras.
"""

from tfbdl.lazy import lazy_exports

_LAZY = {
    "MODELS": "tfbdl.nn.registry",
    "SeedStream": "tfbdl.nn.initializers",
    "VGG16_STAGES": "tfbdl.nn.vgg",
    "VGG19_STAGES": "tfbdl.nn.vgg",
    "batch_norm_layers": "tfbdl.nn.utils",
    "build_model": "tfbdl.nn.registry",
    "count_params": "tfbdl.nn.utils",
    "fconv": "tfbdl.nn.fconv",
    "glorot_normal": "tfbdl.nn.initializers",
    "he_normal_fan_in": "tfbdl.nn.initializers",
    "he_normal_fan_out": "tfbdl.nn.initializers",
    "lenet5": "tfbdl.nn.lenet",
    "mlp": "tfbdl.nn.mlp",
    "ntk_lenet": "tfbdl.nn.ntk_lenet",
    "preresnet": "tfbdl.nn.preresnet",
    "preresnet20": "tfbdl.nn.preresnet",
    "resnet18": "tfbdl.nn.resnet18",
    "softmax_in_batches": "tfbdl.nn.utils",
    "torch_bias": "tfbdl.nn.initializers",
    "torch_linear_kernel": "tfbdl.nn.initializers",
    "vgg": "tfbdl.nn.vgg",
    "vgg16": "tfbdl.nn.vgg",
    "vgg16_bn": "tfbdl.nn.vgg",
    "vgg_layer_widths": "tfbdl.nn.vgg",
    "vgg_layerwise": "tfbdl.nn.vgg",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
