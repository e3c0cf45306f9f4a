"""Adaptive micro-batching: accumulated gradients equal full-batch ones; the OOM retry path."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl.errors import InvalidOptionError
from tfbdl.train.oom import (AdaptiveMicroBatchTrainer, OutOfMemory, estimate_micro_batch, fail_above,
                             model_memory_bytes)


def small_cnn(batch_norm: bool, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=not batch_norm)(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def data(n=24, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, n).astype(np.int64)


def trainer(model, **kwargs):
    return AdaptiveMicroBatchTrainer(model, lambda: keras.optimizers.SGD(0.1, momentum=0.9), verbose=False, **kwargs)


def full_batch_gradient(model, x, y):
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize("micro", [24, 8, 5, 1])
def test_accumulated_gradients_equal_the_full_batch_gradient(micro):
    x, y = data()
    model = small_cnn(batch_norm=False)
    model(x[:1])
    expected = full_batch_gradient(model, x, y)
    grads, loss_sum, correct = trainer(model).accumulated_gradients(x, y, micro)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-6)
    assert 0 <= float(correct) <= 24 and float(loss_sum) > 0


def test_with_batch_norm_micro_batches_normalise_separately():
    """With batch norm the accumulated gradient is the sum of each micro-batch's own gradient
    (each normalised by its own statistics), which differs from the full-batch gradient."""
    x, y = data()
    model = small_cnn(batch_norm=True)
    model(x[:1])
    t = trainer(model)
    full = full_batch_gradient(model, x, y)
    whole, _, _ = t.accumulated_gradients(x, y, 24)
    for g, e in zip(whole, full):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-6)
    micro, _, _ = t.accumulated_gradients(x, y, 8)
    parts = [full_batch_gradient(model, x[i:i + 8], y[i:i + 8]) for i in (0, 8, 16)]
    for k, g in enumerate(micro):
        np.testing.assert_allclose(g.numpy(), sum(p[k] for p in parts) / 3, rtol=1e-5, atol=1e-6)
    conv_kernel = 0
    assert np.abs(micro[conv_kernel].numpy() - full[conv_kernel]).max() > 1e-4


def _weights(model):
    return [v.numpy().copy() for v in model.variables]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_oom_halves_the_micro_batch_and_gives_the_same_update(batch_norm):
    """The halving bookkeeping (32 -> 16 -> 8, kept afterwards, logged). ``fail_above`` refuses
    the first micro-batch of each failed try, so nothing of those tries ran; the restore after a
    micro-batch has run is tested in ``test_oom_after_a_micro_batch_ran_restores_...`` below."""
    x, y = data(32)
    reference = small_cnn(batch_norm)
    ref_trainer = trainer(reference, micro_batch=8)
    ref_trainer.fit((x, y), 2, batch_size=32, seed=0, verbose=False)

    model = small_cnn(batch_norm)
    t = trainer(model, micro_batch=32, memory_probe=fail_above(8))
    history = t.fit((x, y), 2, batch_size=32, seed=0, verbose=False)
    assert t.micro_batch == 8 and t.oom_retries == 2  # 32 -> 16 -> 8 on the first step, then kept
    assert [r["micro_batch"] for r in history] == [8, 8] and history[-1]["oom_retries"] == 2
    # same weights and (with batch norm) the same moving statistics as micro-batches of 8 from the start
    for a, b in zip(_weights(model), _weights(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert history[-1]["train_loss"] == pytest.approx(ref_trainer._history[-1]["train_loss"], rel=1e-6)


def test_oom_at_the_minimum_is_a_named_error():
    x, y = data(8)
    t = trainer(small_cnn(False), micro_batch=4, min_micro_batch=2, memory_probe=fail_above(1))
    with pytest.raises(OutOfMemory, match="micro-batches of 2"):
        t.fit((x, y), 1, batch_size=8, seed=0, verbose=False)


def test_estimate_is_the_largest_halving_that_fits_the_budget():
    model = small_cnn(False)
    model(np.zeros((1, 8, 8, 1), np.float32))
    params, acts = model_memory_bytes(model)
    assert params == 4 * (3 * 3 * 1 * 4 + 4 + 8 * 8 * 4 * 3 + 3)
    assert acts == 4 * (64 + 3 * 256 + 3)  # input, conv, relu, flatten, dense
    assert estimate_micro_batch(model, 128, memory_budget=10 ** 9) == 128
    budget = 4 * params + 2 * 3.0 * 20 * acts  # fits 20 examples -> 16 (128 / 2**3)
    assert estimate_micro_batch(model, 128, memory_budget=budget) == 16
    assert estimate_micro_batch(model, 128, memory_budget=1) == 1
    t = trainer(small_cnn(False), memory_budget=budget)
    x, y = data(128)
    t.fit((x, y), 1, batch_size=128, seed=0, verbose=False)
    assert t.micro_batch == 16


def test_bad_options():
    with pytest.raises(InvalidOptionError):
        trainer(small_cnn(False), micro_batch=0)


# --------------------------------------------------------------------------- OOM in the middle of a step


def bn_dropout_cnn(seed: int = 0) -> keras.Model:
    """Conv -> BatchNorm -> ReLU -> Dropout -> Dense: a step changes the batch-norm moving statistics
    and advances Dropout's seed generator once per micro-batch, before the optimizer step."""
    keras.utils.set_random_seed(seed)  # also fixes Dropout's seed-generator start (drawn at construction)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


