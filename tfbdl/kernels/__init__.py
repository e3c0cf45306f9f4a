"""Infinite-width CNN kernels (NNGP and NTK) as GPflow kernels, and block-wise kernel matrices.

An architecture is a composable description, ``Sequential(Conv2d(...), ReLU(), ..., Readout())``;
:class:`ConvNetKernel` turns it into a ``gpflow.kernels.Kernel`` over flattened images.
"""

from tfbdl.kernels.layers import (
    AvgPool2d,
    Conv2d,
    Erf,
    GlobalAvgPool,
    Identity,
    Readout,
    ReLU,
    ResidualBlock,
    Sequential,
    Sum,
)
from tfbdl.kernels.convnet_kernel import ConvNetKernel, ntk
from tfbdl.kernels.presets import PAPER_KERNELS, paper_kernel, paper_network

__all__ = ["AvgPool2d", "Conv2d", "GlobalAvgPool", "ConvNetKernel", "Erf", "Identity", "PAPER_KERNELS", "ReLU", "Readout",
           "ResidualBlock", "Sequential", "Sum", "ntk", "paper_kernel", "paper_network"]
