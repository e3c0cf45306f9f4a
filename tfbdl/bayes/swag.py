"""SWA and SWAG (Maddox et al. 2019): a Gaussian over weights from the SGD trajectory.

Snapshots θ_i of a model's trainable weights are collected (once per epoch, or every c steps)
after ``swag_start`` at a constant learning rate. SWAG keeps their running first and second
moments (a diagonal covariance) and the deviations ``θ_i - θ̄_i`` of the last K snapshots (a
low-rank covariance). A sample is, as in the reference implementation,

    θ = θ̄ + sqrt(scale) * (Σ_diag^½ z1 + D z2 / sqrt(K - 1)),    z1 ~ N(0, I_d), z2 ~ N(0, I_K)

which at the default ``scale = 0.5`` is the paper's θ̄ + Σ_diag^½ z1 / √2 + D z2 / √(2(K-1)).
SWA is the mean θ̄ alone. State lives in tf.Variables on the model's device, so collecting costs
one pass over the weights; :meth:`SWAG.state` / :meth:`SWAG.load_state` checkpoint it.
:meth:`SWAG.as_distribution` gives the same Gaussian as a ``tfp.distributions`` value (diagonal
plus low rank, never a dense D x D matrix). Collection runs under the project's Trainer
(:class:`SWAGCollector`) or a plain ``keras.Model.fit`` (:class:`SWAGCallback`, the same rule).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn.utils import softmax_in_batches

__all__ = ["SWAG", "SWAGCallback", "SWAGCollector", "VAR_CLAMP", "assign_flat", "flatten", "predict_swag",
           "refresh_batch_norm"]

VAR_CLAMP = 1e-30  # the smallest variance kept (as the original SWAG code)


def flatten(variables) -> tf.Tensor:
    """The values of ``variables`` as one vector [D]."""
    return tf.concat([tf.reshape(v, [-1]) for v in variables], axis=0)


def assign_flat(variables, vector) -> None:
    """Write a vector [D] back into ``variables`` (inverse of :func:`flatten`)."""
    offset = 0
    for v in variables:
        size = int(np.prod(v.shape))
        v.assign(tf.cast(tf.reshape(vector[offset:offset + size], v.shape), v.dtype))
        offset += size
    if offset != int(vector.shape[0]):
        raise ShapeError(f"a vector of {vector.shape[0]} values does not fit variables of {offset} values")


class SWAG(tf.Module):
    """Running SWAG moments of ``variables`` (a model's trainable weights).

    max_rank: K, the number of most recent deviations kept (0 gives SWAG-diagonal).
    dtype: of the stored moments (float32 like the reference; float64 for exact tests).
    """

    def __init__(self, variables, *, max_rank: int = 20, dtype=tf.float32, name: str | None = None):
        super().__init__(name=name)
        if int(max_rank) < 0:
            raise InvalidOptionError(f"max_rank must be >= 0, got {max_rank}")
        self.variables_ = list(variables)
        if not self.variables_:
            raise InvalidOptionError("SWAG needs at least one variable to track")
        size = sum(int(np.prod(v.shape)) for v in self.variables_)
        self.max_rank = int(max_rank)
        self.dtype = tf.as_dtype(dtype)
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")
        self.mean = tf.Variable(tf.zeros([size], self.dtype), trainable=False, name="mean")
        self.sq_mean = tf.Variable(tf.zeros([size], self.dtype), trainable=False, name="sq_mean")
        self.deviations = tf.Variable(tf.zeros([max(self.max_rank, 1), size], self.dtype), trainable=False,
                                      name="deviations")

    @property
    def num_parameters(self) -> int:
        return int(self.mean.shape[0])

    @tf.function
    def collect(self) -> None:
        """Add the variables' current values as a snapshot."""
        w = tf.cast(flatten(self.variables_), self.dtype)
        n = tf.cast(self.count, self.dtype)
        self.mean.assign(self.mean * (n / (n + 1)) + w / (n + 1))
        self.sq_mean.assign(self.sq_mean * (n / (n + 1)) + tf.square(w) / (n + 1))
        if self.max_rank > 0:
            slot = tf.math.floormod(self.count, self.max_rank)
            self.deviations.scatter_nd_update([[slot]], [w - self.mean])
        self.count.assign_add(1)

    @property
    def variance(self) -> tf.Tensor:
        """Diagonal variance [D]: E[θ²] - E[θ]², clamped below at VAR_CLAMP."""
        return tf.maximum(self.sq_mean - tf.square(self.mean), VAR_CLAMP)

    def deviation_matrix(self) -> tf.Tensor:
        """The kept deviations [k, D], oldest first (k = min(count, K))."""
        count = int(self.count.numpy())
        k = min(count, self.max_rank)
        if k == 0:
            return tf.zeros([0, self.num_parameters], self.dtype)
        order = [(count - k + i) % self.max_rank for i in range(k)]
        return tf.gather(self.deviations, order)

    def sample(self, seed: int, *, scale: float = 0.5, diagonal_only: bool = False) -> tf.Tensor:
        """One weight vector [D] from the SWAG Gaussian (see the module docstring)."""
        count = int(self.count.numpy())
        if count == 0:
            raise InvalidOptionError("SWAG has collected no snapshot yet; collect before sampling")
        seeds = tf.random.split(tf.constant([seed, 0], dtype=tf.int64), 2)
        z1 = tf.random.stateless_normal([self.num_parameters], seeds[0], dtype=self.dtype)
        noise = tf.sqrt(self.variance) * z1
        deviations = self.deviation_matrix()
        k = int(deviations.shape[0])
        if not diagonal_only and k >= 2:
            z2 = tf.random.stateless_normal([k], seeds[1], dtype=self.dtype)
            noise += tf.linalg.matvec(deviations, z2, transpose_a=True) / np.sqrt(k - 1)
        return self.mean + np.sqrt(scale) * noise

    def sample_batch(self, seed: int, num_samples: int, *, scale: float = 0.5,
                     diagonal_only: bool = False) -> tf.Tensor:
        """``num_samples`` weight vectors [S, D] at once (same distribution as :meth:`sample`)."""
        if int(self.count.numpy()) == 0:
            raise InvalidOptionError("SWAG has collected no snapshot yet; collect before sampling")
        seeds = tf.random.split(tf.constant([seed, 1], dtype=tf.int64), 2)
        z1 = tf.random.stateless_normal([num_samples, self.num_parameters], seeds[0], dtype=self.dtype)
        noise = tf.sqrt(self.variance)[None, :] * z1
        deviations = self.deviation_matrix()
        k = int(deviations.shape[0])
        if not diagonal_only and k >= 2:
            z2 = tf.random.stateless_normal([num_samples, k], seeds[1], dtype=self.dtype)
            noise += tf.matmul(z2, deviations) / np.sqrt(k - 1)
        return self.mean[None, :] + np.sqrt(scale) * noise

    def covariance(self, *, scale: float = 0.5, diagonal_only: bool = False) -> np.ndarray:
        """The covariance [D, D] that :meth:`sample` draws from (for small models and tests)."""
        cov = np.diag(self.variance.numpy())
        deviations = self.deviation_matrix().numpy()
        if not diagonal_only and deviations.shape[0] >= 2:
            cov = cov + deviations.T @ deviations / (deviations.shape[0] - 1)
        return scale * cov

    def as_distribution(self, scale: float = 0.5, diagonal_only: bool = False):
        """The SWAG Gaussian as a ``tfp.distributions.Distribution`` over the flattened weights [D].

        Its covariance is :meth:`covariance`'s, ``scale * (diag(σ²) + D Dᵀ / (K - 1))`` (the first
        term only with ``diagonal_only``), the law :meth:`sample` draws from, with σ² floored at
        ``(eps * |mean|)²`` (eps of the moments' dtype): a weight that never moved has no variance
        a sample in that dtype could show, and without the floor its log_prob would be rounding noise. The low-rank form is
        ``MultivariateNormalDiagPlusLowRankCovariance`` over a ``LinearOperatorLowRankUpdate``:
        ``sample`` costs O(D K), ``log_prob`` uses the Woodbury identity and the matrix determinant
        lemma (a K x K capacitance matrix), so no D x D matrix is formed except by an explicit
        ``covariance()`` call (for small models). The moments are copied: later collections do not
        change a distribution already built.

        Raises InvalidOptionError before any snapshot, for a non-positive ``scale``, and (unless
        ``diagonal_only``) when fewer than 2 deviations are kept (``max_rank < 2`` or fewer than 2
        snapshots), where :meth:`sample` would silently fall back to the diagonal.
        """
        import tensorflow_probability as tfp

        tfd = tfp.distributions
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
                or not np.isfinite(scale) or scale <= 0:
            raise InvalidOptionError(f"scale must be a positive finite number, got {scale!r}")
        count = int(self.count.numpy())
        if count == 0:
            raise InvalidOptionError("SWAG has collected no snapshot yet; collect (train past start_epoch) "
                                     "before building its distribution")
        loc = tf.identity(self.mean)
        # A weight that never moved has variance VAR_CLAMP; below the float resolution of its mean a
        # sample in this dtype cannot move either, and log_prob of such samples is rounding noise
        # (float32: +-1e15). So the variance is floored at (eps * |mean|)^2, which changes nothing
        # where the dtype can resolve it (float64: every variance above ~5e-33 |mean|^2).
        resolution = tf.square(tf.constant(np.finfo(self.dtype.as_numpy_dtype).eps, self.dtype) * tf.abs(loc))
        variance = float(scale) * tf.maximum(self.variance, resolution)
        if diagonal_only:
            return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.sqrt(variance), name="SWAGDiagonal")
        if self.max_rank < 2:
            raise InvalidOptionError(
                f"this SWAG keeps max_rank={self.max_rank} deviations, and the low-rank covariance needs at "
                "least 2: pass diagonal_only=True, or collect with max_rank >= 2")
        deviations = self.deviation_matrix()
        k = int(deviations.shape[0])
        if k < 2:
            raise InvalidOptionError(
                f"SWAG has collected {count} snapshot(s) and the low-rank covariance needs at least 2 "
                "deviations: collect more snapshots (train longer past start_epoch), or pass diagonal_only=True")
        factor = tf.transpose(deviations) * tf.constant(np.sqrt(float(scale) / (k - 1)), self.dtype)  # [D, K]
        return tfd.MultivariateNormalDiagPlusLowRankCovariance(loc=loc, cov_diag_factor=variance,
                                                               cov_perturb_factor=factor, name="SWAG")

    def assign_mean(self) -> None:
        """Set the variables to the SWA solution θ̄."""
        assign_flat(self.variables_, self.mean)

    def assign_sample(self, seed: int, **options) -> None:
        """Set the variables to one SWAG sample."""
        assign_flat(self.variables_, self.sample(seed, **options))

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume collecting, as numpy arrays."""
        return {"count": self.count.numpy(), "mean": self.mean.numpy(), "sq_mean": self.sq_mean.numpy(),
                "deviations": self.deviations.numpy()}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (shapes must match this model and rank)."""
        for name in ("mean", "sq_mean", "deviations"):
            target = getattr(self, name)
            if tuple(np.shape(state[name])) != tuple(target.shape):
                raise ShapeError(f"SWAG state '{name}' has shape {np.shape(state[name])}, this SWAG "
                                 f"{tuple(target.shape)}: another model or max_rank")
            target.assign(np.asarray(state[name], dtype=self.dtype.as_numpy_dtype))
        self.count.assign(int(state["count"]))


