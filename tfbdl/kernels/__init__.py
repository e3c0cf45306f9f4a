"""Infinite-width CNN kernels (NNGP and NTK) as GPflow kernels, and block-wise kernel matrices.

An architecture is a composable description, ``Sequential(Conv2d(...), ReLU(), ..., Readout())``;
:class:`ConvNetKernel` turns it into a ``gpflow.kernels.Kernel`` over flattened images (its NNGP;
:func:`convnet_ntk` gives its neural tangent kernel). A new kind of layer subclasses the bases
exported here (:class:`Layer`, :class:`LinearLayer`, :class:`AffineLayer`, :class:`Nonlinearity`;
see :mod:`tfbdl.kernels.layers`).

The names below load on first use (:mod:`tfbdl.lazy`), so ``import tfbdl.kernels.blocks`` (numpy and
h5py only) does not import GPflow or TensorFlow.
"""

from tfbdl.lazy import lazy_exports

_LAYERS = ("AffineLayer", "AvgPool2d", "BranchSum", "Conv2d", "Erf", "GlobalAvgPool", "Identity", "Layer",
           "LinearLayer", "MapState", "Nonlinearity", "PairIndex", "ReLU", "Readout", "ResidualBlock", "Sequential",
           "is_full", "location_diagonal", "location_eye", "variance_parameter")

_LAZY = {
    **{name: "tfbdl.kernels.layers" for name in _LAYERS},
    **{name: "tfbdl.kernels.convnet_kernel" for name in ("ConvNetKernel", "KINDS", "convnet_ntk")},
    **{name: "tfbdl.kernels.finite" for name in ("RandomNetworks", "draw_keys", "finite_network", "limit_mismatch")},
    **{name: "tfbdl.kernels.presets" for name in ("PAPER_KERNELS", "convnet_gp", "paper_kernel", "paper_network",
                                                  "residual_cnn_gp", "resnet_gp")},
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
