"""Tests of tfbdl.ntk.kernel.EmpiricalNTKKernel: the empirical NTK of a Keras model as a GPflow
kernel. It must equal compute_ntk, be a valid covariance, work in GPR and SVGP (compiled by
GPflow), and follow the model's weights after training."""

import gpflow
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn import lenet5, mlp
from tfbdl.ntk import EmpiricalNTKKernel
from tfbdl.ntk.empirical import compute_ntk

MLP_SHAPE, CNN_SHAPE = (3,), (16, 16, 1)
N, N2 = 8, 5
RTOL = 1e-10  # float64 kernel against float64 compute_ntk


@pytest.fixture(scope="module")
def models():
    """A tiny tanh MLP and a tiny LeNet5 (2 and 3 channels, 4 hidden units), both with 2 outputs."""
    return {
        "mlp": mlp((8, 8), 2, MLP_SHAPE, activation="tanh", seed=0),
        "cnn": lenet5(2, CNN_SHAPE, conv_widths=(2, 3), dense_widths=(4,), seed=1),
    }


def _inputs(name, n, seed):
    shape = MLP_SHAPE if name == "mlp" else CNN_SHAPE
    return np.random.default_rng(seed).standard_normal((n, *shape))


def _flat(x):
    return x.reshape(len(x), -1)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _ntk(model, x, x2=None, output="trace"):
    return compute_ntk(model, x, x2, block_size=4, strategy="jacobian", dtype="float64", output=output,
                       progress=False)


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("name, output, strategy", [
    ("mlp", "trace", "vmap_jacobian"),
    ("mlp", 1, "jacobian"),
    ("cnn", "trace", "vmap_jacobian"),
])
def test_kernel_equals_compute_ntk_and_is_a_covariance(models, name, output, strategy):
    model = models[name]
    x, x2 = _inputs(name, N, 0), _inputs(name, N2, 1)
    kernel = EmpiricalNTKKernel(model, output=output, strategy=strategy, variance=2.5)
    assert kernel.input_shape == tuple(x.shape[1:]) and kernel.input_dim == _flat(x).shape[1]
    kxx = kernel(_flat(x)).numpy()
    kxy = kernel(_flat(x), _flat(x2)).numpy()
    kdiag = kernel(_flat(x), full_cov=False).numpy()
    assert kxx.dtype == np.float64 and kxx.shape == (N, N) and kxy.shape == (N, N2) and kdiag.shape == (N,)
    assert _rel(kxx, 2.5 * _ntk(model, x, output=output)) < RTOL
    assert _rel(kxy, 2.5 * _ntk(model, x, x2, output=output)) < RTOL
    np.testing.assert_array_equal(kxx, kxx.T)
    eig = np.linalg.eigvalsh(kxx)
    assert eig.min() >= -1e-8 * eig.max()
    assert _rel(kdiag, np.diag(kxx)) < 1e-12
    # The same values inside a tf.function (how GPflow's compiled losses call it).
    compiled = tf.function(lambda a, b: (kernel(a), kernel(a, b), kernel(a, full_cov=False)))
    for got, want in zip(compiled(tf.constant(_flat(x)), tf.constant(_flat(x2))), (kxx, kxy, kdiag)):
        assert _rel(got.numpy(), want) < 1e-12


def test_float32_kernel_returns_the_inputs_dtype(models):
    x = _inputs("mlp", N, 0)
    k32 = EmpiricalNTKKernel(models["mlp"], dtype="float32")
    values = k32(_flat(x)).numpy()
    assert values.dtype == np.float64
    assert _rel(values, _ntk(models["mlp"], x)) < 1e-5


def test_network_weights_are_not_gpflow_parameters(models):
    kernel = EmpiricalNTKKernel(models["mlp"])
    assert [v.name for v in kernel.trainable_variables] == ["variance:0"]
    assert len(kernel.variables) == 1
    assert not any(isinstance(m, keras.Layer) for m in kernel.submodules)
    assert isinstance(kernel.variance, gpflow.Parameter) and kernel.variance.trainable


def test_gradient_with_respect_to_inputs_matches_finite_differences(models):
    """SVGP trains its inducing points through K(Z, Z) and K(Z, X): a second derivative of the net."""
    kernel = EmpiricalNTKKernel(models["mlp"])
    x, z0 = _flat(_inputs("mlp", N, 0)), _flat(_inputs("mlp", 3, 1))

    def loss(z):
        return tf.reduce_sum(kernel(z, x) ** 2) + tf.reduce_sum(kernel(z)) + tf.reduce_sum(kernel(z, full_cov=False))

    @tf.function
    def grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(z)
        return tape.gradient(value, z)

    g = grad(tf.constant(z0)).numpy()
    eps = 1e-6
    for i, j in [(0, 0), (2, 1)]:
        up, down = z0.copy(), z0.copy()
        up[i, j] += eps
        down[i, j] -= eps
        fd = (float(loss(tf.constant(up))) - float(loss(tf.constant(down)))) / (2 * eps)
        assert abs(fd - g[i, j]) <= 1e-6 * max(1.0, abs(fd))


