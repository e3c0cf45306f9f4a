"""Stochastic-gradient Langevin dynamics (Welling & Teh 2011).

Each step moves the parameters along a mini-batch estimate of the gradient of the log posterior,
scaled to the full data set, and adds Gaussian noise whose variance is the step size:

    theta <- theta + (eps_t / 2) * (N * grad mean_{i in batch} log p(y_i | x_i, theta) + grad log p(theta))
                   + sqrt(eps_t * T) * xi,      xi ~ N(0, I)

with a step size ``eps_t = a (b + t)^-gamma`` that decays polynomially (Welling & Teh use
``gamma`` in (0.5, 1]) or any schedule you pass, and a temperature ``T`` (1 is the Bayes
posterior; below 1 a "cold" posterior, as studied in Wilson & Izmailov 2020). The reference
(understandingbdl ``swag/posteriors/sgld.py``) is an optimizer with ``lr`` and a
``noise_factor``; here the step is written on the log density, so ``lr = eps / 2`` per unit of
the summed loss and ``noise_factor = sqrt(T)``.

- :func:`sgld_sample` is the functional core: a log density per data point
  ``log_prob_fn(params, batch)``, a list of initial arrays, a batch iterator; returns thinned
  samples. Noise comes from a seeded ``tf.random.Generator``, so a seed fixes the chain.
- :class:`SGLD` runs it on a Keras model's trainable variables (through ``stateless_call``; the
  model's variables are left untouched) and averages predictions over the samples.

Samples drawn while the step size is still decaying are not equally weighted in Welling &
Teh's estimator; the step sizes are returned so callers can weight them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfbdl.bayes.laplace import Likelihood
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.validate import integer, positive_number

__all__ = ["PolynomialDecay", "SGLD", "SGLDResult", "polynomial_decay", "sgld_sample"]


@dataclasses.dataclass(frozen=True)
class PolynomialDecay:
    """Step size ``a * (b + t) ** -gamma`` at step ``t = 0, 1, ...`` (Welling & Teh 2011)."""

    a: float
    b: float = 1.0
    gamma: float = 0.55

    def __post_init__(self):
        positive_number(self.a, "a")
        if not (isinstance(self.b, numbers.Real) and self.b > 0):
            raise InvalidOptionError(f"b must be positive (the step size at t=0 is a * b^-gamma), got {self.b!r}")
        if not (isinstance(self.gamma, numbers.Real) and 0.0 <= self.gamma <= 1.0):
            raise InvalidOptionError(f"gamma must be in [0, 1] (Welling & Teh: (0.5, 1]), got {self.gamma!r}")

    def __call__(self, t: int) -> float:
        return float(self.a * (self.b + t) ** (-self.gamma))


def polynomial_decay(a: float, b: float = 1.0, gamma: float = 0.55) -> PolynomialDecay:
    """The schedule ``eps_t = a (b + t)^-gamma``; ``gamma = 0`` is a constant step ``a b^0 = a``."""
    return PolynomialDecay(a, b, gamma)


def _schedule(step_size_schedule, data_size: int) -> Callable[[int], float]:
    if step_size_schedule is None:
        # eps ~ 1 / N suits a posterior whose per-example curvature is of order one
        return PolynomialDecay(a=0.1 / data_size, b=1.0, gamma=0.55)
    if isinstance(step_size_schedule, numbers.Real) and not isinstance(step_size_schedule, bool):
        eps = positive_number(step_size_schedule, "step_size_schedule")
        return lambda t: eps
    if callable(step_size_schedule):
        return step_size_schedule
    raise InvalidOptionError(f"step_size_schedule must be a positive number, a callable t -> step size, or None; "
                             f"got {step_size_schedule!r}")


@dataclasses.dataclass
class SGLDResult:
    """Thinned SGLD samples.

    Attributes:
        samples: one array per parameter, ``[num_samples, *param.shape]`` (a single array when
            the initial state was a single array).
        step_sizes: ``[num_samples]`` step size at the step each sample was taken.
        final: the parameters after the last step (same structure as the initial state).
    """

    samples: list[np.ndarray] | np.ndarray
    step_sizes: np.ndarray
    final: list[np.ndarray] | np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.step_sizes.shape[0])


class _Batches:
    """An endless iterator over ``batches``: a tf.data.Dataset is repeated; a re-iterable sequence
    is restarted; a one-shot iterator must last long enough; ``None`` gives ``None`` forever."""

    def __init__(self, batches):
        self._source = batches
        if batches is None:
            self._it = None
        elif isinstance(batches, tf.data.Dataset):
            self._it = iter(batches.repeat())
        else:
            try:
                self._it = iter(batches)
            except TypeError:
                raise InvalidOptionError(f"batches must be an iterable of batches or None, got "
                                         f"{type(batches).__name__}") from None
        self._restartable = batches is None or isinstance(batches, tf.data.Dataset) or iter(batches) is not batches

    def __next__(self):
        if self._it is None:
            return None
        try:
            return next(self._it)
        except StopIteration:
            if not self._restartable:
                raise InvalidOptionError("the batch iterator ran out before num_steps; pass a tf.data.Dataset, "
                                         "a re-iterable sequence, or an endless generator") from None
            self._it = iter(self._source)
            try:
                return next(self._it)
            except StopIteration:
                raise InvalidOptionError("the batch iterable is empty") from None


def sgld_sample(log_prob_fn, init_params, data_size: int, batches=None, num_steps: int = 1000,
                step_size_schedule=None, thinning: int = 1, burn_in: int = 0, seed: int = 0, *,
                temperature: float = 1.0, log_prior_fn=None) -> SGLDResult:
    """Run stochastic-gradient Langevin dynamics and keep thinned samples.

    Args:
        log_prob_fn: ``log_prob_fn(params, batch) -> scalar``, the log density **per data point**
            estimated on a mini-batch: the mean log-likelihood over the batch (plus, if you like,
            ``log p(params) / data_size``). The full-data log posterior is ``data_size`` times its
            full-batch value (plus ``log_prior_fn``). ``params`` is a list of ``tf.Variable``s.
        init_params: the starting point: an array or a list of arrays (their dtype is kept).
        data_size: ``N``, the number of training examples the gradient is scaled to.
        batches: an iterable of batches handed to ``log_prob_fn`` (a ``tf.data.Dataset`` is
            repeated), or ``None`` to call ``log_prob_fn(params, None)`` (full-batch / no data).
        num_steps: total steps, burn-in included.
        step_size_schedule: a number (constant), a callable ``t -> eps_t``, or ``None`` for
            ``polynomial_decay(a=0.1 / data_size, b=1, gamma=0.55)``.
        thinning: keep every ``thinning``-th iterate after burn-in.
        burn_in: steps discarded at the start.
        seed: seeds the ``tf.random.Generator`` of the injected noise.
        temperature: scales the noise variance (posterior ``p^(1/T)``); 1 for the Bayes posterior.
        log_prior_fn: optional ``log_prior_fn(params) -> scalar``, added unscaled.

    Returns:
        :class:`SGLDResult` with ``(num_steps - burn_in) // thinning`` samples.
    """
    data_size = integer(data_size, "data_size", 1)
    num_steps = integer(num_steps, "num_steps", 1)
    thinning = integer(thinning, "thinning", 1)
    burn_in = integer(burn_in, "burn_in", 0)
    temperature = positive_number(temperature, "temperature")
    if burn_in >= num_steps:
        raise InvalidOptionError(f"burn_in ({burn_in}) must be smaller than num_steps ({num_steps})")
    seed = integer(seed, "seed", None)
    schedule = _schedule(step_size_schedule, data_size)
    single = not isinstance(init_params, (list, tuple))
    inits = [init_params] if single else list(init_params)
    if not inits:
        raise ShapeError("init_params must be an array or a non-empty list of arrays")
    params = []
    for i, p in enumerate(inits):
        t = tf.convert_to_tensor(p)
        if not t.dtype.is_floating:
            t = tf.cast(t, tf.float32)
        params.append(tf.Variable(t, name=f"sgld_param_{i}"))
    generator = tf.random.Generator.from_seed(int(seed))
    n = float(data_size)
    temp = temperature

    def drift_and_noise(batch, eps):
        with tf.GradientTape() as tape:
            lp = n * tf.cast(log_prob_fn(params, batch), tf.float64)
            if log_prior_fn is not None:
                lp += tf.cast(log_prior_fn(params), tf.float64)
        grads = tape.gradient(lp, params)
        for i, (v, g) in enumerate(zip(params, grads)):
            if g is None:
                raise InvalidOptionError(f"log_prob_fn does not depend on params[{i}] (its gradient is None)")
            e = tf.cast(eps, v.dtype)
            noise = generator.normal(tf.shape(v), dtype=v.dtype)
            v.assign_add(0.5 * e * tf.convert_to_tensor(g) + tf.sqrt(e * temp) * noise)
        return lp

    @tf.function(reduce_retracing=True)
    def one_step(batch, eps):
        drift_and_noise(batch, eps)

    @tf.function
    def many_steps(eps_vector):  # batches=None: run a block of steps inside one graph call
        for k in tf.range(tf.shape(eps_vector)[0]):
            drift_and_noise(None, eps_vector[k])

    source = _Batches(batches)
    samples = [[] for _ in params]
    step_sizes = []
    t = 0
    while t < num_steps:
        # run up to the next kept iterate (after burn_in + thinning, burn_in + 2 thinning, ... steps)
        target = min(burn_in + thinning * (max(0, t - burn_in) // thinning + 1), num_steps)
        block = [schedule(s) for s in range(t, target)]
        if any(not (math.isfinite(e) and e > 0) for e in block):
            raise InvalidOptionError(f"the step size schedule gave a non-positive or non-finite value in steps {t}..{target - 1}")
        if batches is None:
            many_steps(tf.constant(block, tf.float64))
        else:
            for e in block:
                one_step(next(source), tf.constant(e, tf.float64))
        t = target
        if t > burn_in and (t - burn_in) % thinning == 0:
            for store, v in zip(samples, params):
                store.append(v.numpy())
            step_sizes.append(block[-1])
    for v in params:
        if not np.isfinite(v.numpy()).all():
            raise InvalidOptionError("SGLD diverged (non-finite parameters): lower the step size")
    stacked = [np.stack(s) for s in samples]
    final = [v.numpy() for v in params]
    return SGLDResult(samples=stacked[0] if single else stacked, step_sizes=np.asarray(step_sizes),
                      final=final[0] if single else final)


class SGLD:
    """SGLD over a Keras model's trainable variables.

    The log density is ``mean_batch log p(y | model(x; theta)) + log p(theta) / N`` with an
    isotropic Gaussian prior of precision ``prior_precision`` (weight decay ``prior_precision /
    (2 N)`` per mean loss); the chain starts from the model's current weights. Batch-norm
    statistics and other non-trainable variables stay as they are (inference mode).

    Example::

        sampler = SGLD(model, data_size=len(x_train), prior_precision=1.0,
                       step_size_schedule=polynomial_decay(1e-5, 1.0, 0.55), seed=0)
        samples = sampler.run(train_ds, num_steps=5000, thinning=100, burn_in=1000)
        probs = sampler.predict(x_test, num_samples=20)
    """

    def __init__(self, model, data_size: int, *, likelihood="categorical", noise_scale: float = 1.0,
                 prior_precision: float = 1.0, step_size_schedule=None, temperature: float = 1.0, seed: int = 0):
        import keras

        if not isinstance(model, keras.Model) or not model.built or not model.trainable_variables:
            raise InvalidOptionError("SGLD needs a built keras.Model with trainable weights")
        self.model = model
        self.data_size = integer(data_size, "data_size", 1)
        self.likelihood = Likelihood.make(likelihood, noise_scale)
        self.prior_precision = positive_number(prior_precision, "prior_precision")
        self.step_size_schedule = step_size_schedule
        self.temperature = positive_number(temperature, "temperature")
        self.seed = seed
        self.samples: list[list[np.ndarray]] = []
        self.result: SGLDResult | None = None

    def _outputs(self, params, x):
        non_trainable = [tf.convert_to_tensor(v) for v in self.model.non_trainable_variables]
        out, _ = self.model.stateless_call(list(params), non_trainable, x, training=False)
        return out

    def run(self, dataset, num_steps: int, thinning: int = 1, burn_in: int = 0) -> list[list[np.ndarray]]:
        """Run the chain on ``dataset`` (``(x, y)`` batches, repeated as needed) from the model's weights.

        Returns the thinned samples, each a list of arrays in ``model.trainable_variables`` order
        (also kept in ``self.samples``; ``self.result`` has the step sizes).
        """
        lik = self.likelihood
        lam = self.prior_precision

        def log_prob_fn(params, batch):
            x, y = batch
            return -tf.reduce_mean(lik.nll(y, self._outputs(params, x)))

        def log_prior_fn(params):
            return -0.5 * lam * tf.add_n([tf.reduce_sum(tf.square(tf.cast(p, tf.float64))) for p in params])

        init = [v.numpy() for v in self.model.trainable_variables]
        self.result = sgld_sample(log_prob_fn, init, self.data_size, dataset, num_steps,
                                  self.step_size_schedule, thinning, burn_in, self.seed,
                                  temperature=self.temperature, log_prior_fn=log_prior_fn)
        self.samples = [[arr[i] for arr in self.result.samples] for i in range(self.result.num_samples)]
        return self.samples

    def predict(self, x, num_samples: int | None = None, batch_size: int | None = None) -> np.ndarray:
        """Average of the predictive (softmax probabilities, or Gaussian means) over the last
        ``num_samples`` samples (all by default): ``[n, K]``."""
        if not self.samples:
            raise InvalidOptionError("no samples yet: call run() first")
        chosen = self.samples if num_samples is None else self.samples[-integer(num_samples, "num_samples", 1):]
        link = self.likelihood.link
        forward = tf.function(lambda params, xb: link(self._outputs(params, xb)), reduce_retracing=True)
        n = int(x.shape[0])
        step = n if batch_size is None else integer(batch_size, "batch_size", 1)
        total = None
        for sample in chosen:
            params = [tf.convert_to_tensor(a, dtype=v.dtype) for a, v in zip(sample, self.model.trainable_variables)]
            out = np.concatenate([forward(params, x[a:a + step]).numpy() for a in range(0, n, step)])
            total = out if total is None else total + out
        return total / len(chosen)
