"""Posteriors on models trained with plain ``keras.Model.fit`` (issue 14, points 3 and 4).

- :class:`~tfbdl.bayes.SWAGCallback` in ``fit`` collects the same SWAG moments, bit for bit in
  float64, as :class:`~tfbdl.bayes.swag.SWAGCollector` in the project's Trainer on the same
  model, weights, batches and optimizer.
- Laplace, temperature scaling and the predictive adapters work on a functional and on a
  subclassed Keras model trained with ``fit``.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.bayes import SWAG, SWAGCallback, SWAGCollector  # noqa: E402
from tfbdl.bayes.laplace import diagonal_laplace, last_layer_laplace  # noqa: E402
from tfbdl.bayes.predictive import (  # noqa: E402
    LaplacePredictive,
    PointPredictive,
    SWAGPredictive,
    TemperatureScaled,
    evaluate,
)
from tfbdl.bayes.temperature import fit_temperature, scaled_nll  # noqa: E402
from tfbdl.errors import InvalidOptionError  # noqa: E402
from tfbdl.train.loop import Trainer  # noqa: E402


# --------------------------------------------------------------------------- data and models


def _blobs(n=150, seed=0, dtype=np.float32):
    """Three overlapping Gaussian classes in 4-D (overlap keeps the MAP from being certain)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[1.0, 0.0, 0.0, 0.5], [-0.5, 1.0, 0.0, -0.5], [-0.5, -1.0, 0.5, 0.0]])
    x = centers[y] + 0.9 * rng.normal(size=(n, 4))
    return x.astype(dtype), y.astype(np.int64)


def _functional(dtype="float32"):
    inputs = keras.Input((4,), dtype=dtype)
    hidden = keras.layers.Dense(12, activation="tanh", dtype=dtype)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, dtype=dtype)(hidden))


class SubclassedNet(keras.Model):
    def __init__(self, dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(12, activation="tanh", dtype=dtype)
        self.logits = keras.layers.Dense(3, dtype=dtype)

    def call(self, x, training=False):
        return self.logits(self.hidden(x))


def _model(kind, dtype="float32"):
    model = _functional(dtype) if kind == "functional" else SubclassedNet(dtype)
    model(np.zeros((1, 4), dtype))  # build
    return model


def _compile(model, optimizer):
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)


# --------------------------------------------------------------------------- SWAGCallback == SWAGCollector


@pytest.fixture
def floatx64():
    """floatx float64 while the test runs. Under the default float32 ``fit`` and the Trainer
    differ on a float64 model for two reasons, both Keras's and both at float32 rounding
    (~1e-8 absolute on the SWA mean here): (1) ``fit`` casts float numpy arrays to floatx (its
    array adapter; a ``tf.data.Dataset`` is passed through), and (2) a Keras loss object computes
    in its own ``dtype`` (default floatx), casting the float64 logits to float32 before the
    cross-entropy, while the Trainer's loss stays in the logits' dtype. See
    :func:`test_swag_callback_exact_under_float32_floatx_with_a_dataset_and_a_float64_loss`."""
    saved = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(saved)


def _trainer_and_fit_swag(kind, *, every_steps=None, momentum=0.9, epochs=4, start_epoch=1, max_rank=3,
                          as_dataset=False, loss_dtype=None):
    x, y = _blobs(n=100, seed=1, dtype=np.float64)  # 100 = 6 batches of 16 + a last one of 4
    keras.utils.set_random_seed(3)
    initial = _model(kind, "float64").get_weights()

    reference = _model(kind, "float64")
    reference.set_weights(initial)
    swag_trainer = SWAG(reference.trainable_variables, max_rank=max_rank, dtype=tf.float64)
    trainer = Trainer(reference, lambda: keras.optimizers.SGD(0.05, momentum=momentum))
    trainer.fit((x, y), epochs, callbacks=[SWAGCollector(swag_trainer, start_epoch, every_steps)],
                batch_size=16, shuffle=False, verbose=False)

    model = _model(kind, "float64")
    model.set_weights(initial)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=momentum), jit_compile=False,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=loss_dtype))
    callback = SWAGCallback(start_epoch=start_epoch, max_rank=max_rank, every_steps=every_steps)
    if as_dataset:  # the very dataset the Trainer builds from arrays with shuffle=False
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[callback])
    else:
        model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=[callback])
    return reference, swag_trainer, model, callback


@pytest.mark.parametrize("kind,every_steps,as_dataset", [("functional", None, False), ("subclassed", None, False),
                                                         ("functional", 3, False), ("subclassed", 3, True)])
