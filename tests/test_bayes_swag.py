"""SWAG: moments against numpy, the low-rank covariance, sampling, checkpoints, batch norm."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.bayes.swag import SWAG, assign_flat, flatten, predict_swag, refresh_batch_norm  # noqa: E402
from tfbdl.errors import InvalidOptionError, ShapeError  # noqa: E402


def _variables():
    return [tf.Variable(np.zeros((2, 3))), tf.Variable(np.zeros(4))]


def _collect(swag, variables, snapshots):
    for snapshot in snapshots:
        assign_flat(variables, tf.constant(snapshot))
        swag.collect()


def test_moments_and_deviations_equal_numpy_on_the_snapshots():
    variables = _variables()
    snapshots = np.random.default_rng(0).normal(size=(7, 10))
    swag = SWAG(variables, max_rank=3, dtype=tf.float64)
    _collect(swag, variables, snapshots)
    np.testing.assert_allclose(swag.mean.numpy(), snapshots.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(swag.variance.numpy(), snapshots.var(axis=0), rtol=1e-10)
    # Deviations of the last K snapshots from the running mean right after each was added.
    running = np.cumsum(snapshots, axis=0) / np.arange(1, 8)[:, None]
    expected = (snapshots - running)[-3:]
    np.testing.assert_allclose(swag.deviation_matrix().numpy(), expected, rtol=1e-12)
    assert int(swag.count.numpy()) == 7


def test_sample_covariance_converges_to_the_swag_covariance():
    variables = [tf.Variable(np.zeros(3))]
    snapshots = np.random.default_rng(1).normal(size=(5, 3)) * np.array([1.0, 0.5, 2.0])
    swag = SWAG(variables, max_rank=4, dtype=tf.float64)
    _collect(swag, variables, snapshots)
    draws = swag.sample_batch(0, 20000).numpy()
    expected = swag.covariance(scale=0.5)
    # diag(var)/2 + D^T D / (2 (K - 1)): the paper's formula at the default scale.
    deviations = swag.deviation_matrix().numpy()
    np.testing.assert_allclose(expected, 0.5 * np.diag(snapshots.var(axis=0)) + deviations.T @ deviations / 6,
                               rtol=1e-12)
    np.testing.assert_allclose(draws.mean(axis=0), swag.mean.numpy(), atol=4 * np.sqrt(np.diag(expected).max() / 20000))
    np.testing.assert_allclose(np.cov(draws.T), expected, atol=0.05 * np.abs(expected).max())
    diagonal = swag.sample_batch(1, 20000, diagonal_only=True).numpy()
    np.testing.assert_allclose(np.cov(diagonal.T), 0.5 * np.diag(swag.variance.numpy()),
                               atol=0.05 * swag.variance.numpy().max())


def test_samples_are_seeded_and_swa_assigns_the_mean():
    variables = _variables()
    swag = SWAG(variables, max_rank=2)
    _collect(swag, variables, np.random.default_rng(2).normal(size=(3, 10)).astype(np.float32))
    np.testing.assert_array_equal(swag.sample(5).numpy(), swag.sample(5).numpy())
    np.testing.assert_array_equal(swag.sample_batch(5, 3).numpy(), swag.sample_batch(5, 3).numpy())
    assert not np.array_equal(swag.sample(5).numpy(), swag.sample(6).numpy())
    swag.assign_mean()
    np.testing.assert_allclose(flatten(variables).numpy(), swag.mean.numpy(), rtol=1e-6)


def test_state_round_trip_resumes_collection_exactly():
    variables = _variables()
    snapshots = np.random.default_rng(3).normal(size=(6, 10))
    whole = SWAG(variables, max_rank=4, dtype=tf.float64)
    _collect(whole, variables, snapshots)
    first = SWAG(variables, max_rank=4, dtype=tf.float64)
    _collect(first, variables, snapshots[:4])
    resumed = SWAG(variables, max_rank=4, dtype=tf.float64)
    resumed.load_state(first.state())
    _collect(resumed, variables, snapshots[4:])
    for key, value in whole.state().items():
        np.testing.assert_array_equal(resumed.state()[key], value)
    with pytest.raises(ShapeError, match="another model or max_rank"):
        SWAG(variables, max_rank=2, dtype=tf.float64).load_state(first.state())


def test_sampling_before_collecting_is_a_clear_error():
    with pytest.raises(InvalidOptionError, match="collected no snapshot"):
        SWAG(_variables()).sample(0)


def _bn_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.BatchNormalization()(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(hidden))


def test_batch_norm_refresh_gives_the_training_data_moments():
    model = _bn_model()
    data = np.random.default_rng(4).normal(loc=[1.0, -2.0, 3.0], scale=[1.0, 2.0, 0.5], size=(600, 3))
    used = refresh_batch_norm(model, [data[i:i + 100].astype(np.float32) for i in range(0, 600, 100)])
    assert used == 6
    bn = model.layers[1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), data.mean(axis=0), rtol=1e-5)
    # The average of per-batch (biased) variances.
    batch_vars = np.mean([data[i:i + 100].var(axis=0) for i in range(0, 600, 100)], axis=0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), batch_vars, rtol=1e-4)
    assert bn.momentum == pytest.approx(0.99)


def test_predictive_averages_samples_and_restores_the_weights():
    keras.utils.set_random_seed(0)
    model = _bn_model()
    x = np.random.default_rng(5).normal(size=(8, 3)).astype(np.float32)
    before = [v.numpy().copy() for v in model.trainable_variables]
    swags = []
    for run in range(2):  # MultiSWAG: two "runs" with different snapshots
        swag = SWAG(model.trainable_variables, max_rank=3)
        for step in range(4):
            for v, b in zip(model.trainable_variables, before):
                v.assign(b + 0.1 * (run + 1) * np.random.default_rng(step).normal(size=b.shape))
            swag.collect()
        swags.append(swag)
    for v, b in zip(model.trainable_variables, before):
        v.assign(b)
    probs = predict_swag(model, swags, x, samples_per_model=3, seed=0,
                         bn_batches=lambda: [x[:4], x[4:]])
    assert probs.shape == (8, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    # The average of the individual sample predictives, drawn with the same seeds.
    manual = []
    for index, swag in enumerate(swags):
        for draw in range(3):
            swag.assign_sample(index * 10_007 + draw)
            refresh_batch_norm(model, [x[:4], x[4:]])
            manual.append(tf.nn.softmax(model(x, training=False)).numpy())
    np.testing.assert_allclose(probs, np.mean(manual, axis=0), rtol=1e-5)


def test_collector_with_the_trainer_resumes_to_the_same_moments(tmp_path):
    from tfbdl.bayes.swag import SWAGCollector
    from tfbdl.io import RunDir
    from tfbdl.train.loop import Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def run(epochs, out, fresh):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        swag = SWAG(model.trainable_variables, max_rank=3)
        trainer = Trainer(model, lambda: keras.optimizers.SGD(0.1))
        run_dir = RunDir.open(out, "swag-test", "r", {"a": 1}, resume=not fresh)
        trainer.fit((x, y), epochs, run_dir=run_dir, callbacks=[SWAGCollector(swag, start_epoch=1)], seed=0,
                    batch_size=16, verbose=False)
        return swag

    whole = run(5, tmp_path / "a", True)
    run(3, tmp_path / "b", True)
    resumed = run(5, tmp_path / "b", False)
    assert int(whole.count.numpy()) == 4
    for key, value in whole.state().items():
        np.testing.assert_array_equal(resumed.state()[key], value)


def test_collector_every_c_steps_takes_the_snapshots_of_those_steps():
    from tfbdl.bayes.swag import SWAGCollector
    from tfbdl.train.loop import Trainer

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    keras.utils.set_random_seed(2)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    swag = SWAG(model.trainable_variables, max_rank=10, dtype=tf.float64)
    seen = []

    class Record:  # the weights after every step, to check the snapshots against
        def on_step_end(self, trainer, step):
            seen.append((trainer.epoch, step, flatten(model.trainable_variables).numpy()))

    trainer = Trainer(model, lambda: keras.optimizers.SGD(0.1))
    collector = SWAGCollector(swag, start_epoch=1, every_steps=2)
    trainer.fit((x, y), 3, callbacks=[Record(), collector], seed=0, batch_size=16, verbose=False)
    # 4 steps per epoch; from epoch index 1 on, steps 6, 8, 10, 12 are collected.
    expected = [w for epoch, step, w in seen if epoch >= 1 and step % 2 == 0]
    assert [step for epoch, step, _ in seen if epoch >= 1 and step % 2 == 0] == [6, 8, 10, 12]
    assert int(swag.count.numpy()) == 4
    np.testing.assert_allclose(swag.mean.numpy(), np.mean(expected, axis=0), rtol=1e-6)
    with pytest.raises(InvalidOptionError, match="every_steps"):
        SWAGCollector(swag, start_epoch=0, every_steps=0)
