"""Linearized networks: f_lin = f at theta0, d f_lin / d theta = J(x; theta0) (against tape
Jacobians), exactness for models linear in their weights, frozen batch norm, and training with
the unchanged Trainer (including a checkpointed resume)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl.errors import InvalidOptionError
from tfbdl.io import RunDir
from tfbdl.nn import mlp
from tfbdl.ntk.linearize import LinearizedModel, linearize
from tfbdl.train.loop import Trainer


def small_cnn(seed=0):
    """conv -> BN -> tanh -> dense, with non-trivial BN moving statistics."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5, 5, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", activation=None, name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")
    h = keras.layers.Activation("tanh")(bn(h))
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(2, name="out")(h)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    bn.moving_mean.assign(rng.normal(size=3).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=3).astype("float32"))
    bn.gamma.assign(rng.uniform(0.5, 1.5, size=3).astype("float32"))
    return model


def jacobian_at(model, x):
    """Reference J(x; theta) [batch * outputs, P] of the model in inference mode (tape.jacobian)."""
    with tf.GradientTape() as tape:
        out = model(x, training=False)
    jac = tape.jacobian(out, model.trainable_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    n = int(np.prod(out.shape))
    return np.concatenate([j.numpy().reshape(n, -1) for j in jac], axis=1).astype(np.float64), out.numpy()


def flat(values):
    return np.concatenate([np.asarray(v, np.float64).ravel() for v in values])


def perturb(lin, scale, seed):
    rng = np.random.default_rng(seed)
    for t in lin.theta:
        t.assign(t.numpy() + scale * rng.normal(size=t.shape).astype("float32"))


@pytest.fixture(params=["mlp", "cnn"])
def model_and_x(request):
    rng = np.random.default_rng(3)
    if request.param == "mlp":
        model = mlp((6, 5), 3, (4,), "tanh", seed=2)
        x = rng.normal(size=(7, 4)).astype("float32")
    else:
        model = small_cnn(2)
        x = rng.normal(size=(4, 5, 5, 2)).astype("float32")
    model(x[:1])
    return model, x


def test_equals_network_at_theta0(model_and_x):
    model, x = model_and_x
    lin = LinearizedModel(model)
    np.testing.assert_allclose(lin(x).numpy(), model(x, training=False).numpy(), rtol=1e-6, atol=1e-6)
    assert len(lin.trainable_variables) == len(model.trainable_variables)
    for t, v in zip(lin.trainable_variables, model.trainable_variables):
        assert tuple(t.shape) == tuple(v.shape) and t.dtype == v.dtype
        np.testing.assert_array_equal(t.numpy(), v.numpy())
    assert lin.distance_to_init() == 0.0


def test_gradient_is_the_jacobian_at_theta0(model_and_x):
    model, x = model_and_x
    ref_jac, f0 = jacobian_at(model, x)
    lin = LinearizedModel(model)
    for step in range(2):  # at theta0, and again after moving theta: J does not change
        with tf.GradientTape() as tape:
            out = lin(x, training=True)
        jac = tape.jacobian(out, lin.trainable_variables)
        got = np.concatenate([j.numpy().reshape(ref_jac.shape[0], -1) for j in jac], axis=1)
        np.testing.assert_allclose(got, ref_jac, rtol=1e-5, atol=1e-6)
        perturb(lin, 0.3, step)
    # and f_lin(theta) = f(theta0) + J (theta - theta0)
    delta = flat(t.numpy() for t in lin.theta) - flat(t.numpy() for t in lin.theta0)
    expected = f0.ravel() + ref_jac @ delta
    np.testing.assert_allclose(lin(x).numpy().ravel(), expected, rtol=1e-5, atol=1e-5)
    # the network itself (theta0) is untouched, and differs from f_lin away from theta0
    np.testing.assert_array_equal(model(x, training=False).numpy(), f0)
    assert lin.distance_to_init() > 0.1


def test_offset_false_is_the_increment(model_and_x):
    model, x = model_and_x
    lin, inc = LinearizedModel(model), linearize(model, offset=False)
    np.testing.assert_array_equal(inc(x).numpy(), 0.0)
    perturb(lin, 0.2, 7)
    perturb(inc, 0.2, 7)
    np.testing.assert_allclose(inc(x).numpy(), lin(x).numpy() - model(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_exact_for_a_model_linear_in_its_weights():
    model = mlp((), 3, (4,), seed=0)  # one dense layer without activation
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    lin = LinearizedModel(model)
    perturb(lin, 1.5, 1)
    other = mlp((), 3, (4,), seed=9)
    lin.assign_to(other)  # the non-linear model at the same weights
    np.testing.assert_allclose(lin(x).numpy(), other(x).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(lin(x).numpy(), model(x).numpy())


def test_batch_norm_uses_frozen_inference_statistics():
    model = small_cnn(4)
    x = np.random.default_rng(5).normal(size=(8, 5, 5, 2)).astype("float32")
    lin = LinearizedModel(model)
    ref = model(x, training=False).numpy()
    np.testing.assert_allclose(lin(x, training=True).numpy(), ref, rtol=1e-6, atol=1e-6)
    assert not np.allclose(model(x, training=True).numpy(), ref)  # batch statistics would differ
    model.get_layer("bn").moving_mean.assign(np.zeros(3, "float32"))  # later changes do not leak in
    np.testing.assert_allclose(lin(x).numpy(), ref, rtol=1e-6, atol=1e-6)
    # theta0 and the frozen moving statistics are non-trainable variables of the linear model
    assert len(lin.non_trainable_variables) == len(model.trainable_variables) + len(model.non_trainable_variables)


def tiny_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    return x, y


def test_one_trainer_epoch_lowers_the_loss():
    x, y = tiny_problem()
    model = mlp((16,), 3, (4,), "tanh", seed=1)
    lin = LinearizedModel(model)
    trainer = Trainer(lin, lambda: keras.optimizers.SGD(0.2, momentum=0.9))
    before = trainer.evaluate((x, y))["loss"]
    theta0 = [t.numpy().copy() for t in lin.theta0]
    trainer.fit((x, y), epochs=1, batch_size=16, seed=0, verbose=False)
    after = trainer.evaluate((x, y))["loss"]
    assert after < before - 0.05
    for t0, t in zip(theta0, lin.theta0):
        np.testing.assert_array_equal(t.numpy(), t0)
    assert lin.distance_to_init() > 0


def test_trainer_checkpoint_resume(tmp_path):
    x, y = tiny_problem()

    def fresh():
        return LinearizedModel(mlp((8,), 3, (4,), "tanh", seed=3))

    def train(model, epochs, run_dir=None):
        trainer = Trainer(model, lambda: keras.optimizers.SGD(0.1, momentum=0.9), weight_decay=1e-3)
        trainer.fit((x, y), epochs=epochs, run_dir=run_dir, batch_size=16, seed=4, verbose=False)
        return model

    straight = train(fresh(), 2)
    run = RunDir.open(tmp_path, "linearized", "r1", {"k": 1})
    train(fresh(), 1, run)
    resumed = train(fresh(), 2, RunDir.open(tmp_path, "linearized", "r1", {"k": 1}))
    for a, b in zip(straight.variables, resumed.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_bad_models():
    with pytest.raises(InvalidOptionError):
        LinearizedModel("not a model")
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(InvalidOptionError, match="build it"):
        LinearizedModel(unbuilt)
    with pytest.raises(InvalidOptionError):
        LinearizedModel(mlp((), 1, (2,), seed=0), offset="yes")
