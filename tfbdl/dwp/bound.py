"""Lower bounds on the implicit log-density of the deep weight prior.

The deep weight prior over a ``k x k`` kernel slice ``w`` is the marginal of a kernel VAE,
``p(w) = int p(w | z) p(z) dz`` with ``p(z) = N(0, I)``; it has no closed form. The VAE's encoder
``r(z | w)`` gives the auxiliary (variational) lower bound of the paper (eq. 8)::

    log p(w) >= E_{r(z|w)} [ log p(w | z) + log p(z) - log r(z | w) ]

estimated here with ``S`` reparameterised draws ``z_s = mu_r(w) + sigma_r(w) * eps_s``. The
estimate is differentiable with respect to ``w`` (through the encoder, the draws and the
decoder), which is how the ELBO of a Bayesian network pulls its kernels towards the prior. The
VAE is frozen: nothing here creates, updates or collects its variables (a caller differentiates
with respect to its own variables only).

With ``analytic_kl=True`` the ``log p(z) - log r(z | w)`` part is replaced by its closed form
``-KL(r(z | w) || N(0, I))``, as the reference's ``kl_dwp`` (``utils.py`` of
``SamsungLabs/deep-weight-prior``) does; the expectation is the same bound. The default Monte
Carlo form has zero variance when ``r`` is the exact posterior ``p(z | w)`` (every draw then
gives ``log p(w)``).

:func:`importance_log_prior` is the importance-weighted (IWAE) estimate
``log (1/S) sum_s p(w | z_s) p(z_s) / r(z_s | w)``: tighter, for evaluation.

The three densities are ``tfp.distributions`` values built from the VAE's outputs:
:func:`latent_prior` ``p(z)``, :func:`encoder_distribution` ``r(z | w)`` and
:func:`decoder_distribution` ``p(w | z)``, each an ``Independent`` ``Normal``; the estimates are
their ``log_prob`` values (and, with ``analytic_kl``, ``tfd.kl_divergence(r, p(z))``) at the draws
``z = mean(r) + stddev(r) * eta``. The noise ``eta`` is drawn here, statelessly from ``seed``,
not by ``r.sample``, so a seed gives the same draws as it always did.

The VAE is duck-typed: any object with ``encode(w [n, k, k]) -> (mu [n, L], log_sigma [n, L])``,
``decode(z [n, L]) -> (mu [n, k, k], log_sigma [n, k, k])`` (or a ``log_sigma`` that broadcasts,
e.g. a scalar for a fixed variance) and attributes ``kernel_size`` and ``latent`` (such as
:class:`tfbdl.dwp.vae.KernelVAE`).
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.validate import positive_int

tfd = tfp.distributions

__all__ = [
    "check_vae",
    "decoder_distribution",
    "draw_seed",
    "dwp_log_prior_bound",
    "encoder_distribution",
    "importance_log_prior",
    "latent_prior",
    "split_seed",
]


# --------------------------------------------------------------------------- seeds


def draw_seed(seed) -> tf.Tensor:
    """A stateless seed ``int64 [2]`` for ``tf.random.stateless_*``.

    ``seed`` is an ``int`` (``[seed, 0]``), a ``keras.random.SeedGenerator`` (its next state;
    this advances the generator), a tensor / array of two integers (used as is), or ``None``
    (a draw from TensorFlow's global generator, reproducible after ``keras.utils.set_random_seed``).
    """
    import keras

    if seed is None:  # TensorFlow's global RNG (seeded by keras.utils.set_random_seed)
        return tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int64)
    if isinstance(seed, keras.random.SeedGenerator):
        return tf.cast(seed.next(), tf.int64)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return tf.constant([int(seed) & 0x7FFFFFFFFFFFFFFF, 0], tf.int64)
    if isinstance(seed, (tf.Tensor, tf.Variable, np.ndarray, list, tuple)):
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        if seed.shape.rank != 1 or seed.shape[0] != 2:
            raise InvalidOptionError(f"a stateless seed must have shape [2], got {seed.shape}")
        return seed
    raise InvalidOptionError(
        f"seed must be an int, a keras.random.SeedGenerator, a pair of ints or None, got {seed!r}")


def split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
    """``num`` independent stateless seeds ``int64 [num, 2]`` derived from one."""
    return tf.random.experimental.stateless_split(seed, num)


# --------------------------------------------------------------------------- checks


def check_vae(vae, kernel_size: int | None = None) -> None:
    """Raise InvalidOptionError unless ``vae`` has the kernel-VAE interface (and the size)."""
    missing = [a for a in ("encode", "decode", "kernel_size", "latent") if not hasattr(vae, a)]
    if missing:
        raise InvalidOptionError(
            f"{type(vae).__name__} is not a kernel VAE: it lacks {', '.join(missing)} (needs "
            "encode(w) -> (mu, log_sigma), decode(z) -> (mu, log_sigma), kernel_size and latent)")
    if kernel_size is not None and int(vae.kernel_size) != int(kernel_size):
        raise ShapeError(f"the VAE models {vae.kernel_size}x{vae.kernel_size} kernels, "
                         f"not {kernel_size}x{kernel_size}; pass the VAE trained on that size")


def _slices(vae, w) -> tf.Tensor:
    w = tf.convert_to_tensor(w)
    if not w.dtype.is_floating:
        w = tf.cast(w, tf.float32)
    k = int(vae.kernel_size)
    if w.shape.rank != 3 or w.shape[1] != k or w.shape[2] != k:
        raise ShapeError(f"kernel slices must be [n, {k}, {k}] for this VAE, got {w.shape}")
    return w


def _diag_normal(mu, log_sigma, event_ndims: int) -> tfd.Distribution:
    """``Independent(Normal(mu, exp(log_sigma)))`` with the last ``event_ndims`` axes as the event."""
    return tfd.Independent(tfd.Normal(loc=mu, scale=tf.exp(log_sigma)), reinterpreted_batch_ndims=event_ndims)


# --------------------------------------------------------------------------- the three densities


def latent_prior(vae, dtype=tf.float32) -> tfd.Distribution:
    """``p(z) = N(0, I)``: ``tfd.Independent(tfd.Normal)`` with event shape ``[latent]``.

    ``vae`` is a kernel VAE (its ``latent``) or the latent dimension itself.
    """
    latent = vae if isinstance(vae, numbers.Integral) and not isinstance(vae, bool) else getattr(vae, "latent", None)
    if isinstance(latent, bool) or not isinstance(latent, numbers.Integral) or latent < 1:
        raise InvalidOptionError(f"latent_prior needs a kernel VAE or a positive latent dimension, got {vae!r}")
    dtype = tf.as_dtype(dtype)
    return tfd.Independent(tfd.Normal(loc=tf.zeros([int(latent)], dtype), scale=tf.ones([int(latent)], dtype)),
                           reinterpreted_batch_ndims=1)


def _encoder_distribution(vae, w) -> tfd.Distribution:
    mu, log_sigma = (tf.cast(t, w.dtype) for t in vae.encode(w))
    return _diag_normal(mu, log_sigma, 1)


def encoder_distribution(vae, w) -> tfd.Distribution:
    """``r(z | w)``: batch ``[n]``, event ``[latent]``, for slices ``w [n, k, k]``.

    ``tfd.Independent(tfd.Normal(mu_e(w), exp(log_sigma_e(w))), 1)`` in the dtype of ``w``
    (float32 unless given float64), differentiable in ``w``.
    """
    check_vae(vae)
    w = _slices(vae, w)
    return _encoder_distribution(vae, w)


def _decoder_distribution(vae, z, dtype) -> tfd.Distribution:
    latent, k = int(vae.latent), int(vae.kernel_size)
    lead = tf.shape(z)[:-1]
    mu, log_sigma = (tf.cast(t, dtype) for t in vae.decode(tf.reshape(z, [-1, latent])))
    mu = tf.reshape(mu, tf.concat([lead, [k, k]], 0))
    if log_sigma.shape.rank == 3:  # per entry [m, k, k]; a scalar (fixed variance) broadcasts
        log_sigma = tf.reshape(log_sigma, tf.concat([lead, [k, k]], 0))
    return _diag_normal(mu, log_sigma, 2)


def decoder_distribution(vae, z) -> tfd.Distribution:
    """``p(w | z)``: for codes ``z [..., latent]``, batch ``[...]``, event ``[k, k]``.

    ``tfd.Independent(tfd.Normal(mu_d(z), exp(log_sigma_d(z))), 2)`` in the dtype of ``z``
    (float32 unless given float64); the decoder sees the codes flattened to ``[m, latent]``.
    """
    check_vae(vae)
    z = tf.convert_to_tensor(z)
    if not z.dtype.is_floating:
        z = tf.cast(z, tf.float32)
    if z.shape.rank is None or z.shape.rank < 1 or z.shape[-1] != int(vae.latent):
        raise ShapeError(f"latent codes must be [..., {vae.latent}] for this VAE, got {z.shape}")
    return _decoder_distribution(vae, z, z.dtype)


def _latent_noise(vae, w, num_samples: int, seed, latent_noise) -> tf.Tensor:
    """The standard-normal latent noise ``[S, n, L]``: drawn from ``seed`` unless given."""
    shape = tf.stack([num_samples, tf.shape(w)[0], int(vae.latent)])
    if latent_noise is None:
        return tf.random.stateless_normal(shape, draw_seed(seed), dtype=w.dtype)
    latent_noise = tf.cast(tf.convert_to_tensor(latent_noise), w.dtype)
    if latent_noise.shape.rank != 3 or latent_noise.shape[-1] != int(vae.latent):
        raise ShapeError(f"latent_noise must be [S, n, {vae.latent}], got {latent_noise.shape}")
    tf.debugging.assert_equal(tf.shape(latent_noise), shape, message="latent_noise must be [S, n, latent]")
    return latent_noise


def _log_weights(vae, w, num_samples: int, seed, analytic_kl: bool, latent_noise=None):
    """Per-draw terms ``[S, n]``: ``log p(w|z) + log p(z) - log r(z|w)`` (or the analytic form)."""
    r = _encoder_distribution(vae, w)                                      # batch [n], event [L]
    eps = _latent_noise(vae, w, num_samples, seed, latent_noise)
    z = r.distribution.loc[None] + r.distribution.scale[None] * eps       # [S, n, L]
    log_lik = _decoder_distribution(vae, z, w.dtype).log_prob(w[None])    # batch [S, n]
    p_z = latent_prior(vae, w.dtype)
    if analytic_kl:
        return log_lik - tfd.kl_divergence(r, p_z)[None]
    return log_lik + p_z.log_prob(z) - r.log_prob(z)


# --------------------------------------------------------------------------- estimates


def dwp_log_prior_bound(vae, w, num_samples: int = 1, seed=None, *, analytic_kl: bool = False,
                        latent_noise=None) -> tf.Tensor:
    """Monte Carlo estimate of the auxiliary lower bound on ``log p(w)``, one per slice.

    Args:
        vae: a kernel VAE (see the module docstring); frozen.
        w: kernel slices ``[n, k, k]`` (tensor or array; float32 unless given float64).
        num_samples: reparameterised latent draws ``S`` per slice.
        seed: see :func:`draw_seed`.
        analytic_kl: use ``-KL(r(z|w) || N(0, I))`` in closed form for the latent part.
        latent_noise: the standard-normal draws ``eta [S, n, latent]`` of ``z = mu_r + sigma_r * eta``
            (``seed`` is then unused); lets a caller pair draws, e.g. ``eta`` with ``-eta``.

    Returns:
        ``[n]``: ``(1/S) sum_s [log p(w|z_s) + log p(z_s) - log r(z_s|w)]``, differentiable in ``w``.
    """
    check_vae(vae)
    w = _slices(vae, w)
    return tf.reduce_mean(_log_weights(vae, w, positive_int(num_samples, "num_samples"), seed, analytic_kl, latent_noise), axis=0)


def importance_log_prior(vae, w, num_samples: int = 100, seed=None) -> tf.Tensor:
    """Importance-weighted estimate of ``log p(w)`` ``[n]`` (IWAE with ``S`` draws from ``r``).

    ``log (1/S) sum_s exp(log p(w|z_s) + log p(z_s) - log r(z_s|w))``; its expectation lies
    between the auxiliary bound and ``log p(w)`` and tends to ``log p(w)`` as ``S`` grows. With
    the same ``seed`` and ``S`` it is never below :func:`dwp_log_prior_bound` (Jensen).
    """
    check_vae(vae)
    w = _slices(vae, w)
    s = positive_int(num_samples, "num_samples")
    logw = _log_weights(vae, w, s, seed, analytic_kl=False)
    return tf.reduce_logsumexp(logw, axis=0) - tf.math.log(tf.cast(s, w.dtype))
