"""Infinite-width CNN kernels (NNGP and NTK) as GPflow kernels, and block-wise kernel matrices.

An architecture is a composable description, ``Sequential(Conv2d(...), ReLU(), ..., Readout())``;
:class:`ConvNetKernel` turns it into a ``gpflow.kernels.Kernel`` over flattened images.

The names below load on first use (:mod:`tfbdl.lazy`), so ``import tfbdl.kernels.blocks`` (numpy and
h5py only) does not import GPflow or TensorFlow.
"""

from tfbdl.lazy import lazy_exports

_LAZY = {
    **{name: "tfbdl.kernels.layers" for name in ("AvgPool2d", "Conv2d", "Erf", "GlobalAvgPool", "Identity",
                                                  "Readout", "ReLU", "ResidualBlock", "Sequential", "Sum")},
    "ConvNetKernel": "tfbdl.kernels.convnet_kernel",
    "ntk": "tfbdl.kernels.convnet_kernel",
    **{name: "tfbdl.kernels.presets" for name in ("PAPER_KERNELS", "paper_kernel", "paper_network")},
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
