"""Hamiltonian Monte Carlo over many chains at once, and the log density of a small Bayesian MLP.

:func:`hmc_sample` wraps ``tfp.mcmc.HamiltonianMonteCarlo`` in
``tfp.mcmc.DualAveragingStepSizeAdaptation`` (adapting during the first 80% of the burn-in) and
runs a batch of chains in one graph: the state carries a leading chain axis and the target log
density must map ``[num_chains, ...] -> [num_chains]``. Seeds are stateless, so a seed fixes
the draws.

:func:`bnn_log_prob` builds that log density for the 1-D regression experiments of Wilson &
Izmailov (2020) (the understandingbdl toy regression network, ``Linear -> ReLU`` blocks and a
linear output): an isotropic Gaussian prior ``N(0, prior_scale^2)`` on every weight and bias and
a Gaussian likelihood with known ``noise_scale``. Weights are a flat vector ``[..., D]`` or a list
``[W1, b1, W2, b2, ...]`` with the same leading (chain / sample) axes. :func:`predict_bnn` maps
weight samples to network outputs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.seeding import stateless_seed
from tfbdl.validate import integer, positive_number

__all__ = ["BNNLogDensity", "HMCResult", "bnn_log_prob", "hmc_sample", "predict_bnn"]

_LOG_2PI = math.log(2.0 * math.pi)

#: Stream keys of the chains' transitions and of the draws from the prior.
_CHAIN_STREAM = 0x4D43
_PRIOR_STREAM = 0x424E


# --------------------------------------------------------------------------- HMC


@dataclasses.dataclass
class HMCResult:
    """Draws of :func:`hmc_sample`.

    Attributes:
        samples: ``[num_results, num_chains, ...]`` (a list of such arrays for a list state).
        acceptance_rate: fraction of accepted proposals over all kept steps and chains.
        acceptance_rate_per_chain: ``[num_chains]``.
        step_size: the leapfrog step size used for the kept draws (after adaptation).
        target_log_prob: ``[num_results, num_chains]`` log density of each draw.
    """

    samples: list[np.ndarray] | np.ndarray
    acceptance_rate: float
    acceptance_rate_per_chain: np.ndarray
    step_size: float
    target_log_prob: np.ndarray

    def flat_samples(self):
        """Draws with the result and chain axes merged: ``[num_results * num_chains, ...]``."""
        merge = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
        return [merge(a) for a in self.samples] if isinstance(self.samples, list) else merge(self.samples)


def hmc_sample(target_log_prob_fn, init_state, num_results: int = 1000, num_burnin: int = 500,
               step_size: float = 0.01, num_leapfrog: int = 10, num_chains: int | None = None, seed: int = 0, *,
               adapt_step_size: bool = True, target_accept_prob: float = 0.75, thinning: int = 1,
               jit_compile: bool = False) -> HMCResult:
    """HMC with dual-averaging step-size adaptation, many chains in parallel.

    Args:
        target_log_prob_fn: log density of a batch of states: ``f(state) -> [num_chains]`` for a
            tensor state ``[num_chains, ...]``, or ``f(*parts)`` for a list state.
        init_state: a tensor, or a list of tensors. With ``num_chains`` it is one chain's state,
            repeated for every chain; without, it already has the leading chain axis.
        num_results: draws kept per chain (after thinning).
        num_burnin: steps discarded first; the step size adapts during the first 80% of them.
        step_size: the initial leapfrog step size (the final one if ``adapt_step_size=False``).
        num_leapfrog: leapfrog steps per proposal.
        num_chains: number of parallel chains (see ``init_state``).
        seed: an integer; the draws are a deterministic function of it.
        target_accept_prob: the acceptance rate the adaptation aims for.
        thinning: keep every ``thinning``-th step.
        jit_compile: compile the sampler with XLA (faster for long runs, slower to start).

    Returns:
        :class:`HMCResult`.
    """
    num_results = integer(num_results, "num_results", 1)
    num_burnin = integer(num_burnin, "num_burnin", 0)
    num_leapfrog = integer(num_leapfrog, "num_leapfrog", 1)
    thinning = integer(thinning, "thinning", 1)
    step_size = positive_number(step_size, "step_size")
    if not 0.0 < float(target_accept_prob) < 1.0:
        raise InvalidOptionError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    seed = integer(seed, "seed", None)
    is_list = isinstance(init_state, (list, tuple))
    parts = [tf.convert_to_tensor(s) for s in (init_state if is_list else [init_state])]
    parts = [p if p.dtype.is_floating else tf.cast(p, tf.float32) for p in parts]
    if num_chains is not None:
        num_chains = integer(num_chains, "num_chains", 1)
        parts = [tf.repeat(p[None], num_chains, axis=0) for p in parts]
    elif any(p.shape.rank == 0 for p in parts):
        raise ShapeError("without num_chains, init_state needs a leading chain axis; pass num_chains=1 for one chain")
    chains = int(parts[0].shape[0])
    if any(int(p.shape[0]) != chains for p in parts):
        raise ShapeError("every part of init_state must have the same number of chains on axis 0")
    dtype = parts[0].dtype

    def log_prob(*state):
        return target_log_prob_fn(*state) if is_list else target_log_prob_fn(state[0])

    kernel = tfp.mcmc.HamiltonianMonteCarlo(log_prob, step_size=tf.constant(step_size, dtype),
                                            num_leapfrog_steps=num_leapfrog)
    num_adaptation = int(0.8 * num_burnin)
    if adapt_step_size and num_adaptation > 0:
        kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(kernel, num_adaptation_steps=num_adaptation,
                                                          target_accept_prob=tf.constant(target_accept_prob, dtype))

    def trace_fn(_, results):
        inner = getattr(results, "inner_results", results)
        step = inner.accepted_results.step_size
        if isinstance(step, (list, tuple)):  # without adaptation TFP keeps no step size in its results
            step = step[0] if step else tf.constant(step_size, dtype)
        return inner.is_accepted, inner.accepted_results.target_log_prob, step

    @tf.function(autograph=False, jit_compile=jit_compile)
    def run(state, seed_pair):
        return tfp.mcmc.sample_chain(num_results=num_results, current_state=state, kernel=kernel,
                                     num_burnin_steps=num_burnin, num_steps_between_results=thinning - 1,
                                     trace_fn=trace_fn, seed=seed_pair)

    lp0 = log_prob(*parts)
    if tuple(lp0.shape) != (chains,):
        raise ShapeError(f"target_log_prob_fn must return one value per chain, shape ({chains},); got {tuple(lp0.shape)}")
    if not np.isfinite(lp0.numpy()).all():
        raise InvalidOptionError("the target log density is not finite at init_state; start inside its support")
    samples, (accepted, target_lp, step_sizes) = run(parts, stateless_seed(seed, _CHAIN_STREAM))
    accepted = accepted.numpy().astype(np.float64)
    out = [s.numpy() for s in samples]
    final_step = step_sizes[-1]
    return HMCResult(samples=out if is_list else out[0], acceptance_rate=float(accepted.mean()),
                     acceptance_rate_per_chain=accepted.mean(axis=0), step_size=float(np.mean(final_step)),
                     target_log_prob=target_lp.numpy())


# --------------------------------------------------------------------------- Bayesian MLP


def _activation(activation) -> Callable:
    if callable(activation):
        return activation
    table = {"relu": tf.nn.relu, "tanh": tf.tanh, "sigmoid": tf.sigmoid, "elu": tf.nn.elu,
             "softplus": tf.nn.softplus, "linear": tf.identity}
    if activation not in table:
        raise InvalidOptionError(f"activation must be one of {sorted(table)} or a callable, got {activation!r}")
    return table[activation]


def _layer_sizes(sizes) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise InvalidOptionError(f"mlp_layer_sizes must list the input, hidden and output widths, e.g. (1, 50, 50, 1); "
                                 f"got {sizes!r}")
    return tuple(integer(s, "each layer size", 1) for s in sizes)


@dataclasses.dataclass(frozen=True)
class _MLPShapes:
    layer_sizes: tuple[int, ...]
    activation: Callable

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        out = []
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            out += [(fan_in, fan_out), (fan_out,)]
        return out

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes)

    def unflatten(self, weights) -> list[tf.Tensor]:
        """``[..., D]`` or a list of arrays -> ``[W1, b1, ...]`` tensors with leading axes kept."""
        if isinstance(weights, (list, tuple)):
            parts = [tf.convert_to_tensor(w) for w in weights]
            if len(parts) != len(self.shapes):
                raise ShapeError(f"expected {len(self.shapes)} weight arrays [W1, b1, ...], got {len(parts)}")
            for p, s in zip(parts, self.shapes):
                if p.shape.rank < len(s) or tuple(p.shape[p.shape.rank - len(s):]) != s:
                    raise ShapeError(f"a weight array of shape {tuple(p.shape)} does not end in {s}")
            return parts
        flat = tf.convert_to_tensor(weights)
        if flat.shape.rank < 1 or flat.shape[-1] != self.num_params:
            raise ShapeError(f"flat weights must have shape [..., {self.num_params}] for layer sizes "
                             f"{self.layer_sizes}; got {tuple(flat.shape)}")
        lead = tf.shape(flat)[:-1]
        parts, start = [], 0
        for s in self.shapes:
            size = int(np.prod(s))
            parts.append(tf.reshape(flat[..., start:start + size], tf.concat([lead, s], axis=0)))
            start += size
        return parts

    def flatten(self, parts) -> tf.Tensor:
        parts = self.unflatten(parts)
        k = parts[0].shape.rank - 2
        lead = tf.shape(parts[0])[:k]
        return tf.concat([tf.reshape(p, tf.concat([lead, [-1]], axis=0)) for p in parts], axis=-1)

    def forward(self, weights, x) -> tf.Tensor:
        """Network outputs ``[..., N, out]`` for inputs ``x [N, in]``."""
        parts = self.unflatten(weights)
        h = tf.cast(x, parts[0].dtype)
        n_layers = len(parts) // 2
        for i in range(n_layers):
            W, b = parts[2 * i], parts[2 * i + 1]
            h = tf.matmul(h, W) + b[..., None, :]  # [N, in] or [..., N, in] against [..., in, out]
            if i < n_layers - 1:
                h = self.activation(h)
        return h


class BNNLogDensity:
    """``log p(y | x, w) + log p(w)`` of a Bayesian MLP; call it on flat or list weights.

    Attributes: ``layer_sizes``, ``num_params``, ``prior_scale``, ``noise_scale``, ``x``, ``y``.
    Methods: ``log_likelihood``, ``log_prior``, ``forward`` (outputs), ``predict`` (alias),
    ``unflatten`` / ``flatten`` between the flat vector and ``[W1, b1, ...]``, ``sample_prior``.
    """

    def __init__(self, mlp_layer_sizes, x, y, prior_scale: float = 1.0, noise_scale: float = 0.1,
                 activation="relu", dtype=None):
        self._mlp = _MLPShapes(_layer_sizes(mlp_layer_sizes), _activation(activation))
        self.layer_sizes = self._mlp.layer_sizes
        self.prior_scale = positive_number(prior_scale, "prior_scale")
        self.noise_scale = positive_number(noise_scale, "noise_scale")
        x_arr = np.asarray(x)
        if dtype is None:
            dtype = x_arr.dtype if np.issubdtype(x_arr.dtype, np.floating) else np.float32
        self.dtype = tf.as_dtype(dtype)
        d_in, d_out = self.layer_sizes[0], self.layer_sizes[-1]
        if x_arr.ndim == 1 and d_in == 1:
            x_arr = x_arr[:, None]
        if x_arr.ndim != 2 or x_arr.shape[1] != d_in:
            raise ShapeError(f"x must have shape [N, {d_in}] (or [N] for 1-D inputs), got {np.shape(x)}")
        y_arr = np.asarray(y)
        if y_arr.ndim == 1 and d_out == 1:
            y_arr = y_arr[:, None]
        if y_arr.shape != (x_arr.shape[0], d_out):
            raise ShapeError(f"y must have shape [{x_arr.shape[0]}, {d_out}] (or [N] for one output), got {np.shape(y)}")
        self.x = tf.constant(x_arr, self.dtype)
        self.y = tf.constant(y_arr, self.dtype)

    @property
    def num_params(self) -> int:
        return self._mlp.num_params

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return self._mlp.shapes

    def unflatten(self, weights) -> list[tf.Tensor]:
        return [tf.cast(p, self.dtype) for p in self._mlp.unflatten(weights)]

    def flatten(self, weights) -> tf.Tensor:
        return tf.cast(self._mlp.flatten(weights), self.dtype)

    def forward(self, weights, x=None) -> tf.Tensor:
        """Outputs ``[..., N, out]`` at inputs ``x`` (default the training inputs)."""
        x = self.x if x is None else tf.reshape(tf.cast(x, self.dtype), [-1, self.layer_sizes[0]])
        return self._mlp.forward(self.unflatten(weights), x)

    predict = forward

    def log_likelihood(self, weights) -> tf.Tensor:
        f = self.forward(weights)
        r = (self.y - f) / self.noise_scale
        n = float(np.prod(self.y.shape))
        return -0.5 * tf.reduce_sum(tf.square(r), axis=[-2, -1]) - n * (math.log(self.noise_scale) + 0.5 * _LOG_2PI)

    def log_prior(self, weights) -> tf.Tensor:
        parts = self.unflatten(weights)
        total = 0.0
        for p, s in zip(parts, self.shapes):
            axes = list(range(p.shape.rank - len(s), p.shape.rank))
            total += tf.reduce_sum(tf.square(p / self.prior_scale), axis=axes)
        return -0.5 * total - self.num_params * (math.log(self.prior_scale) + 0.5 * _LOG_2PI)

    def __call__(self, weights) -> tf.Tensor:
        """Log joint density, shape = the leading (chain / sample) axes of ``weights``."""
        return self.log_likelihood(weights) + self.log_prior(weights)

    def sample_prior(self, seed: int = 0, num_samples: int | None = None) -> tf.Tensor:
        """Flat weights from the prior: ``[D]`` or ``[num_samples, D]`` (stateless, seeded)."""
        shape = [self.num_params] if num_samples is None else [integer(num_samples, "num_samples", 1), self.num_params]
        return self.prior_scale * tf.random.stateless_normal(shape, stateless_seed(seed, _PRIOR_STREAM), dtype=self.dtype)


def bnn_log_prob(mlp_layer_sizes, x, y, prior_scale: float = 1.0, noise_scale: float = 0.1,
                 activation="relu", dtype=None) -> BNNLogDensity:
    """Log joint density of a Bayesian MLP for regression, as a callable on weights.

    Args:
        mlp_layer_sizes: widths from input to output, e.g. ``(1, 50, 50, 1)``.
        x: inputs ``[N, in]`` (``[N]`` for 1-D); y: targets ``[N, out]`` (``[N]`` for one output).
        prior_scale: standard deviation of the ``N(0, prior_scale^2)`` prior on every parameter.
        noise_scale: the known observation noise standard deviation.
        activation: hidden activation (``"relu"`` as in the reference's regression net, ``"tanh"``, ...).
        dtype: float dtype (default x's, float32 for non-float inputs).

    Returns:
        A :class:`BNNLogDensity` ``f`` with ``f(weights) -> [...]`` for flat weights ``[..., D]`` or a
        list ``[W1 [..., in, h], b1 [..., h], ...]``; usable directly as ``hmc_sample``'s target.
    """
    return BNNLogDensity(mlp_layer_sizes, x, y, prior_scale, noise_scale, activation, dtype)


def predict_bnn(samples, x, mlp_layer_sizes=None, activation="relu") -> np.ndarray:
    """Outputs of a Bayesian MLP for weight samples: ``[..., N, out]``.

    Args:
        samples: flat weights ``[..., D]`` (needs ``mlp_layer_sizes``), a list
            ``[W1, b1, ...]`` with common leading axes (sizes inferred), or an :class:`HMCResult`.
        x: inputs ``[N, in]`` (or ``[N]`` for 1-D).
        mlp_layer_sizes: widths from input to output (or a :class:`BNNLogDensity`, whose sizes and
            activation are used).
        activation: hidden activation, as in :func:`bnn_log_prob`.
    """
    if isinstance(samples, HMCResult):
        samples = samples.samples
    if isinstance(mlp_layer_sizes, BNNLogDensity):
        mlp = mlp_layer_sizes._mlp
    elif mlp_layer_sizes is not None:
        mlp = _MLPShapes(_layer_sizes(mlp_layer_sizes), _activation(activation))
    elif isinstance(samples, (list, tuple)):
        if len(samples) < 2 or len(samples) % 2:
            raise ShapeError("list weights must be [W1, b1, W2, b2, ...]")
        sizes = [int(np.shape(samples[0])[-2])] + [int(np.shape(w)[-1]) for w in samples[0::2]]
        mlp = _MLPShapes(tuple(sizes), _activation(activation))
    else:
        raise InvalidOptionError("flat weight samples need mlp_layer_sizes to be unflattened")
    first = samples[0] if isinstance(samples, (list, tuple)) else samples
    dtype = tf.as_dtype(np.asarray(first).dtype) if not isinstance(first, tf.Tensor) else first.dtype
    x = tf.reshape(tf.cast(tf.convert_to_tensor(x), dtype), [-1, mlp.layer_sizes[0]])
    return mlp.forward(samples, x).numpy()