def refresh_batch_norm(model, batches) -> int:
    """Recompute the moving statistics of every BatchNormalization layer of ``model`` as the
    plain average over ``batches`` (iterable of input arrays) of each batch's statistics, as after
    SWA or a SWAG sample, whose weights never produced the stored statistics. Returns the number
    of batches used.

    Each batch runs through one compiled training-mode forward pass with momentum 0 (so the
    moving statistics hold that batch's), and the averages are accumulated outside the graph.
    """
    from tfbdl.nn import batch_norm_layers
    from tfbdl.nn.utils import cached_function

    layers = batch_norm_layers(model)
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        forward = cached_function(model, "_tfbdl_bn_forward", lambda x: model(x, training=True))
        for x in batches:
            forward(tf.convert_to_tensor(x))
            for total, layer in zip(sums, layers):
                total[0] += layer.moving_mean.numpy()
                total[1] += layer.moving_variance.numpy()
            count += 1
        for (mean, var), layer in zip(sums, layers):
            if count:
                layer.moving_mean.assign((mean / count).astype(layer.moving_mean.dtype))
                layer.moving_variance.assign((var / count).astype(layer.moving_variance.dtype))
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return count


def predict_swag(model, posteriors, x, *, samples_per_model: int, seed: int, scale: float = 0.5,
                 diagonal_only: bool = False, bn_batches=None, batch_size: int = 512) -> np.ndarray:
    """Bayesian model average [N, C] of softmax outputs over SWAG samples.

    ``posteriors`` is one SWAG (SWAG) or several (MultiSWAG: samples pooled from each, every
    posterior tracking the variables of ``model``'s weights for its own run). ``bn_batches``
    (a callable returning an iterable of inputs) refreshes batch norm after each sample. The
    model's weights are restored afterwards.
    """
    posteriors = posteriors if isinstance(posteriors, (list, tuple)) else [posteriors]
    if samples_per_model < 1:
        raise InvalidOptionError(f"samples_per_model must be >= 1, got {samples_per_model}")
    original = [v.numpy() for v in model.trainable_variables]
    bn_state = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in _bn_layers(model)]
    total = None
    try:
        for index, posterior in enumerate(posteriors):
            for draw in range(samples_per_model):
                posterior.assign_sample(seed * 1_000_003 + index * 10_007 + draw, scale=scale,
                                        diagonal_only=diagonal_only)
                if bn_batches is not None:
                    refresh_batch_norm(model, bn_batches())
                probs = softmax_in_batches(model, x, batch_size)
                total = probs if total is None else total + probs
    finally:
        for v, value in zip(model.trainable_variables, original):
            v.assign(value)
        for layer, (mean, var) in zip(_bn_layers(model), bn_state):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
    return total / (len(posteriors) * samples_per_model)