def test_swag_callback_in_fit_equals_the_trainers_collector(floatx64, kind, every_steps, as_dataset):
    reference, expected, model, callback = _trainer_and_fit_swag(kind, every_steps=every_steps,
                                                                 as_dataset=as_dataset)
    swag = callback.swag
    assert isinstance(swag, SWAG) and swag.dtype == tf.float64 and swag.max_rank == 3
    # 4 epochs from index 1 on: 3 snapshots; every 3 of 7 steps per epoch from step 8 on: 9, 12, ..., 27
    assert int(swag.count.numpy()) == int(expected.count.numpy()) == (3 if every_steps is None else 7)
    # the same weights at the end, then the same moments (1e-12; they come out bitwise equal on a CPU)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(swag.mean.numpy(), expected.mean.numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(swag.sq_mean.numpy(), expected.sq_mean.numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(swag.variance.numpy(), expected.variance.numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(swag.deviation_matrix().numpy(), expected.deviation_matrix().numpy(),
                               rtol=1e-12, atol=1e-14 * np.abs(expected.deviation_matrix().numpy()).max())
    np.testing.assert_allclose(swag.covariance(), expected.covariance(), rtol=1e-12, atol=0)


def test_swag_callback_exact_under_float32_floatx_with_a_dataset_and_a_float64_loss():
    """The two float32 roundings of ``fit`` (see the ``floatx64`` fixture) are all there is: with a
    dataset (not cast) and a float64 loss the default floatx gives the same bits too; with arrays
    (cast to float32) it does not."""
    assert keras.config.floatx() == "float32"
    reference, expected, model, callback = _trainer_and_fit_swag("functional", as_dataset=True,
                                                                 loss_dtype="float64")
    np.testing.assert_array_equal(callback.swag.mean.numpy(), expected.mean.numpy())
    np.testing.assert_array_equal(callback.swag.sq_mean.numpy(), expected.sq_mean.numpy())
    np.testing.assert_array_equal(callback.swag.deviation_matrix().numpy(), expected.deviation_matrix().numpy())
    reference, expected, model, callback = _trainer_and_fit_swag("functional", loss_dtype="float64")
    gap = np.abs(callback.swag.mean.numpy() - expected.mean.numpy()).max()
    assert 0 < gap < 1e-6


def test_swag_callback_keeps_collecting_over_fit_calls_and_checks_its_options():
    x, y = _blobs(n=32, seed=2)
    keras.utils.set_random_seed(4)
    model = _model("functional")
    _compile(model, keras.optimizers.SGD(0.05))
    callback = SWAGCallback(start_epoch=1, max_rank=2)
    assert callback.swag is None
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
    assert int(callback.swag.count.numpy()) == 1 and callback.swag.dtype == tf.float32
    swag = callback.swag
    model.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, shuffle=False, verbose=0, callbacks=[callback])
    assert callback.swag is swag and int(swag.count.numpy()) == 3
    assert swag.num_parameters == sum(w.size for w in model.get_weights())
    other = _model("functional")
    _compile(other, keras.optimizers.SGD(0.05))
    with pytest.raises(InvalidOptionError, match="other variables"):
        other.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    with pytest.raises(InvalidOptionError, match="start_epoch"):
        SWAGCallback(start_epoch=-1)
    with pytest.raises(InvalidOptionError, match="every_steps"):
        SWAGCallback(start_epoch=0, every_steps=0)
    with pytest.raises(InvalidOptionError, match="max_rank"):
        SWAGCallback(start_epoch=0, max_rank=-1)
    stepwise = _model("functional")
    stepwise.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     steps_per_execution=2)
    with pytest.raises(InvalidOptionError, match="steps_per_execution"):
        stepwise.fit(x, y, epochs=1, verbose=0, callbacks=[SWAGCallback(start_epoch=0, every_steps=2)])


# --------------------------------------------------------------------------- Laplace, temperature, predictives


