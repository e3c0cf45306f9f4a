"""CNN-GP kernels: a hand-computed case, closed forms, the presets against an independent numpy
recursion, and kernel invariants across architectures."""

import math

import numpy as np
import pytest

gpflow = pytest.importorskip("gpflow")

from tests.kernels import kernel_reference as ref  # noqa: E402
from tfbdl.errors import InvalidOptionError, ShapeError  # noqa: E402
from tfbdl.kernels import (  # noqa: E402
    BranchSum, Conv2d, ConvNetKernel, Erf, Readout, ReLU, ResidualBlock, Sequential, paper_kernel, paper_network,
)


def _images(n, shape, seed):
    return np.random.default_rng(seed).normal(size=(n, *shape))


def _flat(images):
    return images.reshape(len(images), -1)


def test_one_conv_relu_readout_by_hand():
    # Images 1x2 pixels, one channel: x = [1, 2], y = [3, -1]. A 1x1 conv with var_weight 2 and
    # var_bias 1 gives per pixel c = 2xy + 1, vx = 2x^2 + 1, vy = 2y^2 + 1:
    #   pixel 0: c = 7,  vx = 3, vy = 19;   pixel 1: c = -3, vx = 9, vy = 3.
    # ReLU: (sqrt(vx vy - c^2) + (pi - acos(c / sqrt(vx vy))) c) / (2 pi); readout: the mean.
    def relu(c, vx, vy):
        return (math.sqrt(vx * vy - c * c) + (math.pi - math.acos(c / math.sqrt(vx * vy))) * c) / (2 * math.pi)

    expected = (relu(7, 3, 19) + relu(-3, 9, 3)) / 2
    kernel = ConvNetKernel(Sequential(Conv2d(1, var_weight=2.0, var_bias=1.0), ReLU(), Readout()), (1, 2, 1),
                           normalise=False)
    x, y = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])
    assert kernel.K(x, y).numpy()[0, 0] == pytest.approx(expected, rel=1e-12)
    # Same-sample value: each pixel's variance halves: mean(3/2, 9/2) = 3.
    assert kernel.K_diag(x).numpy()[0] == pytest.approx(3.0, rel=1e-12)