def _bn_layers(model):
    from tfbdl.nn import batch_norm_layers

    return batch_norm_layers(model)


def _collect_rule(start_epoch, every_steps) -> tuple[int, int | None]:
    """Checked ``(start_epoch, every_steps)`` of a collection rule (shared by both callbacks)."""
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, (int, np.integer)) or int(start_epoch) < 0:
        raise InvalidOptionError(f"start_epoch must be an integer >= 0 (0-based epoch index), got {start_epoch!r}")
    if every_steps is not None and (isinstance(every_steps, bool) or not isinstance(every_steps, (int, np.integer))
                                    or int(every_steps) < 1):
        raise InvalidOptionError(f"every_steps must be >= 1 (or None for once per epoch), got {every_steps}")
    return int(start_epoch), None if every_steps is None else int(every_steps)


class SWAGCollector:
    """Trainer callback: collect a SWAG snapshot at the end of every epoch from ``start_epoch``
    (0-based) on, or, with ``every_steps = c``, every c optimizer steps from that epoch on; its
    moments are saved with each epoch checkpoint and restored on resume.

    The rule lives in :meth:`after_step` and :meth:`after_epoch`; :class:`SWAGCallback` applies
    the same object to ``keras.Model.fit``."""

    state_key = "swag"

    def __init__(self, swag: SWAG, start_epoch: int, every_steps: int | None = None):
        self.swag = swag
        self.start_epoch, self.every_steps = _collect_rule(start_epoch, every_steps)

    def after_step(self, epoch: int, step: int) -> bool:
        """Collect if optimizer step ``step`` (counted from 1 over the run), taken during epoch
        index ``epoch``, is one to keep; True if it collected."""
        if self.every_steps and epoch >= self.start_epoch and step % self.every_steps == 0:
            self.swag.collect()
            return True
        return False

    def after_epoch(self, epoch: int) -> bool:
        """Collect if the end of epoch index ``epoch`` is one to keep; True if it collected."""
        if not self.every_steps and epoch >= self.start_epoch:
            self.swag.collect()
            return True
        return False

    def on_step_end(self, trainer, step) -> None:
        # During epoch e's steps trainer.epoch is e; step counts optimizer steps from 1 over the run.
        self.after_step(trainer.epoch, step)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict:
        self.after_epoch(epoch)
        return {"swag_snapshots": int(self.swag.count.numpy())}

    def state(self) -> dict:
        return self.swag.state()

    def load_state(self, state: dict) -> None:
        self.swag.load_state(state)


