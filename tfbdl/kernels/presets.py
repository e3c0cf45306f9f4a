"""The paper's three MNIST architectures (Garriga-Alonso et al. 2019, the authors' configs).

Weight variances follow the per-fan-in convention of :mod:`tfbdl.kernels.layers`: the paper's
"sigma_w^2 per patch element" times the patch area. :func:`paper_kernel` normalises the kernel by
its value on the all-ones image unless asked for the raw one (``normalise=False``).
"""

from __future__ import annotations

from tfbdl.errors import InvalidOptionError
from tfbdl.kernels.convnet_kernel import ConvNetKernel
from tfbdl.kernels.layers import BranchSum, Conv2d, Readout, ReLU, ResidualBlock, Sequential

__all__ = ["PAPER_KERNELS", "convnet_gp", "paper_kernel", "paper_network", "residual_cnn_gp", "resnet_gp"]


def convnet_gp(depth: int = 7, kernel_size: int = 7, var_weight: float = 2.79, var_bias: float = 7.86) -> Sequential:
    """ConvNet GP: ``depth`` x (conv k "same" + ReLU), then readout ``var_bias + var_weight * mean``."""
    hidden = []
    for _ in range(depth):
        hidden += [Conv2d(kernel_size, var_weight=var_weight * kernel_size**2, var_bias=var_bias), ReLU()]
    return Sequential(*hidden, Readout(var_weight=var_weight, var_bias=var_bias))


def residual_cnn_gp(blocks: int = 8, kernel_size: int = 4, var_weight: float = 7.27, var_bias: float = 4.69) -> Sequential:
    """Residual CNN GP: ``blocks`` x ``K <- K + ReLU(Conv(K))`` (the sum after the ReLU, unscaled,
    as in the paper), one more Conv + ReLU, readout."""
    conv_variance = var_weight * kernel_size**2

    def conv():
        return Conv2d(kernel_size, var_weight=conv_variance, var_bias=var_bias)

    residual = [ResidualBlock(conv(), ReLU()) for _ in range(blocks)]
    return Sequential(*residual, conv(), ReLU(), Readout(var_weight=var_weight, var_bias=var_bias))


def _identity_block() -> BranchSum:
    """``K + C3(R(C3(R(K))))``."""
    return ResidualBlock(ReLU(), Conv2d(3), ReLU(), Conv2d(3))


def _projection_block(stride: int) -> Sequential:
    """``V = R(K)``, then ``C1_s(V) + C3(R(C3_s(V)))``."""
    return Sequential(ReLU(), BranchSum(Conv2d(1, stride=stride),
                                        Sequential(Conv2d(3, stride=stride), ReLU(), Conv2d(3))))


def resnet_gp(blocks_per_stage: int = 4) -> Sequential:
    """ResNet GP (32 layers): weight variance 1 and no bias everywhere; a 3x3 conv, three stages
    (28 -> 14 -> 7) of a projection block and ``blocks_per_stage`` identity blocks; then the mean
    over the last feature map, its ReLU expectation, and a unit readout."""
    layers = [Conv2d(3)]
    for stride in (1, 2, 2):
        layers.append(_projection_block(stride))
        layers += [_identity_block() for _ in range(blocks_per_stage)]
    return Sequential(*layers, Readout(), ReLU(), Readout())


PAPER_KERNELS = {
    "convnet_gp": convnet_gp,
    "residual_cnn_gp": residual_cnn_gp,
    "resnet_gp": resnet_gp,
}


def paper_network(name: str) -> Sequential:
    """The layer description of one of the paper's architectures."""
    try:
        return PAPER_KERNELS[name]()
    except KeyError:
        raise InvalidOptionError(f"unknown kernel {name!r}; choose one of: {', '.join(PAPER_KERNELS)}") from None


def paper_kernel(name: str, image_shape=(28, 28, 1), *, kind: str = "nngp", normalise: bool = True,
                 variance: float = 1.0, **options) -> ConvNetKernel:
    """A ``gpflow`` kernel of one of the paper's architectures: convnet_gp, residual_cnn_gp, resnet_gp.

    By default the kernel is normalised, ``variance * K_raw(x, y) / K_raw(1, 1)`` with ``1`` the
    all-ones image (see :class:`ConvNetKernel`): O(1) values (at most ``variance`` for images in
    ``[0, 1]``; 0.04 to 0.44, median about 0.2, on MNIST digits) and a trainable ``variance``, so
    it trains from the first step in ``GPR``, ``VGP`` and ``SVGP`` (Gaussian, Bernoulli, ``MultiClass``
    and ``Softmax`` likelihoods are tested). The paper's parametrisation
    gives raw values around 3e12 on MNIST, which saturate a Bernoulli or softmax likelihood
    (gradients exactly 0). ``normalise=False`` gives the paper's raw kernel exactly (``variance``
    fixed at 1): the scale that the ConvNet GP experiments' stored kernel matrices use.
    Other ``options`` (``pair_batch``, ``name``) go to :class:`ConvNetKernel`.
    """
    return ConvNetKernel(paper_network(name), image_shape, kind=kind, normalise=normalise, variance=variance,
                         **options)
