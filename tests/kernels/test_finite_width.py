"""Random finite networks against the analytic kernels of :mod:`tfbdl.kernels` (as neural-tangents
tests its kernels against Monte Carlo): the output covariance of many random networks equals the
NNGP within a few of its standard errors, a network's kernel approaches it as the width grows, and
the empirical NTK of NTK-parameterised networks approaches the analytic NTK."""

import numpy as np
import pytest
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.kernels import BranchSum, Conv2d, ConvNetKernel, ReLU, Readout, ResidualBlock, Sequential, paper_network
from tfbdl.kernels.finite import RandomNetworks, draw_keys, finite_network, limit_mismatch, plan_network

SHAPE = (8, 8, 1)


def small_network() -> Sequential:
    """The paths of the paper's networks on 8x8 images: a residual block on the 1-channel input
    (broadcast), an even strided "same" conv, a strided projection block, biases, a readout."""
    return Sequential(
        ResidualBlock(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(), Conv2d(3, var_weight=2.0)),
        Conv2d(4, stride=2, var_weight=2.0, var_bias=0.1), ReLU(),
        BranchSum(Conv2d(1, stride=2), Sequential(Conv2d(3, stride=2, var_weight=2.0), ReLU(), Conv2d(3))), ReLU(),
        Readout(var_weight=1.5, var_bias=0.2))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(size=(3, *SHAPE))


def analytic(network, images, kind="nngp"):
    """The raw kernel matrix [N, N] of ``network`` (run eagerly: no compilation for three images)."""
    tf.config.run_functions_eagerly(True)
    try:
        return ConvNetKernel(network, SHAPE, kind=kind, normalise=False).K(images.reshape(len(images), -1)).numpy()
    finally:
        tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def nngp(images):
    return analytic(small_network(), images)


def draw(images, width, count, batch=200, seed=0):
    """Outputs [count, N] and readout-averaged kernels [count, N, N] of ``count`` networks."""
    networks = RandomNetworks(small_network(), SHAPE, width)
    outputs, kernels = [], []
    for start in range(0, count, batch):
        f, k = networks(images, draw_keys(seed, min(batch, count - start), start=start))
        outputs.append(f.numpy()[:, :, 0])
        kernels.append(k.numpy())
    return np.concatenate(outputs).astype(np.float64), np.concatenate(kernels).astype(np.float64)


@pytest.fixture(scope="module")
def wide(images):
    """600 networks 48 channels wide."""
    return draw(images, width=48, count=600)


def test_output_covariance_equals_the_nngp_within_its_standard_errors(wide, nngp):
    outputs, kernels = wide
    products = outputs[:, :, None] * outputs[:, None, :]  # [S, N, N]: each network's f(x) f(x')
    for samples in (products, kernels):  # the plain estimate and the readout-averaged one
        mean, error = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples))
        assert np.all(np.abs(mean - nngp) < 4 * error), (mean, nngp, error)
    # the readout-averaged estimate is precise enough to pin the kernel to a few percent
    assert np.linalg.norm(kernels.mean(0) - nngp) < 0.03 * np.linalg.norm(nngp)


def test_a_networks_kernel_approaches_the_nngp_as_the_width_grows(images, wide, nngp):
    def distance(kernels):  # the mean over networks of ||K_network - K|| / ||K||
        return np.mean(np.linalg.norm(kernels - nngp, axis=(1, 2))) / np.linalg.norm(nngp)

    narrow = distance(draw(images, width=4, count=200)[1])
    assert distance(wide[1]) < 0.5 * narrow  # ~ 1 / sqrt(width): sqrt(4 / 48) = 0.29


def test_the_keras_network_is_the_same_draw(images):
    networks = RandomNetworks(small_network(), SHAPE, 16)
    keys = draw_keys(3, 4, start=10)
    outputs = networks(images, keys)[0].numpy()
    for parameterisation in ("standard", "ntk"):
        model = finite_network(small_network(), SHAPE, 16, keys[3], parameterisation=parameterisation)
        np.testing.assert_allclose(model(images).numpy()[:, 0], outputs[3, :, 0], rtol=1e-5, atol=1e-6)
    # a network does not depend on the batch it is drawn in, nor on its place there
    order = [2, 0, 3, 1]
    np.testing.assert_allclose(networks(images, keys[order])[0].numpy(), outputs[order], rtol=1e-5, atol=1e-6)


