"""Tests of tfbdl.train.loop.Trainer and tfbdl.train.strategy (tiny models, CPU, seconds)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.errors import InvalidOptionError, RunDirectoryError  # noqa: E402
from tfbdl.io import RunDir  # noqa: E402
from tfbdl.train import (  # noqa: E402
    Callback,
    Trainer,
    epoch_seed,
    get_strategy,
    prior_variance,
    swag_schedule,
    weight_decay_for_prior,
)
from tfbdl.train.strategy import parse_tf_config  # noqa: E402


def _blobs(n=240, seed=0, dtype="float32"):
    """Three well separated Gaussian blobs in 2-D, labels 0..2."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3.0, 0.0], [-3.0, 2.0], [0.0, -3.0]])
    y = rng.integers(0, 3, size=n)
    x = centres[y] + 0.5 * rng.normal(size=(n, 2))
    return x.astype(dtype), y.astype(np.int64)


def _mlp(init_seed=1, dtype="float32", dropout=False):
    keras.utils.set_random_seed(init_seed)
    layers = [keras.Input((2,), dtype=dtype), keras.layers.Dense(16, activation="tanh", dtype=dtype)]
    if dropout:
        layers.append(keras.layers.Dropout(0.25, seed=init_seed + 6, dtype=dtype))
    layers.append(keras.layers.Dense(3, dtype=dtype))
    return keras.Sequential(layers)


def _sgd(lr=0.1, momentum=0.0):
    return lambda: keras.optimizers.SGD(lr, momentum=momentum)


@pytest.fixture
def on_cpu():
    """Bitwise reproducibility is promised on a CPU: keep variables and ops there even where a
    GPU is visible."""
    with tf.device("/CPU:0"):
        yield


def _run_dir(tmp_path, run_id="r"):
    return RunDir.open(tmp_path, "train-test", run_id, {"test": run_id})


# --------------------------------------------------------------------------- micro-batches


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-6), ("float64", 1e-12)])
@pytest.mark.parametrize("micro", [3, 10])
def test_micro_batches_equal_full_batch(dtype, rtol, micro):
    x, y = _blobs(10, seed=3, dtype=dtype)  # one batch of 10: micro-batches of 3,3,4 (or 1 each)
    weights = {}
    for m in (1, micro):
        trainer = Trainer(_mlp(5, dtype), _sgd(0.5), weight_decay=1e-3, micro_batches=m)
        trainer.fit((x, y), 1, lr_schedule=0.5, batch_size=10, shuffle=False, verbose=False)
        assert trainer.global_step == 1
        weights[m] = [v.numpy() for v in trainer.model.trainable_variables]
    start = [v.numpy() for v in _mlp(5, dtype).trainable_variables]
    for w1, wm, w0 in zip(weights[1], weights[micro], start):
        assert not np.allclose(w1, w0)  # the step moved the weights
        np.testing.assert_allclose(wm, w1, rtol=rtol, atol=rtol * 1e-2)


# --------------------------------------------------------------------------- training


