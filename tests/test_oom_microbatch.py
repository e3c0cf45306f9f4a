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
    x, y = data(32)
    reference = small_cnn(batch_norm)
    ref_trainer = trainer(reference, micro_batch=8)
    ref_trainer.fit((x, y), 2, batch_size=32, seed=0, verbose=False)

    model = small_cnn(batch_norm)
    t = trainer(model, micro_batch=32, memory_probe=fail_above(8))
    history = t.fit((x, y), 2, batch_size=32, seed=0, verbose=False)
    assert t.micro_batch == 8 and t.oom_retries == 2  # 32 -> 16 -> 8 on the first step, then kept
    assert [r["micro_batch"] for r in history] == [8, 8] and history[-1]["oom_retries"] == 2
    # same weights, and (with batch norm) the same moving statistics: the failed tries left no trace
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