def test_narrow_networks_take_the_depthwise_path_to_the_same_outputs(images, monkeypatch):
    import tfbdl.kernels.finite as finite

    keys = draw_keys(1, 8)
    depthwise = RandomNetworks(small_network(), SHAPE, 3)(images, keys)
    monkeypatch.setattr(finite, "DEPTHWISE_CHANNELS", 0)
    grouped = RandomNetworks(small_network(), SHAPE, 3)(images, keys)
    for a, b in zip(depthwise, grouped):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_empirical_ntk_approaches_the_analytic_ntk(images):
    from tfbdl.ntk import compute_ntk

    limit = analytic(small_network(), images, kind="ntk")
    keys = draw_keys(0, 3)
    model = finite_network(small_network(), SHAPE, 128, keys[0], parameterisation="ntk")
    empirical = []
    for key in keys:  # the same model with each network's parameters: compute_ntk traces it once
        model.set_weights(finite_network(small_network(), SHAPE, 128, key, parameterisation="ntk").get_weights())
        empirical.append(compute_ntk(model, images, block_size=3, strategy="jacobian", progress=False))
    empirical = np.array(empirical, dtype=np.float64)
    distances = np.linalg.norm(empirical - limit, axis=(1, 2)) / np.linalg.norm(limit)
    assert np.all(distances < 0.3), distances  # one network: fluctuations ~ 1 / sqrt(width)
    assert np.linalg.norm(empirical.mean(0) - limit) < 0.1 * np.linalg.norm(limit), (empirical.mean(0), limit)


def test_the_paper_networks_have_finite_versions():
    readouts = {name: plan_network(paper_network(name), (28, 28, 1), 3)[1] for name in
                ("convnet_gp", "residual_cnn_gp", "resnet_gp")}
    assert readouts["convnet_gp"].kernel_shape == (28, 28, 3, 1)
    assert readouts["residual_cnn_gp"].kernel_shape == (28, 28, 3, 1)
    assert readouts["resnet_gp"].kernel_shape == (1, 1, 3, 1)  # after the mean over the 7x7 map and its ReLU
    assert readouts["convnet_gp"].weight_std == pytest.approx(np.sqrt(2.79 / (28 * 28 * 3)))
    assert readouts["convnet_gp"].bias_std == pytest.approx(np.sqrt(7.86))


def test_a_sum_after_the_relu_is_not_the_networks_limit(images):
    # The residual CNN GP's K + ReLU(Conv(K)): the kernel leaves out the cross-covariance of the
    # input and the ReLU output, which random networks have at any width.
    assert limit_mismatch(paper_network("residual_cnn_gp")) is not None
    assert limit_mismatch(paper_network("convnet_gp")) is None and limit_mismatch(paper_network("resnet_gp")) is None
    assert limit_mismatch(small_network()) is None
    network = Sequential(ResidualBlock(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU()), Readout())
    kernel = analytic(network, images)
    _, kernels = RandomNetworks(network, SHAPE, 16)(images, draw_keys(0, 100))
    kernels = kernels.numpy().astype(np.float64)
    error = kernels.std(0, ddof=1) / np.sqrt(len(kernels))
    assert np.all(kernels.mean(0) - kernel > 10 * error)  # the cross terms are positive


def test_bad_inputs_are_clear_errors(images):
    with pytest.raises(InvalidOptionError, match="ends in Readout"):
        RandomNetworks(Sequential(Conv2d(3), ReLU()), SHAPE, 4)
    networks = RandomNetworks(small_network(), SHAPE, 4)
    with pytest.raises(ShapeError, match="keys"):
        networks(images, np.zeros((3,), np.int64))
    with pytest.raises(ShapeError, match="images"):
        networks(images[:, :4], draw_keys(0, 2))
    with pytest.raises(InvalidOptionError, match="parameterisation"):
        finite_network(small_network(), SHAPE, 4, draw_keys(0, 1)[0], parameterisation="mean-field")
