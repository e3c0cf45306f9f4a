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


# --------------------------------------------------------------------------- SWAG.as_distribution


def _small_float64_swag(max_rank=5, snapshots=7, seed=6):
    """A Dense(6->20)->Dense(20->4) model (224 weights) in float64 with ``snapshots`` collected
    points of a random walk around its initial weights; returns (swag, the snapshots [S, P])."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), dtype="float64")
    hidden = keras.layers.Dense(20, activation="tanh", dtype="float64")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, dtype="float64")(hidden))
    variables = model.trainable_variables
    start = flatten(variables).numpy()
    rng = np.random.default_rng(seed)
    walk = start + np.cumsum(0.1 * rng.normal(size=(snapshots, start.size)), axis=0)
    swag = SWAG(variables, max_rank=max_rank, dtype=tf.float64)
    _collect(swag, variables, walk)
    return swag, walk


def _numpy_swag_covariance(walk, max_rank, scale):
    running = np.cumsum(walk, axis=0) / np.arange(1, len(walk) + 1)[:, None]
    deviations = (walk - running)[-max_rank:]
    k = deviations.shape[0]
    return scale * (np.diag(walk.var(axis=0)) + deviations.T @ deviations / (k - 1))


def test_distribution_mean_and_covariance_are_swags():
    tfp = pytest.importorskip("tensorflow_probability")
    swag, walk = _small_float64_swag()
    assert swag.num_parameters == 224
    for scale in (0.5, 1.0):
        dist = swag.as_distribution(scale=scale)
        assert isinstance(dist, tfp.distributions.Distribution)
        assert dist.event_shape == [224] and dist.dtype == tf.float64
        np.testing.assert_allclose(dist.mean().numpy(), walk.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(dist.mean().numpy(), swag.mean.numpy(), rtol=0, atol=0)
        cov = dist.covariance().numpy()
        expected = _numpy_swag_covariance(walk, 5, scale)
        np.testing.assert_allclose(cov, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
        np.testing.assert_allclose(cov, swag.covariance(scale=scale), rtol=0, atol=1e-12 * np.abs(expected).max())
    diagonal = swag.as_distribution(scale=0.5, diagonal_only=True)
    np.testing.assert_allclose(diagonal.covariance().numpy(), 0.5 * np.diag(walk.var(axis=0)), rtol=1e-10, atol=0)
    np.testing.assert_allclose(diagonal.covariance().numpy(), swag.covariance(scale=0.5, diagonal_only=True),
                               rtol=1e-12, atol=0)
    # A snapshot of the moments: collecting again does not change a distribution already built.
    before = dist.mean().numpy()
    swag.collect()
    np.testing.assert_array_equal(dist.mean().numpy(), before)


def test_distribution_log_prob_equals_scipy():
    stats = pytest.importorskip("scipy.stats")
    swag, walk = _small_float64_swag()
    scale = 0.5
    dist = swag.as_distribution(scale=scale)
    mean, cov = swag.mean.numpy(), swag.covariance(scale=scale)
    reference = stats.multivariate_normal(mean, cov)
    rng = np.random.default_rng(7)
    points = np.concatenate([mean[None], walk[[0, 3, 6]],
                             rng.multivariate_normal(mean, cov, size=3),
                             mean + 0.05 * rng.normal(size=(2, mean.size))])
    ours = dist.log_prob(points).numpy()
    np.testing.assert_allclose(ours, reference.logpdf(points), rtol=1e-8)
    diagonal = swag.as_distribution(scale=scale, diagonal_only=True)
    np.testing.assert_allclose(diagonal.log_prob(points).numpy(),
                               stats.multivariate_normal(mean, np.diag(scale * swag.variance.numpy())).logpdf(points),
                               rtol=1e-8)


@pytest.mark.parametrize("diagonal_only", [False, True])
def test_distribution_samples_have_its_moments(diagonal_only):
    """Whitened draws L^-1 (θ - μ) (Σ = L Lᵀ) must be N(0, I): with n draws each coordinate of
    their mean has standard deviation 1/√n and each entry of their covariance at most √(2/n), so
    5/√n and 6√(2/n) bound them (the seed is fixed; a correct sampler fails with probability
    ~1e-4 per seed, a wrong scale or a missing low-rank term misses by O(1))."""
    swag, _ = _small_float64_swag()
    dist = swag.as_distribution(scale=0.5, diagonal_only=diagonal_only)
    n = 20000
    draws = dist.sample(n, seed=tf.constant([11, 12], tf.int32)).numpy()
    assert draws.shape == (n, 224)
    cov = swag.covariance(scale=0.5, diagonal_only=diagonal_only)
    chol = np.linalg.cholesky(cov)
    white = np.linalg.solve(chol, (draws - swag.mean.numpy()).T).T
    assert np.abs(white.mean(axis=0)).max() < 5 / np.sqrt(n)
    white_cov = white.T @ white / n
    assert np.abs(white_cov - np.eye(224)).max() < 6 * np.sqrt(2 / n)
    # and the sampler's draws match SWAG.sample_batch's law the same way
    ours = swag.sample_batch(3, n, diagonal_only=diagonal_only).numpy()
    white = np.linalg.solve(chol, (ours - swag.mean.numpy()).T).T
    assert np.abs(white.T @ white / n - np.eye(224)).max() < 6 * np.sqrt(2 / n)


def test_distribution_never_forms_a_dense_matrix_for_a_million_weights():
    variables = [tf.Variable(np.zeros(1_000_000))]
    rng = np.random.default_rng(8)
    swag = SWAG(variables, max_rank=3, dtype=tf.float64)
    _collect(swag, variables, rng.normal(size=(4, 1_000_000)))
    dist = swag.as_distribution()  # a dense covariance would be 8 TB
    draws = dist.sample(2, seed=tf.constant([1, 2], tf.int32))
    assert draws.shape == (2, 1_000_000)
    log_prob = dist.log_prob(draws).numpy()
    assert np.isfinite(log_prob).all()


def test_distribution_errors_are_clear():
    variables = _variables()
    with pytest.raises(InvalidOptionError, match="collected no snapshot"):
        SWAG(variables, max_rank=3).as_distribution()
    swag = SWAG(variables, max_rank=3, dtype=tf.float64)
    _collect(swag, variables, np.random.default_rng(9).normal(size=(1, 10)))
    with pytest.raises(InvalidOptionError, match="at least 2 deviations.*diagonal_only=True"):
        swag.as_distribution()
    assert swag.as_distribution(diagonal_only=True).event_shape == [10]
    with pytest.raises(InvalidOptionError, match="scale"):
        swag.as_distribution(scale=0.0, diagonal_only=True)
    diagonal_swag = SWAG(variables, max_rank=0, dtype=tf.float64)
    _collect(diagonal_swag, variables, np.random.default_rng(9).normal(size=(3, 10)))
    with pytest.raises(InvalidOptionError, match="max_rank=0"):
        diagonal_swag.as_distribution()