def test_even_same_padding_covers_offsets_minus_one_to_two():
    conv = Conv2d(4)
    np.testing.assert_array_equal(conv.taps(), [-1, 0, 1, 2])
    np.testing.assert_array_equal(Conv2d(3).taps(), [-1, 0, 1])
    # Rows of the 5-wide box matrix for k=4: output 0 sums inputs 0..2, output 4 sums 3..4.
    box = Conv2d(4).box_matrix(5)
    np.testing.assert_array_equal(box[0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(box[4], [0, 0, 0, 1, 1])
    assert Conv2d(3, stride=2).box_matrix(28).shape == (14, 28)
    assert Conv2d(7, padding="valid").box_matrix(28).shape == (22, 28)


def _fc_relu_nngp(x, y, depth, vw, vb):
    """Fully connected ReLU NNGP (arc-cosine kernel of degree 1, Cho and Saul 2009)."""
    kxy, kxx, kyy = vw * x @ y / x.size + vb, vw * x @ x / x.size + vb, vw * y @ y / y.size + vb
    for _ in range(depth):
        theta = math.acos(max(-1.0, min(1.0, kxy / math.sqrt(kxx * kyy))))
        kxy = vw * math.sqrt(kxx * kyy) * (math.sin(theta) + (math.pi - theta) * math.cos(theta)) / (2 * math.pi) + vb
        kxx, kyy = vw * kxx / 2 + vb, vw * kyy / 2 + vb
    return kxy


def _fc_erf_nngp(x, y, depth, vw, vb):
    """Fully connected erf NNGP (arcsine kernel, Williams 1997)."""
    kxy, kxx, kyy = vw * x @ y / x.size + vb, vw * x @ x / x.size + vb, vw * y @ y / y.size + vb
    for _ in range(depth):
        new_xy = 2 / math.pi * math.asin(2 * kxy / math.sqrt((1 + 2 * kxx) * (1 + 2 * kyy)))
        new_xx = 2 / math.pi * math.asin(2 * kxx / (1 + 2 * kxx))
        new_yy = 2 / math.pi * math.asin(2 * kyy / (1 + 2 * kyy))
        kxy, kxx, kyy = vw * new_xy + vb, vw * new_xx + vb, vw * new_yy + vb
    return kxy


@pytest.mark.parametrize("nonlinearity, closed_form", [(ReLU, _fc_relu_nngp), (Erf, _fc_erf_nngp)])
def test_one_pixel_images_give_the_fully_connected_nngp(nonlinearity, closed_form):
    vw, vb, depth, channels = 1.7, 0.3, 3, 5
    layers = [Conv2d(1, var_weight=vw, var_bias=vb)]
    for _ in range(depth):
        layers += [nonlinearity(), Conv2d(1, var_weight=vw, var_bias=vb)]
    kernel = ConvNetKernel(Sequential(*layers, Readout()), (1, 1, channels), normalise=False)
    x, y = np.random.default_rng(3).normal(size=(2, channels))
    assert kernel.K(x[None], y[None]).numpy()[0, 0] == pytest.approx(closed_form(x, y, depth, vw, vb), rel=1e-10)


def test_one_pixel_relu_ntk_matches_the_fully_connected_ntk():
    """Jacot et al.: Theta' = K' + vw * Theta * Kdot for a dense ReLU network."""
    vw, vb, depth, channels = 1.3, 0.2, 2, 4
    x, y = np.random.default_rng(5).normal(size=(2, channels))
    kxy, kxx, kyy = vw * x @ y / channels + vb, vw * x @ x / channels + vb, vw * y @ y / channels + vb
    theta_ntk = kxy
    for _ in range(depth):
        angle = math.acos(kxy / math.sqrt(kxx * kyy))
        derivative = (math.pi - angle) / (2 * math.pi)
        kxy = vw * math.sqrt(kxx * kyy) * (math.sin(angle) + (math.pi - angle) * math.cos(angle)) / (2 * math.pi) + vb
        kxx, kyy = vw * kxx / 2 + vb, vw * kyy / 2 + vb
        theta_ntk = kxy + vw * theta_ntk * derivative
    layers = [Conv2d(1, var_weight=vw, var_bias=vb)]
    for _ in range(depth):
        layers += [ReLU(), Conv2d(1, var_weight=vw, var_bias=vb)]
    # The unit readout is one more dense layer: Theta <- K + 1 * Theta.
    theta_ntk = kxy + theta_ntk
    kernel = ConvNetKernel(Sequential(*layers, Readout()), (1, 1, channels), kind="ntk", normalise=False)
    assert kernel.K(x[None], y[None]).numpy()[0, 0] == pytest.approx(theta_ntk, rel=1e-10)


@pytest.mark.parametrize("name", ["convnet_gp", "residual_cnn_gp", "resnet_gp"])
def test_presets_match_the_independent_numpy_recursion(name):
    images = np.random.default_rng(11).random((3, 28, 28, 1))
    expected = ref.kernel_matrix(getattr(ref, name)(), images)
    kernel = paper_kernel(name, normalise=False)
    got = kernel.K(_flat(images)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(kernel.K_diag(_flat(images)).numpy(), np.diag(expected), rtol=1e-10)
    got32 = kernel.K(_flat(images).astype(np.float32)).numpy()
    np.testing.assert_allclose(got32, expected, rtol=1e-5)


def test_convnet_gp_values_are_in_the_papers_range():
    # The paper's parametrisation gives values around 4e12 on MNIST-like images in [0, 1].
    images = np.random.default_rng(0).random((2, 784))
    diag = paper_kernel("convnet_gp", normalise=False).K_diag(images).numpy()
    assert np.all((diag > 1e12) & (diag < 1e13))


ARCHITECTURES = {
    "conv-relu": lambda: Sequential(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(), Conv2d(3, var_weight=2.0),
                                    ReLU(), Readout(var_weight=1.5, var_bias=0.2)),
    "valid-stride-erf": lambda: Sequential(Conv2d(3, padding="valid", var_weight=1.5), Erf(),
                                           Conv2d(2, stride=2, padding="same", var_weight=1.2, var_bias=0.3), Erf(),
                                           Readout()),
    "residual-even": lambda: Sequential(Conv2d(2, var_weight=2.0, var_bias=0.5),
                                        ResidualBlock(ReLU(), Conv2d(4, var_weight=2.0)), ReLU(), Readout()),
    "branches": lambda: Sequential(Conv2d(3), BranchSum(Conv2d(1, stride=2), Sequential(Conv2d(3, stride=2), ReLU(),
                                                                                        Conv2d(3))), ReLU(), Readout()),
}


@pytest.fixture(params=sorted(ARCHITECTURES))
def architecture(request):
    return request.param


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_kernel_invariants(architecture, kind):
    shape = (8, 8, 2)
    x, x2 = _flat(_images(6, shape, 1)), _flat(_images(4, shape, 2))
    kernel = ConvNetKernel(ARCHITECTURES[architecture](), shape, kind=kind, pair_batch=5)
    K = kernel.K(x).numpy()
    scale = np.abs(K).max()
    np.testing.assert_array_equal(K, K.T)
    eigenvalues = np.linalg.eigvalsh(K)
    assert eigenvalues.min() >= -1e-8 * eigenvalues.max()
    np.testing.assert_allclose(kernel.K_diag(x).numpy(), np.diag(K), rtol=1e-12)
    union = kernel.K(np.concatenate([x, x2])).numpy()
    np.testing.assert_allclose(kernel.K(x, x2).numpy(), union[:6, 6:], rtol=1e-9, atol=1e-12 * scale)
    one_shot = ConvNetKernel(ARCHITECTURES[architecture](), shape, kind=kind, pair_batch=10_000).K(x).numpy()
    np.testing.assert_allclose(K, one_shot, rtol=1e-12)
    K32 = kernel.K(x.astype(np.float32)).numpy()
    np.testing.assert_allclose(K32, K, rtol=2e-5, atol=2e-6 * scale)


def test_the_nngp_matches_the_reference_on_small_architectures():
    shape = (6, 6, 2)
    x = _images(3, shape, 4)
    arch = ref_arch = ("seq", [("conv", 3, 1, "same", 2.0, 0.1), ("relu",), ("conv", 2, 1, "same", 1.5, 0.0),
                               ("erf",), ("conv", 3, 2, "same", 1.0, 0.2), ("relu",), ("readout", 1.5, 0.2)])
    kernel = ConvNetKernel(Sequential(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(), Conv2d(2, var_weight=1.5),
                                      Erf(), Conv2d(3, stride=2, var_weight=1.0, var_bias=0.2), ReLU(),
                                      Readout(var_weight=1.5, var_bias=0.2)), shape, normalise=False)
    np.testing.assert_allclose(kernel.K(_flat(x)).numpy(), ref.kernel_matrix(arch, x), rtol=1e-10)
    assert ref_arch is arch


def test_hyperparameters_are_positive_gpflow_parameters_with_gradients():
    import tensorflow as tf

    network = paper_network("convnet_gp")
    kernel = ConvNetKernel(network, (28, 28, 1), normalise=False)
    parameters = kernel.trainable_parameters
    assert len(parameters) == 16  # 7 hidden convs + readout, weight and bias each
    assert all(isinstance(p.transform, type(gpflow.utilities.positive())) for p in parameters)
    x = np.random.default_rng(0).random((3, 784))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(kernel.K(x))
    gradients = tape.gradient(total, kernel.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)


def test_usable_in_gpflow_gpr():
    x = np.random.default_rng(1).random((5, 16))
    y = np.random.default_rng(2).normal(size=(5, 1))
    kernel = ConvNetKernel(Sequential(Conv2d(3, var_weight=2.0, var_bias=0.5), ReLU(), Readout()), (4, 4, 1))
    model = gpflow.models.GPR((x, y), kernel=kernel, noise_variance=0.1)
    mean, var = model.predict_f(x[:2])
    assert mean.shape == (2, 1) and np.all(var.numpy() > 0)
    assert np.isfinite(model.log_marginal_likelihood().numpy())


def test_bad_inputs_are_named_errors():
    kernel = paper_kernel("convnet_gp")
    with pytest.raises(ShapeError, match=r"flattened to \[N, 784\]"):
        kernel.K(np.zeros((2, 100)))
    with pytest.raises(InvalidOptionError, match="unknown kernel"):
        paper_kernel("alexnet_gp")
    with pytest.raises(ShapeError, match="end it with"):
        ConvNetKernel(Sequential(Conv2d(3), ReLU()), (4, 4, 1)).K_diag(np.zeros((1, 16)))
    with pytest.raises(InvalidOptionError, match="var_weight must be >= 0"):
        Conv2d(3, var_weight=-1.0)


def test_fast_arccos_matches_numpy_to_rounding():
    from tfbdl.kernels.fastmath import acos

    x = np.concatenate([np.linspace(-1, 1, 200_001), [-1.0, -0.5, 0.0, 0.5, 1.0, 1 - 1e-12, -1 + 1e-12]])
    np.testing.assert_allclose(acos(x).numpy(), np.arccos(x), rtol=0, atol=1e-15)  # 2 ulp of pi
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(acos(x32).numpy(), np.arccos(x32.astype(np.float64)), rtol=0, atol=4e-7)


def test_gradients_are_finite_where_images_share_blank_patches():
    """Black background makes both images identical over whole patches (correlation exactly 1),
    where arccos and sqrt(1 - rho^2) have infinite derivatives that cancel in the ReLU kernel."""
    import tensorflow as tf

    images = np.zeros((4, 8, 8, 1))
    images[:, 2:5, 2:5, 0] = np.random.default_rng(0).random((4, 3, 3))  # digits on black
    x = _flat(images)
    for kind in ("nngp", "ntk"):
        kernel = ConvNetKernel(Sequential(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(),
                                          Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(), Readout()), (8, 8, 1),
                               kind=kind)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(kernel.K(x)) + tf.reduce_sum(kernel.K(x[:2], x[2:]))
        gradients = tape.gradient(total, kernel.trainable_variables)
        assert all(np.all(np.isfinite(g.numpy())) for g in gradients), kind


def test_relu_kernel_gradient_matches_finite_differences():
    import tensorflow as tf

    from tfbdl.kernels.layers import _arccos_j1

    rho = tf.constant([-0.9, -0.2, 0.3, 0.8, 1.0], dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(rho)
        value = _arccos_j1(rho)
    analytic = tape.gradient(value, rho).numpy()
    r = rho.numpy()[:4]
    h = 1e-6
    j1 = lambda t: np.sqrt(1 - t**2) + (np.pi - np.arccos(t)) * t  # noqa: E731
    np.testing.assert_allclose(analytic[:4], (j1(r + h) - j1(r - h)) / (2 * h), rtol=1e-6)
    assert analytic[4] == pytest.approx(np.pi)  # the finite limit at rho = 1


POOLED = ("seq", [("conv", 3, 1, "same", 2.0, 0.1), ("relu",), ("avgpool", 2, 2), ("conv", 2, 1, "same", 1.5, 0.0),
                  ("erf",), ("gap",), ("readout", 1.3, 0.2)])


def _pooled_network():
    from tfbdl.kernels import AvgPool2d, GlobalAvgPool

    return Sequential(Conv2d(3, var_weight=2.0, var_bias=0.1), ReLU(), AvgPool2d(2), Conv2d(2, var_weight=1.5), Erf(),
                      GlobalAvgPool(), Readout(var_weight=1.3, var_bias=0.2))


def test_average_pooling_matches_the_independent_full_covariance_recursion():
    shape = (4, 4, 2)
    x, x2 = _images(3, shape, 6), _images(2, shape, 7)
    kernel = ConvNetKernel(_pooled_network(), shape, pair_batch=40, normalise=False)
    assert kernel.full_covariance
    np.testing.assert_allclose(kernel.K(_flat(x)).numpy(), ref.kernel_matrix_full(POOLED, x), rtol=1e-10)
    np.testing.assert_allclose(kernel.K(_flat(x), _flat(x2)).numpy(), ref.kernel_matrix_full(POOLED, x, x2), rtol=1e-10)
    np.testing.assert_allclose(kernel.K_diag(_flat(x)).numpy(), np.diag(ref.kernel_matrix_full(POOLED, x)), rtol=1e-10)


def test_the_full_path_equals_the_per_location_path_without_pooling():
    """Without pooling the readout only sees same-location covariances: both paths agree."""
    shape = (5, 5, 2)
    x = _images(3, shape, 8)
    arch = ("seq", [("conv", 3, 1, "same", 2.0, 0.1), ("relu",), ("conv", 2, 1, "same", 1.5, 0.3), ("relu",),
                    ("readout", 1.5, 0.2)])
    np.testing.assert_allclose(ref.kernel_matrix_full(arch, x), ref.kernel_matrix(arch, x), rtol=1e-12)


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_pooled_kernel_invariants(kind):
    shape = (6, 6, 1)
    x, x2 = _flat(_images(5, shape, 9)), _flat(_images(3, shape, 10))
    kernel = ConvNetKernel(_pooled_network(), shape, kind=kind, pair_batch=200)
    K = kernel.K(x).numpy()
    np.testing.assert_array_equal(K, K.T)
    eigenvalues = np.linalg.eigvalsh(K)
    assert eigenvalues.min() >= -1e-8 * eigenvalues.max()
    np.testing.assert_allclose(kernel.K_diag(x).numpy(), np.diag(K), rtol=1e-12)
    union = kernel.K(np.concatenate([x, x2])).numpy()
    np.testing.assert_allclose(kernel.K(x, x2).numpy(), union[:5, 5:], rtol=1e-9)
    np.testing.assert_allclose(kernel.K(x.astype(np.float32)).numpy(), K, rtol=2e-5)


def test_pooling_outside_the_full_path_is_a_clear_error():
    import tensorflow as tf

    from tfbdl.kernels import AvgPool2d
    from tfbdl.kernels.layers import MapState

    with pytest.raises(ShapeError, match="full-covariance path"):
        AvgPool2d(2).variance(MapState(tf.zeros((1, 4, 4))), [])


def test_inputs_of_unknown_size_inside_a_tf_function():
    import tensorflow as tf

    shape = (5, 5, 1)
    x, x2 = _flat(_images(4, shape, 12)), _flat(_images(3, shape, 13))
    kernel = ConvNetKernel(ARCHITECTURES["conv-relu"](), (5, 5, 1))
    spec = tf.TensorSpec((None, 25), tf.float64)

    @tf.function(input_signature=[spec, spec])
    def both(a, b):
        return kernel.K(a), kernel.K(a, b)

    K, K2 = (t.numpy() for t in both(x, x2))
    np.testing.assert_allclose(K, kernel.K(x).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(K2, kernel.K(x, x2).numpy(), rtol=1e-12)