def test_training_reaches_high_accuracy_and_logs_each_epoch(tmp_path):
    x, y = _blobs(240)
    rd = _run_dir(tmp_path)
    trainer = Trainer(_mlp(), _sgd(0.1, momentum=0.9))
    history = trainer.fit((x, y), 5, rd, lr_schedule=0.1, seed=0, batch_size=32, verbose=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    rows = rd.read_metrics_rows()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_accuracy", "seconds"]
    assert rows[-1]["train_accuracy"] >= 0.95
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    result = trainer.evaluate((x, y))
    assert result["accuracy"] >= 0.95
    assert result["loss"] == pytest.approx(rows[-1]["train_loss"], rel=0.5)
    assert sorted(rd.done_keys()) == [f"train/epoch-{k}" for k in range(1, 6)]
    p = trainer.predict_proba(x[:7], batch_size=3)
    assert p.shape == (7, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p, tf.nn.softmax(trainer.model(x[:7])).numpy(), rtol=1e-5, atol=1e-7)


def test_dataset_factory_and_step_hooks():
    x, y = _blobs(64)

    def factory(epoch):
        order = np.random.default_rng(epoch_seed(3, epoch)).permutation(len(x))
        return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(16)

    class Steps(Callback):
        def __init__(self):
            self.steps, self.epochs = [], []

        def on_step_end(self, trainer, step):
            self.steps.append(step)

        def on_epoch_end(self, trainer, epoch, logs):
            self.epochs.append(epoch)
            norm = sum(np.sum(v.numpy() ** 2) for v in trainer.model.trainable_variables)
            return {"weight_norm": float(norm)}

    cb = Steps()
    lrs = []
    trainer = Trainer(_mlp(), _sgd())
    history = trainer.fit(factory, 3, lr_schedule=lambda e: lrs.append(e) or 0.1, callbacks=[cb],
                          lr_per_step=True, verbose=False)
    assert cb.steps == list(range(1, 13)) and cb.epochs == [0, 1, 2]
    assert lrs == [e + i / 4 for e in range(3) for i in range(4)]
    assert all("weight_norm" in r for r in history)


# --------------------------------------------------------------------------- resuming


class Collector(Callback):
    """A stateful callback: running sum of the first kernel and a step count (like SWA)."""

    def __init__(self, fail_at_step=None):
        self.total = None
        self.count = 0
        self.fail_at_step = fail_at_step

    def on_step_end(self, trainer, step):
        if self.fail_at_step is not None and step == self.fail_at_step:
            raise RuntimeError("simulated crash")

    def on_epoch_end(self, trainer, epoch, logs):
        w = trainer.model.trainable_variables[0].numpy().astype(np.float64)
        self.total = w if self.total is None else self.total + w
        self.count += 1
        return {"collected": self.count}

    def state(self):
        return {"total": self.total, "count": self.count}

    def load_state(self, state):
        self.total, self.count = state["total"], state["count"]


def _resumable_trainer(init_seed):
    # Resumed runs use a new model object with other initial weights (and another Dropout
    # seed-generator state): the checkpoint must overwrite them all.
    return Trainer(_mlp(init_seed, dropout=True), _sgd(0.05, momentum=0.9), weight_decay=1e-3,
                   micro_batches=2)


def _fit(trainer, rd, epochs, callbacks):
    x, y = _blobs(120)
    lr = lambda e: swag_schedule(e, 0.05, 0.01, 3, 4)  # noqa: E731
    return trainer.fit((x, y), epochs, rd, lr_schedule=lr, callbacks=callbacks, seed=11,
                       batch_size=20, verbose=False)


def _state(trainer):
    return ([v.numpy() for v in trainer.model.variables], [v.numpy() for v in trainer.optimizer.variables])


def _assert_same(a, b):
    for xa, xb in zip(a[0] + a[1], b[0] + b[1]):
        assert xa.dtype == xb.dtype and np.array_equal(xa, xb)
    assert len(a[0]) == len(b[0]) and len(a[1]) == len(b[1])


def test_resume_gives_bitwise_identical_weights(tmp_path, on_cpu):
    full_cb = Collector()
    full = _resumable_trainer(1)
    _fit(full, _run_dir(tmp_path, "full"), 4, [full_cb])

    rd = _run_dir(tmp_path, "resumed")
    first_cb = Collector()
    _fit(_resumable_trainer(1), rd, 2, [first_cb])  # same start as the full run
    assert json.loads((rd.path / "checkpoints/train/checkpoint.json").read_text())["epoch"] == 2
    second_cb = Collector()
    second = _resumable_trainer(3)
    history = _fit(second, rd, 4, [second_cb])

    _assert_same(_state(second), _state(full))
    assert second.global_step == full.global_step == 24
    assert second_cb.count == full_cb.count == 4
    assert np.array_equal(second_cb.total, full_cb.total)
    rows = rd.read_metrics_rows()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    full_rows = RunDir.open(tmp_path, "train-test", "full", {"test": "full"}).read_metrics_rows()
    for r, f in zip(rows, full_rows):
        assert (r["lr"], r["train_loss"], r["train_accuracy"], r["collected"]) == (
            f["lr"], f["train_loss"], f["train_accuracy"], f["collected"])
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert len(list((rd.path / "checkpoints/train").glob("epoch-*.npz"))) == 1  # keep_checkpoints=1

    # Everything done: a rerun trains nothing and restores the final weights.
    again_cb = Collector(fail_at_step=1)  # would raise if any step ran
    again = _resumable_trainer(4)
    _fit(again, rd, 4, [again_cb])
    _assert_same(_state(again), _state(full))
    assert [r["epoch"] for r in rd.read_metrics_rows()] == [1, 2, 3, 4]


def test_crash_mid_epoch_keeps_last_checkpoint(tmp_path, on_cpu):
    full = _resumable_trainer(1)
    _fit(full, _run_dir(tmp_path, "full"), 4, [Collector()])

    rd = _run_dir(tmp_path, "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(_resumable_trainer(1), rd, 4, [Collector(fail_at_step=15)])  # step 3 of epoch index 2
    meta = json.loads((rd.path / "checkpoints/train/checkpoint.json").read_text())
    assert meta["epoch"] == 2 and meta["global_step"] == 12
    assert [r["epoch"] for r in rd.read_metrics_rows()] == [1, 2]

    resumed = _resumable_trainer(3)
    _fit(resumed, rd, 4, [Collector()])
    _assert_same(_state(resumed), _state(full))
    assert [r["epoch"] for r in rd.read_metrics_rows()] == [1, 2, 3, 4]


def test_resume_repairs_missing_csv_rows_and_checks_seed(tmp_path):
    rd = _run_dir(tmp_path)
    _fit(_resumable_trainer(1), rd, 2, [Collector()])
    (rd.path / "metrics.csv").unlink()  # as if killed between the checkpoint and the CSV row
    _fit(_resumable_trainer(1), rd, 3, [Collector()])
    assert [r["epoch"] for r in rd.read_metrics_rows()] == [1, 2, 3]
    x, y = _blobs(120)
    with pytest.raises(RunDirectoryError, match="seed"):
        _resumable_trainer(1).fit((x, y), 4, rd, seed=12, batch_size=20, verbose=False)
    with pytest.raises(RunDirectoryError, match="already 3 epochs"):
        _fit(_resumable_trainer(1), rd, 2, [Collector()])


# --------------------------------------------------------------------------- weight decay


def test_weight_decay_term_is_exact():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    kernel = np.array([[0.5, -1.0, 0.25], [2.0, 0.0, -0.5]], np.float32)
    bias = np.array([0.1, -0.2, 0.3], np.float32)
    model.set_weights([kernel, bias])
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -1.0]], np.float32)
    y = np.array([0, 2, 1])
    wd = 0.01
    trainer = Trainer(model, _sgd(), weight_decay=wd)
    logits = x.astype(np.float64) @ kernel + bias
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(3), y].mean()
    sq = float(np.sum(kernel.astype(np.float64) ** 2) + np.sum(bias.astype(np.float64) ** 2))
    assert trainer.weight_penalty() == pytest.approx(wd * sq, rel=1e-12)
    assert trainer.evaluate((x, y))["loss"] == pytest.approx(nll, rel=1e-6)
    assert trainer.objective((x, y)) == pytest.approx(nll + wd * sq, rel=1e-6)

    # One SGD step: the decay adds exactly 2 * wd * w to the gradient.
    after = {}
    for decay in (0.0, wd):
        model.set_weights([kernel, bias])
        t = Trainer(model, _sgd(0.5), weight_decay=decay)
        t.fit((x, y), 1, lr_schedule=0.5, batch_size=3, shuffle=False, verbose=False)
        after[decay] = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    for w0, a, b in zip([kernel, bias], after[0.0], after[wd]):
        np.testing.assert_allclose(b - a, -0.5 * 2 * wd * w0, rtol=1e-4, atol=1e-7)


