"""Mean-field Gaussian variational inference on a log density (a small Bayesian MLP).

The surrogate posterior is a fully factorised Gaussian ``q(w) = prod_i N(w_i | mu_i, sigma_i^2)``
whose locations are ``tf.Variable``s and whose scales are ``tfp.util.TransformedVariable``s
through a softplus, as in the reference (understandingbdl ``swag/posteriors/vi_model.py``: scales
start at ``softplus(-3) ~= 0.049``). It is fitted by maximising the ELBO with reparameterised
Monte Carlo gradients, ``tfp.vi.fit_surrogate_posterior`` and a Keras 3 optimizer (Adam).

- :func:`mean_field_surrogate` builds the (untrained) surrogate: a TFP distribution value over a
  flat vector ``[D]`` or, for a list of initial arrays, a ``JointDistributionSequential``.
- :func:`fit_mean_field_vi` fits it to any ``target_log_prob_fn`` and returns a
  :class:`MeanFieldVIResult` (the surrogate, the loss trace, means and scales).
- :func:`bnn_mean_field_vi` does both for :func:`tfbdl.bayes.hmc.bnn_log_prob`'s Bayesian MLP, and
  :func:`predictive_samples` maps surrogate draws to network outputs.
- :meth:`MeanFieldVIResult.posterior` is the fitted ``q`` as a TFP distribution of constants, and
  :meth:`MeanFieldVIResult.weight_posteriors` one ``tfd.Independent(tfd.Normal)`` per weight array
  (the network's ``[W1, b1, ...]`` for a BNN), ready for ``tfd.kl_divergence`` against a prior.

For a linear-Gaussian model whose posterior precision is diagonal (an orthogonal design) the
mean-field family contains the exact posterior, so the fit recovers it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfbdl.bayes.hmc import BNNLogDensity, bnn_log_prob, predict_bnn
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.seeding import stateless_seed
from tfbdl.validate import integer, positive_number

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["DEFAULT_INIT_SCALE", "MeanFieldVIResult", "bnn_mean_field_vi", "fit_mean_field_vi",
           "mean_field_surrogate", "predictive_samples"]

#: Stream key of the Monte Carlo draws of a fit and of the surrogate's samples.
_DRAWS_STREAM = 0x5649

#: Initial surrogate scale of the reference (``init_inv_softplus_sigma = -3``).
DEFAULT_INIT_SCALE = math.log1p(math.exp(-3.0))


def _factor(loc, init_scale: float, name: str) -> tfd.Distribution:
    loc = tf.convert_to_tensor(loc)
    if not loc.dtype.is_floating:
        loc = tf.cast(loc, tf.float32)
    if loc.shape.rank == 0:
        raise ShapeError("initial locations must have at least one axis (use shape [1] for a scalar)")
    loc_var = tf.Variable(loc, name=f"{name}_loc")
    scale_var = tfp.util.TransformedVariable(tf.fill(tf.shape(loc), tf.constant(init_scale, loc.dtype)),
                                             tfb.Softplus(), name=f"{name}_scale")
    return tfd.Independent(tfd.Normal(loc=loc_var, scale=scale_var), reinterpreted_batch_ndims=loc.shape.rank)


def mean_field_surrogate(init_loc, init_scale: float = DEFAULT_INIT_SCALE, name: str = "q") -> tfd.Distribution:
    """A trainable fully factorised Gaussian.

    Args:
        init_loc: initial means: one array (any shape, e.g. flat ``[D]``) or a list of arrays.
        init_scale: initial standard deviation of every factor (softplus-parameterised).

    Returns:
        ``tfd.Independent(tfd.Normal)`` for one array; ``tfd.JointDistributionSequential`` of those
        for a list. Its ``trainable_variables`` are the locations and pre-softplus scales.
    """
    init_scale = positive_number(init_scale, "init_scale")
    if isinstance(init_loc, (list, tuple)):
        if not init_loc:
            raise ShapeError("init_loc must be an array or a non-empty list of arrays")
        return tfd.JointDistributionSequential([_factor(loc, init_scale, f"{name}_{i}") for i, loc in enumerate(init_loc)])
    return _factor(init_loc, init_scale, name)


def _parts(dist):
    return list(dist.model) if isinstance(dist, tfd.JointDistributionSequential) else [dist]


def _frozen(part: tfd.Distribution) -> tfd.Distribution:
    """A factor ``Independent(Normal)`` with its current location and scale as constants."""
    normal = part.distribution
    return tfd.Independent(tfd.Normal(loc=tf.convert_to_tensor(normal.loc), scale=tf.convert_to_tensor(normal.scale)),
                           reinterpreted_batch_ndims=part.reinterpreted_batch_ndims)


@dataclasses.dataclass
class MeanFieldVIResult:
    """A fitted mean-field surrogate.

    Attributes:
        surrogate: the TFP distribution (draw with ``surrogate.sample(n, seed=...)``).
        losses: ``[num_steps]`` negative ELBO estimates along the optimisation.
        log_density: the target (a :class:`BNNLogDensity` for :func:`bnn_mean_field_vi`, else the
            callable passed in).
    """

    surrogate: tfd.Distribution
    losses: np.ndarray
    log_density: object = None

    @property
    def mean(self):
        """Variational means (an array, or a list for a list surrogate)."""
        out = [tf.convert_to_tensor(p.distribution.loc).numpy() for p in _parts(self.surrogate)]
        return out if isinstance(self.surrogate, tfd.JointDistributionSequential) else out[0]

    @property
    def stddev(self):
        """Variational standard deviations (same structure as :attr:`mean`)."""
        out = [tf.convert_to_tensor(p.distribution.scale).numpy() for p in _parts(self.surrogate)]
        return out if isinstance(self.surrogate, tfd.JointDistributionSequential) else out[0]

    def posterior(self) -> tfd.Distribution:
        """The fitted ``q`` as a TFP distribution of constants (a snapshot, no variables): the
        structure of :attr:`surrogate` (``tfd.Independent(tfd.Normal)``, or a
        ``JointDistributionSequential`` of those), ``mean()`` / ``stddev()`` :attr:`mean` /
        :attr:`stddev`."""
        parts = [_frozen(p) for p in _parts(self.surrogate)]
        return tfd.JointDistributionSequential(parts) if isinstance(self.surrogate, tfd.JointDistributionSequential) \
            else parts[0]

    def weight_posteriors(self) -> list:
        """One ``tfd.Independent(tfd.Normal)`` per weight array, in order.

        For :func:`bnn_mean_field_vi` (a :class:`BNNLogDensity` target) the flat posterior is split
        into the network's ``[W1, b1, W2, b2, ...]`` with their shapes (``[in, out]``, ``[out]``),
        so ``tfd.JointDistributionSequential(result.weight_posteriors()).sample(n)`` gives weight
        lists ``predict_bnn`` takes; otherwise one distribution per surrogate part.
        """
        parts = [_frozen(p) for p in _parts(self.surrogate)]
        if not isinstance(self.log_density, BNNLogDensity) or len(parts) != 1:
            return parts
        density = self.log_density
        locs = density.unflatten(parts[0].distribution.loc)
        scales = density.unflatten(parts[0].distribution.scale)
        return [tfd.Independent(tfd.Normal(loc=m, scale=s), reinterpreted_batch_ndims=len(shape))
                for m, s, shape in zip(locs, scales, density.shapes)]

    def sample(self, num_samples: int, seed: int = 0):
        """Draws from the surrogate (stateless, seeded): ``[num_samples, ...]`` per part."""
        draws = self.surrogate.sample(integer(num_samples, "num_samples", 1), seed=_stateless_seed(seed))
        return [d.numpy() for d in draws] if isinstance(draws, (list, tuple)) else draws.numpy()


def _stateless_seed(seed) -> tf.Tensor:
    return stateless_seed(integer(seed, "seed", None), _DRAWS_STREAM)


def fit_mean_field_vi(target_log_prob_fn, init_loc, num_steps: int = 1000, learning_rate=1e-2,
                      sample_size: int = 1, init_scale: float = DEFAULT_INIT_SCALE, seed: int = 0, *,
                      optimizer=None, jit_compile: bool = False) -> MeanFieldVIResult:
    """Fit a mean-field Gaussian to ``target_log_prob_fn`` by maximising the ELBO.

    Args:
        target_log_prob_fn: the unnormalised log posterior; called on a batch of draws
            ``[sample_size, ...]`` (one argument, or one per part for a list ``init_loc``) and
            returning ``[sample_size]``.
        init_loc: initial means (array or list of arrays); also fixes shapes and dtype.
        num_steps: optimisation steps.
        learning_rate: Adam's learning rate, a number or a ``keras.optimizers.schedules`` schedule
            (a decaying one removes most of the Monte Carlo jitter of the final estimate).
        sample_size: Monte Carlo draws per ELBO estimate.
        init_scale: initial standard deviation of every factor.
        seed: seeds the Monte Carlo draws (stateless); the fit is a deterministic function of it.
        optimizer: a Keras 3 optimizer to use instead of Adam(learning_rate).
        jit_compile: compile the optimisation loop with XLA.

    Returns:
        :class:`MeanFieldVIResult`.
    """
    import keras

    num_steps = integer(num_steps, "num_steps", 1)
    sample_size = integer(sample_size, "sample_size", 1)
    surrogate = mean_field_surrogate(init_loc, init_scale)
    if optimizer is None:
        if isinstance(learning_rate, numbers.Real):
            learning_rate = positive_number(learning_rate, "learning_rate")
        optimizer = keras.optimizers.Adam(learning_rate)
    is_list = isinstance(surrogate, tfd.JointDistributionSequential)
    target = (lambda *parts: target_log_prob_fn(*parts)) if is_list else target_log_prob_fn
    losses = tfp.vi.fit_surrogate_posterior(target, surrogate, optimizer=optimizer, num_steps=num_steps,
                                            sample_size=sample_size, seed=_stateless_seed(seed),
                                            jit_compile=jit_compile)
    losses = np.asarray(losses)
    if not np.isfinite(losses[-1]):
        raise InvalidOptionError("the variational fit diverged (non-finite ELBO): lower the learning rate "
                                 "or start the means closer to a mode")
    return MeanFieldVIResult(surrogate=surrogate, losses=losses, log_density=target_log_prob_fn)


def bnn_mean_field_vi(mlp_layer_sizes, x, y, prior_scale: float = 1.0, noise_scale: float = 0.1, *,
                      activation="relu", num_steps: int = 2000, learning_rate=1e-2, sample_size: int = 4,
                      init_scale: float = DEFAULT_INIT_SCALE, init_loc=None, seed: int = 0,
                      jit_compile: bool = False) -> MeanFieldVIResult:
    """Mean-field VI for the Bayesian MLP of :func:`tfbdl.bayes.hmc.bnn_log_prob` (flat weights).

    ``init_loc`` defaults to a draw from the prior scaled by ``1 / sqrt(fan_in)`` per layer (so the
    initial network is not saturated). Returns a :class:`MeanFieldVIResult` whose ``log_density``
    is the :class:`BNNLogDensity`; pass it to :func:`predictive_samples`.
    """
    density = bnn_log_prob(mlp_layer_sizes, x, y, prior_scale, noise_scale, activation)
    if init_loc is None:
        rng = np.random.default_rng(seed)
        parts = []
        for shape in density.shapes:
            fan_in = shape[0] if len(shape) == 2 else 1
            parts.append(rng.standard_normal(shape).ravel() / math.sqrt(fan_in) * (len(shape) == 2))
        init_loc = np.concatenate(parts)
    init_loc = tf.cast(tf.reshape(tf.convert_to_tensor(init_loc), [-1]), density.dtype)
    if init_loc.shape[0] != density.num_params:
        raise ShapeError(f"init_loc must have {density.num_params} entries, got {init_loc.shape[0]}")
    result = fit_mean_field_vi(density, init_loc, num_steps, learning_rate, sample_size, init_scale, seed,
                               jit_compile=jit_compile)
    result.log_density = density
    return result


def predictive_samples(surrogate, x, num_samples: int = 100, seed: int = 0, mlp_layer_sizes=None,
                       activation="relu") -> np.ndarray:
    """Network outputs under surrogate draws: ``[num_samples, N, out]``.

    ``surrogate`` is a :class:`MeanFieldVIResult` (from :func:`bnn_mean_field_vi`, which knows its
    network) or a TFP distribution over flat weights together with ``mlp_layer_sizes``.
    """
    sizes = mlp_layer_sizes
    if isinstance(surrogate, MeanFieldVIResult):
        if sizes is None and isinstance(surrogate.log_density, BNNLogDensity):
            sizes = surrogate.log_density
        surrogate = surrogate.surrogate
    if sizes is None:
        raise InvalidOptionError("predictive_samples needs mlp_layer_sizes (or a result of bnn_mean_field_vi)")
    draws = surrogate.sample(integer(num_samples, "num_samples", 1), seed=_stateless_seed(seed))
    if isinstance(draws, (list, tuple)):
        draws = [d.numpy() for d in draws]
    else:
        draws = draws.numpy()
    return predict_bnn(draws, x, sizes, activation)
