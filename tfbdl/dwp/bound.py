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

The VAE is duck-typed: any object with ``encode(w [n, k, k]) -> (mu [n, L], log_sigma [n, L])``,
``decode(z [n, L]) -> (mu [n, k, k], log_sigma [n, k, k])`` and attributes ``kernel_size`` and
``latent`` (such as :class:`tfbdl.dwp.vae.KernelVAE`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, ShapeError

__all__ = ["dwp_log_prior_bound", "importance_log_prior", "draw_seed", "split_seed", "check_vae"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


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


def _num_samples(value, name: str = "num_samples") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


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


def _normal_log_prob(x, mu, log_sigma):
    """Elementwise ``log N(x | mu, exp(log_sigma)^2)``."""
    return -0.5 * tf.square((x - mu) * tf.exp(-log_sigma)) - log_sigma - _HALF_LOG_2PI


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
    dtype = w.dtype
    n = tf.shape(w)[0]
    latent = int(vae.latent)
    z_mu, z_log_sigma = (tf.cast(t, dtype) for t in vae.encode(w))
    eps = _latent_noise(vae, w, num_samples, seed, latent_noise)
    z = z_mu[None] + tf.exp(z_log_sigma)[None] * eps                       # [S, n, L]
    w_mu, w_log_sigma = (tf.cast(t, dtype) for t in vae.decode(tf.reshape(z, [-1, latent])))
    k = int(vae.kernel_size)
    w_mu = tf.reshape(w_mu, [num_samples, n, k, k])
    if w_log_sigma.shape.rank == 3:  # per entry [S * n, k, k]; a scalar (fixed variance) broadcasts
        w_log_sigma = tf.reshape(w_log_sigma, [num_samples, n, k, k])
    log_lik = tf.reduce_sum(_normal_log_prob(w[None], w_mu, w_log_sigma), axis=[2, 3])  # [S, n]
    if analytic_kl:
        kl = 0.5 * tf.reduce_sum(tf.exp(2.0 * z_log_sigma) + tf.square(z_mu) - 1.0 - 2.0 * z_log_sigma,
                                 axis=-1)
        return log_lik - kl[None]
    log_pz = tf.reduce_sum(-0.5 * tf.square(z) - _HALF_LOG_2PI, axis=-1)
    log_r = tf.reduce_sum(-0.5 * tf.square(eps) - z_log_sigma[None] - _HALF_LOG_2PI, axis=-1)
    return log_lik + log_pz - log_r


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
    return tf.reduce_mean(_log_weights(vae, w, _num_samples(num_samples), seed, analytic_kl, latent_noise), axis=0)


def importance_log_prior(vae, w, num_samples: int = 100, seed=None) -> tf.Tensor:
    """Importance-weighted estimate of ``log p(w)`` ``[n]`` (IWAE with ``S`` draws from ``r``).

    ``log (1/S) sum_s exp(log p(w|z_s) + log p(z_s) - log r(z_s|w))``; its expectation lies
    between the auxiliary bound and ``log p(w)`` and tends to ``log p(w)`` as ``S`` grows. With
    the same ``seed`` and ``S`` it is never below :func:`dwp_log_prior_bound` (Jensen).
    """
    check_vae(vae)
    w = _slices(vae, w)
    s = _num_samples(num_samples)
    logw = _log_weights(vae, w, s, seed, analytic_kl=False)
    return tf.reduce_logsumexp(logw, axis=0) - tf.math.log(tf.cast(s, w.dtype))