def test_categorical_loss_matches_sparse():
    x, y = _blobs(30)
    model = _mlp(2)
    sparse = Trainer(model, _sgd()).evaluate((x, y), batch_size=7)
    onehot = Trainer(model, _sgd(), loss="categorical_crossentropy").evaluate((x, np.eye(3)[y]), batch_size=7)
    assert onehot["loss"] == pytest.approx(sparse["loss"], rel=1e-6)
    assert onehot["accuracy"] == sparse["accuracy"]


def test_prior_variance_correspondence():
    assert prior_variance(5e-4, 50000) == pytest.approx(1 / (2 * 5e-4 * 50000))
    assert weight_decay_for_prior(prior_variance(5e-4, 50000), 50000) == pytest.approx(5e-4)


# --------------------------------------------------------------------------- errors


def test_bad_inputs_raise():
    x, y = _blobs(20)
    trainer = Trainer(_mlp(), _sgd())
    with pytest.raises(InvalidOptionError, match="seed"):
        trainer.fit((x, y), 1, batch_size=4, verbose=False)
    with pytest.raises(InvalidOptionError, match="function epoch"):
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), 1, verbose=False)
    with pytest.raises(InvalidOptionError, match="integer class labels"):
        trainer.fit((x, y.astype(np.float32)), 1, batch_size=4, seed=0, verbose=False)
    with pytest.raises(InvalidOptionError):
        Trainer(_mlp(), keras.optimizers.SGD(0.1))
    with pytest.raises(InvalidOptionError):
        Trainer(_mlp(), _sgd(), micro_batches=0)
    with pytest.raises(InvalidOptionError):
        Trainer(_mlp(), _sgd(), loss="hinge")