def test_bad_options_and_shapes(models):
    with pytest.raises(InvalidOptionError, match="full"):
        EmpiricalNTKKernel(models["mlp"], output="full")
    with pytest.raises(InvalidOptionError, match="strategy"):
        EmpiricalNTKKernel(models["mlp"], strategy="ntk_vector")
    with pytest.raises(InvalidOptionError, match="variance"):
        EmpiricalNTKKernel(models["mlp"], variance=0.0)
    with pytest.raises(InvalidOptionError, match="out of range"):
        EmpiricalNTKKernel(models["mlp"], output=5)
    with pytest.raises(ShapeError, match="differs"):
        EmpiricalNTKKernel(models["mlp"], input_shape=(4,))
    with pytest.raises(ShapeError, match=r"\[N, 256\]"):
        EmpiricalNTKKernel(models["cnn"]).K(np.zeros((2, 255)))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(6, activation="tanh")
        self.out = keras.layers.Dense(1)

    def call(self, x):
        return self.out(self.hidden(keras.ops.reshape(x, (-1, 6))))


def test_model_without_declared_input_needs_input_shape():
    model = _Subclassed()
    model(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(InvalidOptionError, match="input_shape"):
        EmpiricalNTKKernel(model, dtype="float32")
    kernel = EmpiricalNTKKernel(model, dtype="float32", input_shape=(2, 3))
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    want = compute_ntk(model, x, block_size=4, dtype="float32", progress=False)
    assert _rel(kernel(_flat(x).astype(np.float64)).numpy(), want) < 1e-6


# --------------------------------------------------------------------------- in GPflow models


def _regression(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-2, 2, (n, 1)), axis=0)
    y = np.sin(2 * x) + 0.05 * rng.standard_normal((n, 1))
    return x, y


def test_gpr_fits_scale_and_noise_by_marginal_likelihood():
    x, y = _regression()
    net = mlp((16, 16), 1, (1,), activation="tanh", seed=3)
    gp = gpflow.models.GPR((x, y), kernel=EmpiricalNTKKernel(net), noise_variance=1.0)
    assert len(gp.trainable_variables) == 2  # the kernel's variance and the noise variance, no weights
    lml0 = float(gp.log_marginal_likelihood())
    rmse0 = float(np.sqrt(np.mean((gp.predict_f(x)[0].numpy() - y) ** 2)))
    result = gpflow.optimizers.Scipy().minimize(gp.training_loss, gp.trainable_variables, options={"maxiter": 30})
    lml1 = float(gp.log_marginal_likelihood())
    mean, var = gp.predict_f(x)
    rmse1 = float(np.sqrt(np.mean((mean.numpy() - y) ** 2)))
    assert np.isfinite(result.fun) and lml1 > lml0 + 10
    assert gp.likelihood.variance.numpy() < 0.1
    assert rmse1 < 0.5 * rmse0 and rmse1 < 0.2 * np.std(y)
    assert np.all(var.numpy() > 0)


def test_svgp_with_inducing_points_in_input_space_trains():
    x, y = _regression(40, seed=1)
    net = mlp((16, 16), 1, (1,), activation="tanh", seed=4)
    z = np.linspace(-1.8, 1.8, 5)[:, None]
    gp = gpflow.models.SVGP(EmpiricalNTKKernel(net), gpflow.likelihoods.Gaussian(variance=0.5), z,
                            num_data=len(x))
    assert gp.inducing_variable.Z.trainable
    data = (x, y)
    elbo0 = float(gp.elbo(data))
    z_before = gp.inducing_variable.Z.numpy().copy()
    optimizer = keras.optimizers.Adam(learning_rate=0.05)
    loss = gp.training_loss_closure(data, compile=True)
    variables = gp.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss()
        grads = tape.gradient(value, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return value

    for _ in range(20):
        step()
    elbo1 = float(gp.elbo(data))
    assert np.isfinite(elbo1) and elbo1 > elbo0 + 10
    assert not np.allclose(gp.inducing_variable.Z.numpy(), z_before)  # Z got gradients through the NTK


# --------------------------------------------------------------------------- following the weights


def test_kernel_follows_the_model_after_fit():
    x, y = _regression(20, seed=2)
    net = mlp((8, 8), 1, (1,), activation="tanh", seed=5)
    kernel = EmpiricalNTKKernel(net)
    compiled = tf.function(lambda a: kernel(a))
    before = compiled(tf.constant(x)).numpy()  # traced at the initial weights
    assert _rel(before, _ntk(net, x)) < RTOL
    net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    net.fit(x.astype(np.float32), y.astype(np.float32), epochs=3, batch_size=10, verbose=0)
    after_eager = kernel(x).numpy()
    after_compiled = compiled(tf.constant(x)).numpy()  # the same trace: reads the variables again
    want = _ntk(net, x)
    assert _rel(after_eager, before) > 1e-3
    assert _rel(after_eager, want) < RTOL
    assert _rel(after_compiled, want) < RTOL
    assert _rel(kernel(x, full_cov=False).numpy(), np.diag(want)) < RTOL
