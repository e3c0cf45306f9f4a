"""The two stages of ``bdl posterior-adaptivity``: prior draws, and one SGLD chain.

Prior draws redraw every trainable weight from N(0, v I) (:func:`tfbdl.bayes.priors.prior_outputs`;
with batch norm, its statistics are recomputed on training images for each draw, since stale
ones would not normalise anything and the outputs would overflow).

A chain is the reference's (``experiments/priors/cifar_posterior_predictions.ipynb``): plain SGD
on ``mean loss + |w|^2 / (2 v N)`` with ``sqrt(2 lr / N)`` Gaussian noise added after each step
(its ``SGLD`` optimizer with ``noise_factor = 1 / sqrt(N)``: Langevin dynamics on the posterior at
temperature 1), the learning rate cosine-annealed to 0, optionally after Adam warm-up steps. Both
phases run in :class:`tfbdl.train.loop.Trainer` on a chain sub-run, in blocks of steps that are
checkpointed, so a rerun resumes; the noise generator's state is checkpointed with them.
"""

from __future__ import annotations

import math
import shutil

import numpy as np

from tfbdl.cli.bdl.prior_presets import AdaptivityPreset

__all__ = ["ChainRunner", "LangevinNoise", "cosine_lr", "drop_checkpoints", "logits_in_batches", "model_options",
           "prior_logits", "step_blocks"]


def logits_in_batches(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """``model(x)`` in inference mode, ``[N, C]`` float64, through one compiled forward pass."""
    import tensorflow as tf

    from tfbdl.nn.utils import cached_function

    forward = cached_function(model, "_tfbdl_logits", lambda xb: model(xb, training=False))
    return np.concatenate([np.asarray(forward(tf.convert_to_tensor(x[i:i + batch_size])), np.float64)
                           for i in range(0, len(x), batch_size)])


def _bn_batches(bn_inputs: np.ndarray, batch_size: int = 256):
    return [bn_inputs[i:i + batch_size] for i in range(0, len(bn_inputs), batch_size)]


def prior_logits(model, x: np.ndarray, bn_inputs: np.ndarray, *, prior_var: float, draws: int,
                 seed: int) -> np.ndarray:
    """Logits ``[draws, N, C]`` of ``model`` on ``x`` for weights drawn from N(0, prior_var I)."""
    from tfbdl.bayes.priors import prior_outputs
    from tfbdl.bayes.swag import refresh_batch_norm
    from tfbdl.nn.utils import batch_norm_layers

    alpha = math.sqrt(prior_var)
    if not batch_norm_layers(model):
        return prior_outputs(model, x, alpha=alpha, num_samples=draws, seed=seed)
    # The same draws as prior_outputs, each followed by a batch-norm refresh.
    variables = list(model.trainable_variables)
    original = [v.numpy() for v in variables]
    rng = np.random.default_rng(seed)
    outputs = []
    try:
        for _ in range(draws):
            for v, value in zip(variables, original):
                v.assign(rng.normal(scale=alpha, size=v.shape).astype(value.dtype))
            refresh_batch_norm(model, _bn_batches(bn_inputs))
            outputs.append(logits_in_batches(model, x))
    finally:
        for v, value in zip(variables, original):
            v.assign(value)
    return np.stack(outputs)


class LangevinNoise:
    """Trainer callback: after every optimizer step, adds ``sqrt(2 lr / N) * xi`` (xi ~ N(0, I),
    lr the step's learning rate) to every trainable weight, from a seeded generator whose state
    is checkpointed with the run. :meth:`restart` sets a new N and seed for the next chain."""

    state_key = "langevin_noise"

    def __init__(self, variables, data_size: int, seed: int):
        import tensorflow as tf

        self.variables = list(variables)
        self.data_size = int(data_size)
        self.generator = tf.random.Generator.from_seed(int(seed))

        @tf.function(reduce_retracing=True)
        def add_noise(scale):
            for v in self.variables:
                v.assign_add(tf.cast(scale, v.dtype) * self.generator.normal(v.shape, dtype=v.dtype))

        self._add_noise = add_noise

    def restart(self, data_size: int, seed: int) -> None:
        """Start a new chain: N = ``data_size``, the generator reseeded with ``seed``."""
        self.data_size = int(data_size)
        self.generator.reset_from_seed(int(seed))

    def on_step_end(self, trainer, step: int) -> None:
        import tensorflow as tf

        lr = float(np.asarray(trainer.optimizer.learning_rate))
        self._add_noise(tf.constant(math.sqrt(2.0 * lr / self.data_size), tf.float32))

    def state(self) -> dict:
        return {"generator": self.generator.state.numpy()}

    def load_state(self, state: dict) -> None:
        self.generator.reset(np.asarray(state["generator"]))


def cosine_lr(lr: float, steps: int, block: int):
    """``epoch -> lr (1 + cos(pi t / steps)) / 2`` at step ``t = epoch * block`` (a fractional
    epoch, as Trainer passes per step, gives the step inside the block)."""
    return lambda epoch: 0.5 * lr * (1.0 + math.cos(math.pi * min(epoch * block, steps) / steps))


def step_blocks(steps: int, checkpoints: int) -> tuple[int, int]:
    """``(blocks, steps per block)``: ``steps`` cut into at most ``checkpoints`` blocks (the last
    may be shorter)."""
    block = math.ceil(steps / max(1, min(checkpoints, steps)))
    return math.ceil(steps / block), block


def _batches(x, y, batch_size: int, steps: int, block: int, seed: int, phase: int):
    """epoch -> the batches of that block of steps: the whole set when it fits in a batch, else
    consecutive slices of seeded permutations (every example once per pass), drawn per block."""
    import tensorflow as tf

    n = y.size
    if n <= batch_size:
        whole = (tf.constant(x), tf.constant(y))
        return lambda epoch: [whole] * (min(steps, (epoch + 1) * block) - epoch * block)

    def epoch_batches(epoch: int):
        count = min(steps, (epoch + 1) * block) - epoch * block
        rng = np.random.default_rng([seed, phase, epoch])
        order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(count * batch_size / n))])
        return [(x[order[i * batch_size:(i + 1) * batch_size]], y[order[i * batch_size:(i + 1) * batch_size]])
                for i in range(count)]

    return epoch_batches