# --------------------------------------------------------------------------- strategies


def test_default_strategy():
    assert get_strategy("default") is tf.distribute.get_strategy()


def test_mirrored_strategy_trains_on_cpu():
    strategy = get_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync >= 1
    x, y = _blobs(60)
    with strategy.scope():
        model = _mlp(4)
    mirrored = Trainer(model, _sgd(0.1, momentum=0.9), weight_decay=1e-3, micro_batches=2,
                       strategy=strategy)
    mirrored.fit((x, y), 2, lr_schedule=0.1, seed=0, batch_size=12, verbose=False)
    plain = Trainer(_mlp(4), _sgd(0.1, momentum=0.9), weight_decay=1e-3, micro_batches=2)
    plain.fit((x, y), 2, lr_schedule=0.1, seed=0, batch_size=12, verbose=False)
    for a, b in zip(mirrored.model.trainable_variables, plain.model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidOptionError, match="outside the strategy"):
        Trainer(_mlp(4), _sgd(), strategy=strategy).fit((x, y), 1, seed=0, batch_size=12, verbose=False)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InvalidOptionError, match="TF_CONFIG"):
        get_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InvalidOptionError, match="JSON"):
        get_strategy("multi-worker")
    bad = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(bad))
    with pytest.raises(InvalidOptionError, match="index"):
        get_strategy("multi-worker")
    ok = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert parse_tf_config(json.dumps(ok)) == ok


@pytest.mark.parametrize("name", ["tpu", "", None, "parameter-server"])
def test_unknown_strategy_raises(name):
    with pytest.raises(InvalidOptionError, match="unknown strategy"):
        get_strategy(name)


def test_multi_worker_single_worker_cluster_trains():
    with socket.socket() as sock:  # a free local port for the one-worker cluster
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps({"cluster": {"worker": [f"localhost:{port}"]},
                                     "task": {"type": "worker", "index": 0}}))
    code = textwrap.dedent("""
        import keras, numpy as np, tensorflow as tf
        from tfbdl.train import Trainer, get_strategy, is_chief
        s = get_strategy("multi-worker")
        assert isinstance(s, tf.distribute.MultiWorkerMirroredStrategy) and is_chief(s)
        x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        with s.scope():
            m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
        rows = Trainer(m, lambda: keras.optimizers.SGD(0.5), strategy=s, micro_batches=2).fit(
            (x, y), 2, seed=0, batch_size=8, verbose=False)
        assert len(rows) == 2 and rows[1]["train_loss"] < rows[0]["train_loss"], rows
        print("OK")
    """)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]