class FailsMidStep(AdaptiveMicroBatchTrainer):
    """Raises ``ResourceExhaustedError`` once, at the ``fail_at``-th micro-batch of the run (1-based).

    ``when="before"``: the memory probe raises before that micro-batch runs, so only the earlier
    micro-batches of the step have run. ``when="after"``: that micro-batch's compiled forward and
    backward pass runs (and updates the batch-norm statistics and the seed generator) and the error
    is raised before its gradients are added, as an OOM late in the backward pass would.
    ``dirty`` holds ``(before, at_failure)``: the non-trainable variables at the start of the
    failing step and at the moment of the failure.
    """

    def __init__(self, *args, fail_at: int, when: str, **kwargs):
        super().__init__(*args, memory_probe=self._probe, **kwargs)
        self.fail_at, self.when = fail_at, when
        self.calls = 0
        self.dirty = None
        self._step_start = None

    def _state(self):
        return [v.numpy().copy() for v in self.model.non_trainable_variables]

    def train_step(self, x, y):
        self._step_start = self._state()
        return super().train_step(x, y)

    def _fail(self, size):
        self.dirty = (self._step_start, self._state())
        raise tf.errors.ResourceExhaustedError(None, None,
                                               f"injected OOM at micro-batch {self.calls} ({size})")

    def _probe(self, size):
        self.calls += 1
        if self.calls == self.fail_at and self.when == "before":
            self._fail(size)

    def _make_train_fn(self):
        step = super()._make_train_fn()
        compiled = self._grad_fn

        def grad_fn(x, y, n_total):
            out = compiled(x, y, n_total)
            if self.calls == self.fail_at and self.when == "after" and self.dirty is None:
                self._fail(int(tf.shape(y)[0]))
            return out

        self._grad_fn = grad_fn
        return step


def _sgd():
    return keras.optimizers.SGD(0.1, momentum=0.9)


def _assert_same_state(model, opt, ref_model, ref_opt):
    """Every model variable (weights, moving statistics, seed-generator states) and every optimizer
    variable bitwise equal, matched by position (the two models are built the same way)."""
    for kind, got, want in (("model", model.variables, ref_model.variables),
                            ("optimizer", opt.variables, ref_opt.variables)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{kind} variable {a.path}")


@pytest.mark.parametrize("when", ["before", "after"])
def test_oom_after_a_micro_batch_ran_restores_batch_norm_and_dropout_state(when):
    """The first step (32 examples, micro-batches of 16) fails at its 2nd micro-batch, after the 1st
    (and with ``when="after"`` the 2nd too) has updated the batch-norm moving statistics and
    advanced Dropout's seed generator. The retried step with micro-batches of 8 must leave every
    model and optimizer variable bitwise equal to a run that used micro-batches of 8 from the start
    on the same data and seeds."""
    x, y = data(32)
    reference = bn_dropout_cnn()
    ref = AdaptiveMicroBatchTrainer(reference, _sgd, micro_batch=8, verbose=False)
    model = bn_dropout_cnn()
    t = FailsMidStep(model, _sgd, micro_batch=16, fail_at=2, when=when, verbose=False)
    paths = [v.path for v in model.non_trainable_variables]
    assert any("moving_mean" in p for p in paths) and any("moving_variance" in p for p in paths)
    assert any("seed_generator" in p for p in paths)

    ref_rows = ref.fit((x, y), 1, batch_size=32, seed=0, verbose=False)
    rows = t.fit((x, y), 1, batch_size=32, seed=0, verbose=False)

    # the failure really happened mid-step, with every piece of non-trainable state already changed
    assert t.dirty is not None and t.oom_retries == 1 and t.micro_batch == 8
    start, at_failure = t.dirty
    for p, a, b in zip(paths, start, at_failure):
        assert not np.array_equal(a, b), f"{p} was not changed before the injected failure"
    # 1 (ran) + 1 (failed) + 4 (retried at 8) micro-batches, one optimizer step
    assert t.calls == 6 and t.global_step == ref.global_step == 1
    assert int(t.optimizer.iterations.numpy()) == 1
    _assert_same_state(model, t.optimizer, reference, ref.optimizer)
    assert rows[-1]["train_loss"] == ref_rows[-1]["train_loss"]
    assert rows[-1]["train_accuracy"] == ref_rows[-1]["train_accuracy"]
    assert rows[-1]["micro_batch"] == 8 and rows[-1]["oom_retries"] == 1

    # the smaller size is kept: a second epoch (no failure) stays equal to the reference
    ref.fit((x, y), 2, batch_size=32, seed=0, verbose=False)
    t.fit((x, y), 2, batch_size=32, seed=0, verbose=False)
    assert t.calls == 10 and t.oom_retries == 1 and t.global_step == ref.global_step == 2
    _assert_same_state(model, t.optimizer, reference, ref.optimizer)