def model_options(preset: AdaptivityPreset) -> dict:
    """The keyword options of :func:`tfbdl.nn.build_model` a preset sets (LeNet widths)."""
    return {name: tuple(value) for name, value in (("conv_widths", preset.conv_widths),
                                                   ("dense_widths", preset.dense_widths)) if value is not None}


class ChainRunner:
    """Runs the chains of one run on one network and its two Trainers (warm-up and Langevin), so
    that their training steps are compiled once; each chain restarts them from its own
    initialisation, optimizer state and noise seed. The prior's term ``|w|^2 / (2 v N)`` depends
    on the chain's N, so it is part of the loss (a variable set per chain), not the Trainers'
    fixed ``weight_decay``: each example's loss is its cross-entropy plus that term, and the
    batch mean is the reference's objective."""

    def __init__(self, preset: AdaptivityPreset, input_shape, num_classes: int):
        import keras
        import tensorflow as tf

        from tfbdl.nn import build_model
        from tfbdl.train.loop import Trainer

        self.preset = preset
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.model = build_model(preset.model, num_classes=num_classes, input_shape=input_shape, seed=0,
                                 **model_options(preset))
        self.decay = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        weights = self.model.trainable_variables

        def loss(y, logits):
            labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            return cross_entropy + self.decay * tf.add_n([tf.reduce_sum(tf.square(w.value)) for w in weights])

        self.warmup = Trainer(self.model, lambda: keras.optimizers.Adam(preset.warmup_lr), loss=loss)
        self.langevin = Trainer(self.model, lambda: keras.optimizers.SGD(preset.sgld_lr), loss=loss)
        self.noise = LangevinNoise(weights, 1, 0)

    def _restart(self, seed: int) -> None:
        """The network at the chain's initialisation, both Trainers at step 0."""
        import keras

        from tfbdl.nn import build_model

        keras.utils.set_random_seed(seed)
        fresh = build_model(self.preset.model, num_classes=self.num_classes, input_shape=self.input_shape,
                            seed=seed, **model_options(self.preset))
        for v, value in zip(self.model.variables, fresh.variables):
            v.assign(value)
        if self.preset.init == "prior":
            rng = np.random.default_rng(seed)
            for v in self.model.trainable_variables:
                v.assign(rng.normal(scale=math.sqrt(self.preset.prior_var), size=v.shape).astype(v.dtype))
        for trainer in (self.warmup, self.langevin):
            trainer.epoch = trainer.global_step = 0
            if trainer.optimizer is not None:
                for v in trainer.optimizer.variables:
                    v.assign(np.zeros(v.shape, v.dtype))

    def run(self, run, data, x_test: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
        """Run one chain in the sub-run ``run`` (resumable) on ``data = (x, y)``; return its last
        sample's test logits ``[N_test, C]`` and ``{"train_objective", "train_accuracy"}`` of its
        last block (the running averages of that block's steps)."""
        from tfbdl.bayes.swag import refresh_batch_norm
        from tfbdl.train.weight_decay import weight_decay_for_prior

        preset = self.preset
        x, y = data
        self._restart(seed)
        self.decay.assign(weight_decay_for_prior(preset.prior_var, y.size))
        history = []
        if preset.warmup_steps:
            blocks, block = step_blocks(preset.warmup_steps, preset.checkpoints)
            history = self.warmup.fit(_batches(x, y, preset.batch_size, preset.warmup_steps, block, seed, 0), blocks,
                                      run_dir=run, seed=seed, steps_per_epoch=block, lr_schedule=preset.warmup_lr,
                                      name="warmup", metrics_file="warmup.csv", verbose=False)
        blocks, block = step_blocks(preset.sgld_steps, preset.checkpoints)
        self.noise.restart(y.size, seed + 1)
        history = self.langevin.fit(_batches(x, y, preset.batch_size, preset.sgld_steps, block, seed, 1), blocks,
                                    run_dir=run, seed=seed, steps_per_epoch=block,
                                    lr_schedule=cosine_lr(preset.sgld_lr, preset.sgld_steps, block), lr_per_step=True,
                                    callbacks=[self.noise], name="sgld", metrics_file="sgld.csv",
                                    verbose=False) or history
        refresh_batch_norm(self.model, _bn_batches(x[:preset.bn_images]))
        last = history[-1]
        return logits_in_batches(self.model, x_test), {"train_objective": float(last["train_loss"]),
                                                       "train_accuracy": float(last["train_accuracy"])}


def drop_checkpoints(run) -> None:
    """Remove a finished chain's checkpoints (its logits are stored; they are never read again)."""
    shutil.rmtree(run.path / "checkpoints", ignore_errors=True)
