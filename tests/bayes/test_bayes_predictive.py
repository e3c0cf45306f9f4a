"""The common predict(x, num_samples) interface: each adapter against its method computed directly."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.bayes.laplace import last_layer_laplace  # noqa: E402
from tfbdl.bayes.predictive import (EnsemblePredictive, LaplacePredictive, PointPredictive, SWAGPredictive,  # noqa: E402
                                    TemperatureScaled, evaluate)
from tfbdl.bayes.swag import SWAG  # noqa: E402
from tfbdl.errors import InvalidOptionError  # noqa: E402
from tfbdl.metrics import classification_metrics  # noqa: E402


def _model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(keras.layers.Dense(5, activation="tanh")(inputs)))


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)


def test_point_predictive_is_the_softmax_of_the_model():
    model = _model(0)
    probs = PointPredictive(model, batch_size=5).predict(X)
    np.testing.assert_allclose(probs, _softmax(model(X).numpy().astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_ensemble_is_the_mean_of_its_members():
    a, b = _model(0), _model(1)
    ensemble = EnsemblePredictive([PointPredictive(a), PointPredictive(b)]).predict(X)
    np.testing.assert_allclose(ensemble, (PointPredictive(a).predict(X) + PointPredictive(b).predict(X)) / 2,
                               rtol=1e-12)
    with pytest.raises(InvalidOptionError, match="at least one member"):
        EnsemblePredictive([])


def test_swag_with_identical_snapshots_predicts_like_its_mean():
    model = _model(2)
    swag = SWAG(model.trainable_variables, max_rank=3)
    for _ in range(4):  # no movement between snapshots: zero variance, every sample is the mean
        swag.collect()
    point = PointPredictive(model).predict(X)
    np.testing.assert_allclose(SWAGPredictive(model, swag, seed=3).predict(X, num_samples=5), point, atol=1e-5)


def test_swag_samples_change_the_prediction_when_snapshots_differ():
    model = _model(3)
    swag = SWAG(model.trainable_variables, max_rank=3)
    rng = np.random.default_rng(0)
    start = [v.numpy() for v in model.trainable_variables]
    for _ in range(4):
        for v, value in zip(model.trainable_variables, start):
            v.assign(value + rng.normal(scale=0.3, size=value.shape).astype(value.dtype))
        swag.collect()
    swag.assign_mean()
    mean_probs = PointPredictive(model).predict(X)
    averaged = SWAGPredictive(model, swag, seed=0).predict(X, num_samples=8)
    assert np.abs(averaged - mean_probs).max() > 1e-3
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0, rtol=1e-6)
    # The model's weights are restored after sampling.
    np.testing.assert_allclose(PointPredictive(model).predict(X), mean_probs, rtol=1e-12)


def test_laplace_adapter_equals_the_posterior_predict():
    model = _model(4)
    y = np.random.default_rng(1).integers(0, 3, size=16)
    laplace = last_layer_laplace(model, (X, y), prior_precision=1.0)
    adapter = LaplacePredictive(model, laplace, seed=7, batch_size=None).predict(X, num_samples=6)
    np.testing.assert_allclose(adapter, laplace.predict(model, X, num_samples=6, seed=7), rtol=1e-12)


def test_temperature_scaling_softens_an_overconfident_predictive_and_keeps_its_classes():
    model = _model(5)
    logits = model(X).numpy()
    # Labels that disagree with the model half the time make its confident predictions too sharp.
    y = np.argmax(logits, axis=1)
    y[::2] = (y[::2] + 1) % 3
    for v in model.trainable_variables:
        if v.path.endswith("logits/kernel"):
            v.assign(v * 20.0)
    base = PointPredictive(model)
    scaled = TemperatureScaled(base).fit(X, y)
    assert scaled.temperature > 1.0
    np.testing.assert_array_equal(np.argmax(scaled.predict(X), axis=1), np.argmax(base.predict(X), axis=1))
    assert evaluate(scaled, X, y)["nll"] < evaluate(base, X, y)["nll"]
    assert evaluate(base, X, y) == classification_metrics(base.predict(X), y)