@pytest.fixture(scope="module", params=["functional", "subclassed"])
def fitted(request):
    """A model of each kind trained 2 epochs with ``fit`` (and SWAG collected by the callback),
    with train / calibration / test splits."""
    x, y = _blobs(n=300, seed=5)
    keras.utils.set_random_seed(6)
    model = _model(request.param)
    _compile(model, keras.optimizers.Adam(0.03))
    callback = SWAGCallback(start_epoch=0, max_rank=5, every_steps=2)
    model.fit(x[:150], y[:150], batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    splits = {"train": (x[:150], y[:150]), "calibration": (x[150:225], y[150:225]), "test": (x[225:], y[225:])}
    return request.param, model, callback.swag, splits


def _map_probs(model, x):
    return tf.nn.softmax(model(x, training=False)).numpy().astype(np.float64)


@pytest.mark.parametrize("method", ["diagonal", "last_layer"])
def test_laplace_on_models_trained_with_fit(fitted, method):
    kind, model, _, splits = fitted
    x_train, y_train = splits["train"]
    x_test, _ = splits["test"]
    before = [w.copy() for w in model.get_weights()]
    build = diagonal_laplace if method == "diagonal" else last_layer_laplace
    laplace = build(model, (x_train, y_train), prior_precision=1.0, batch_size=64)
    n_last = 12 * 3 + 3
    assert laplace.dim == (sum(w.size for w in before) if method == "diagonal" else n_last)
    assert np.isfinite(laplace.log_marginal_likelihood())
    probs = LaplacePredictive(model, laplace, seed=0).predict(x_test, num_samples=16)
    assert probs.shape == (len(x_test), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    map_probs = _map_probs(model, x_test)
    assert np.abs(probs - map_probs).max() > 1e-3  # the weight uncertainty changes the predictive
    # averaging over weights softens the MAP on average (Jensen for the max-probability is not
    # guaranteed per point, but the mean entropy of the average of softmaxes is larger)
    entropy = lambda p: -(p * np.log(p)).sum(axis=1).mean()  # noqa: E731
    assert entropy(probs) > entropy(map_probs)
    for a, b in zip(model.get_weights(), before):  # the model keeps its MAP weights
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fitted", ["subclassed"], indirect=True)
def test_last_layer_laplace_of_a_subclassed_model_equals_the_functional_ones(fitted):
    """The same weights in a functional model: the subclassed model's last-layer curvature (from
    Jacobians) must equal the functional model's (from the features)."""
    kind, model, _, splits = fitted
    twin = _model("functional")
    twin.set_weights(model.get_weights())
    data = splits["train"]
    ours = last_layer_laplace(model, data, prior_precision=2.0, batch_size=64)
    reference = last_layer_laplace(twin, data, prior_precision=2.0, batch_size=64)
    np.testing.assert_allclose(ours.curvature, reference.curvature, rtol=1e-9,
                               atol=1e-12 * np.abs(reference.curvature).max())
    assert ours.nll == pytest.approx(reference.nll, rel=1e-12)
    assert ours.variable_paths == [v.path for v in model.logits.trainable_variables]


def test_temperature_scaling_on_models_trained_with_fit(fitted):
    _, model, _, splits = fitted
    x_cal, y_cal = splits["calibration"]
    logits = model.predict(x_cal, verbose=0).astype(np.float64)
    temperature = fit_temperature(logits, y_cal)
    assert temperature > 0
    assert scaled_nll(logits, y_cal, temperature) <= scaled_nll(logits, y_cal, 1.0) + 1e-12
    scaled = TemperatureScaled(PointPredictive(model)).fit(x_cal, y_cal)
    assert scaled.temperature > 0
    # on the log-probabilities of the point predictive the fitted T is the logits' T (softmax is
    # shift invariant), and its NLL on the calibration set is no worse than T = 1
    assert scaled.temperature == pytest.approx(temperature, rel=1e-4)
    before = evaluate(PointPredictive(model), x_cal, y_cal)["nll"]
    after = evaluate(scaled, x_cal, y_cal)["nll"]
    assert after <= before + 1e-12
    x_test, _ = splits["test"]
    probs = scaled.predict(x_test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(probs.argmax(axis=1), _map_probs(model, x_test).argmax(axis=1))


def test_predictives_on_models_trained_with_fit(fitted):
    _, model, swag, splits = fitted
    x_train, y_train = splits["train"]
    x_test, y_test = splits["test"]
    before = [w.copy() for w in model.get_weights()]
    point = PointPredictive(model).predict(x_test)
    np.testing.assert_allclose(point, _map_probs(model, x_test), rtol=1e-6)
    assert int(swag.count.numpy()) == 10  # 10 steps per epoch, every 2nd step, 2 epochs
    swag_probs = SWAGPredictive(model, swag, seed=1).predict(x_test, num_samples=4)
    np.testing.assert_allclose(swag_probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.abs(swag_probs - point).max() > 1e-4
    laplace = diagonal_laplace(model, (x_train, y_train), prior_precision=1.0)
    for predictive in (PointPredictive(model), SWAGPredictive(model, swag), LaplacePredictive(model, laplace)):
        metrics = evaluate(predictive, x_test, y_test, num_samples=4)
        assert set(metrics) == {"accuracy", "nll", "brier", "ece"}
        assert metrics["accuracy"] > 0.5 and np.isfinite(metrics["nll"])  # well above chance (1/3)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
