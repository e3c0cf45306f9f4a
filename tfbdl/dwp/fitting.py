"""Fitting a Bayesian network in checkpointed blocks of epochs, and the accuracy table over splits.

The deep weight prior release trains each Bayesian network 10,000 epochs of one full batch. A
checkpoint per epoch would cost more than the step, so :func:`fit_bnn_blocks` runs ``block`` data
epochs per trainer epoch (every data epoch in its own ``(seed, epoch)`` order) and checkpoints
once a block; the learning rate still follows the release's ``lr_linear`` per data epoch. Like
:func:`tfbdl.dwp.bnn.fit_bnn` it minimises the negative ELBO ``mean NLL + KL / N`` with
:func:`tfbdl.dwp.bnn.reference_adam`.

Importing this module loads only numpy; TensorFlow is imported when a network is fitted.
"""

from __future__ import annotations

import numpy as np

from tfbdl.validate import integer, positive_number

__all__ = ["KLLog", "accuracy_table", "block_batches", "checkpoint_block", "elbo_per_example_loss", "fit_bnn_blocks"]


def checkpoint_block(epochs: int, wanted: int) -> int:
    """The largest divisor of ``epochs`` that is at most ``wanted`` (epochs per checkpoint)."""
    for block in range(max(1, min(wanted, epochs)), 0, -1):
        if epochs % block == 0:
            return block
    return 1


def block_batches(x, y, batch_size: int, block: int, seed: int, trainer_epoch: int):
    """The mini-batches ``(x [b, ...], y [b])`` of ``block`` passes over ``(x [N, ...], y [N])``.

    Pass ``p`` of trainer epoch ``e`` is data epoch ``e * block + p``, ordered by
    ``np.random.default_rng([seed, e * block + p])``; the last batch of a pass may be short.
    """
    n = y.size
    for p in range(block):
        order = np.random.default_rng([seed, trainer_epoch * block + p]).permutation(n)
        for start in range(0, n, batch_size):
            chunk = order[start:start + batch_size]
            yield x[chunk], y[chunk]


class KLLog:
    """Trainer callback: the summed prior term at the end of each (trainer) epoch, as ``kl``.

    A fixed-seed estimate (stateless seed ``[seed, epoch + 1]``), so a resumed run logs the same
    values as an uninterrupted one.
    """

    def __init__(self, layers, seed: int):
        self.layers, self.seed = layers, seed

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict:
        from tfbdl.dwp.bnn import kl_total
        from tfbdl.seeding import stateless_seed

        return {"kl": float(kl_total(self.layers, stateless_seed(self.seed, epoch + 1)).numpy())}


def elbo_per_example_loss(layers, num_train: int):
    """``loss(labels [b], logits [b, C]) -> [b]``: each example's NLL plus ``KL / num_train`` (the
    batch mean is the negative ELBO per training example). The KL is drawn from the layers' own
    seed generators."""
    import tensorflow as tf

    from tfbdl.dwp.bnn import kl_total

    def per_example_loss(labels, logits):
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int64),
                                                             logits=tf.cast(logits, tf.float32))
        return nll + kl_total(layers) / num_train

    return per_example_loss


def fit_bnn_blocks(model, x, y, *, epochs: int, block: int, batch_size: int, learning_rate: float, seed: int,
                   run_dir=None, name: str = "bnn", verbose: bool = False) -> list[dict]:
    """Minimise the negative ELBO of ``model`` on ``(x [N, ...], y [N])`` for ``epochs`` data epochs.

    Args:
        model: a built network with Bayesian layers (:func:`tfbdl.dwp.bnn.bayesian_fconv`), trained in place.
        x, y: float inputs and integer labels; ``N`` is the ELBO's number of training examples.
        epochs: data epochs (passes over ``x``).
        block: wanted data epochs per checkpoint; the largest divisor of ``epochs`` not above it is used
            (:func:`checkpoint_block`).
        batch_size: examples per step (a pass of ``N <= batch_size`` examples is one step).
        learning_rate: Adam's initial rate, decayed per step as ``lr * (1 - floor(e) / epochs)`` in data
            epoch ``e`` (:func:`tfbdl.train.schedules.linear_schedule`).
        seed: fixes the data order of every pass and the KL log's draws.
        run_dir: a :class:`tfbdl.io.RunDir`; each block is checkpointed under ``checkpoints/<name>/`` and a
            rerun resumes after the last finished block.

    Returns:
        One row per block (trainer epoch): ``epoch``, ``lr``, ``train_loss``, ``train_accuracy``,
        ``seconds`` and ``kl`` (the prior term at the block's end).
    """
    from tfbdl.dwp.bnn import bayes_layers, reference_adam
    from tfbdl.train.loop import Trainer
    from tfbdl.train.schedules import linear_schedule

    epochs = integer(epochs, "epochs", 1)
    batch_size = integer(batch_size, "batch_size", 1)
    learning_rate = positive_number(learning_rate, "learning_rate")
    block = checkpoint_block(epochs, integer(block, "block", 1))
    num_train = int(y.size)
    layers = bayes_layers(model)
    steps_per_pass = -(-num_train // batch_size)
    trainer = Trainer(model, lambda: reference_adam(learning_rate, num_train),
                      loss=elbo_per_example_loss(layers, num_train))
    return trainer.fit(lambda e: block_batches(x, y, batch_size, block, seed, e), epochs // block,
                       run_dir=run_dir, seed=seed, name=name, lr_per_step=True, steps_per_epoch=block * steps_per_pass,
                       lr_schedule=lambda t: linear_schedule(t * block, learning_rate, epochs),
                       callbacks=[KLLog(layers, seed)], verbose=verbose)


def accuracy_table(results: list[dict], priors, sizes) -> list[dict]:
    """Per-run results ``{prior, examples, split, accuracy}`` -> one row per ``(prior, size)``:
    ``{prior, examples, accuracy_mean, accuracy_std, accuracies}`` (accuracies in split order; std
    is the sample std over splits, None for one split)."""
    rows = []
    for prior in priors:
        for size in sizes:
            values = [r["accuracy"] for r in sorted(results, key=lambda r: r["split"])
                      if r["prior"] == prior and r["examples"] == size]
            rows.append({"prior": prior, "examples": size, "accuracy_mean": float(np.mean(values)),
                         "accuracy_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                         "accuracies": [float(v) for v in values]})
    return rows