class SWAGCallback(keras.callbacks.Callback):
    """Collect SWA/SWAG moments during a plain ``keras.Model.fit``.

    The rule is :class:`SWAGCollector`'s (the same object does the collecting): a snapshot at the
    end of every epoch from ``start_epoch`` (0-based, as Keras counts epochs) on, or with
    ``every_steps = c`` after every optimizer step whose number (``model.optimizer.iterations``,
    counted from 1 over the optimizer's life) is a multiple of c, from that epoch on. The
    :class:`SWAG` (``.swag``) is built on the model's trainable weights when training begins
    (``dtype`` None: the weights' dtype), or pass one in with ``swag=``; a later ``fit`` with the
    same callback keeps collecting into it.
    """

    def __init__(self, start_epoch: int, max_rank: int = 20, every_steps: int | None = None, *,
                 dtype=None, swag: SWAG | None = None):
        super().__init__()
        self.start_epoch, self.every_steps = _collect_rule(start_epoch, every_steps)
        if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or int(max_rank) < 0:
            raise InvalidOptionError(f"max_rank must be an integer >= 0, got {max_rank!r}")
        if swag is not None and not isinstance(swag, SWAG):
            raise InvalidOptionError(f"swag must be a tfbdl.bayes.SWAG, got {type(swag).__name__}")
        self.max_rank = int(swag.max_rank if swag is not None else max_rank)
        self.dtype = None if dtype is None else tf.as_dtype(dtype)
        self.swag = swag
        self.collector = None if swag is None else SWAGCollector(swag, self.start_epoch, self.every_steps)
        self._epoch = 0

    def on_train_begin(self, logs=None):
        variables = list(self.model.trainable_variables)
        if not variables:
            raise InvalidOptionError(f"model {self.model.name!r} has no trainable weights for SWAG to track")
        if self.swag is None:
            dtype = self.dtype or tf.as_dtype(variables[0].dtype)
            self.swag = SWAG(variables, max_rank=self.max_rank, dtype=dtype)
            self.collector = SWAGCollector(self.swag, self.start_epoch, self.every_steps)
        elif len(self.swag.variables_) != len(variables) or any(
                a is not b for a, b in zip(self.swag.variables_, variables)):
            raise InvalidOptionError(
                f"this SWAGCallback's SWAG tracks other variables than model {self.model.name!r}'s trainable "
                "weights; use a new SWAGCallback for another model")
        if self.every_steps and int(getattr(self.model, "steps_per_execution", 1) or 1) > 1:
            raise InvalidOptionError(
                "SWAGCallback(every_steps=...) needs a snapshot after single optimizer steps; compile the "
                "model with steps_per_execution=1 (or collect once per epoch with every_steps=None)")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_steps:
            self.collector.after_step(self._epoch, int(self.model.optimizer.iterations.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.collector.after_epoch(int(epoch))
