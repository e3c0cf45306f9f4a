"""Per-layer prior terms of the ELBO for a fully factorised Gaussian posterior.

Every prior has one method, ``kl(mu, log_sigma, seed=None) -> scalar``: the KL divergence (or
an upper bound / approximation of it) from ``q(w) = prod_i N(w_i | mu_i, sigma_i^2)`` to the
prior, summed over every entry of the kernel. ``mu`` and ``log_sigma`` have the layer's kernel
shape. Layers treat all priors alike; ``needs_samples`` says whether the term is a Monte Carlo
estimate (drawing from ``seed``) rather than a closed form.

- :class:`StandardNormalPrior`: ``N(0, scale^2)`` per weight, closed-form KL (the reference's
  ``'sn'`` prior, ``scale`` its ``--lamb``).
- :class:`LogUniformPrior`: the improper log-uniform prior of sparse variational dropout with the
  KL approximation of Molchanov, Ashukha & Vetrov (2017), ``log alpha = log sigma^2 - log mu^2``.
- :class:`TruncatedLogUniformPrior`: the log-uniform prior with ``alpha <= 1`` and the KL fit of
  Kingma, Salimans & Welling (2015), the reference's ``kl_loguniform_with_trunc_alpha`` (used with
  its ``bayes-mtrunca`` layers, ``variance="alpha"`` in :mod:`tfbdl.dwp.bnn`).
- :class:`DeepWeightPrior`: the implicit prior of a kernel VAE over ``k x k`` slices (Atanov et
  al. 2019): ``KL(q || p) <= -H(q) - E_q[ bound(w) ]`` with the entropy in closed form and the
  expectation over ``w ~ q`` by reparameterised draws, ``bound`` from
  :func:`tfbdl.dwp.bound.dwp_log_prior_bound` (the reference's ``kl_dwp``).
- :class:`ImplicitDWP`: the implicit prior ``p(w) = int p(w | z) p(z) dz`` of one kernel VAE as
  an object: its three ``tfp.distributions`` (``p(z)``, ``r(z | w)``, ``p(w | z)``), the
  log-density bounds ``log_prob_lower_bound`` / ``log_prob_importance`` over slices ``[n, k, k]``
  (and ``kernel_*`` versions over a convolution kernel ``[k, k, in, out]``), and ``sample``.
  :meth:`DeepWeightPrior.implicit_prior` gives the one of a kernel size.

:meth:`StandardNormalPrior.distribution` is that prior as a ``tfd.Independent(tfd.Normal)`` over a
kernel shape; ``tfd.kl_divergence(layer.kernel_posterior(), prior.distribution(shape))`` is its
``kl`` (see :meth:`tfbdl.dwp.bnn.BayesConv2D.kernel_posterior`).

The log-uniform priors depend on ``alpha = sigma^2 / mu^2`` only; they also offer
``kl_log_alpha(log_alpha)``, which a layer that parameterises ``alpha`` directly calls instead.

Kernel layout. A Keras convolution kernel ``[k, k, in, out]`` holds ``in * out`` slices
``W[:, :, i, o]`` of shape ``[k, k]``. :func:`kernel_slices_tensor` transposes it to
``[out, in, k, k]`` (PyTorch's weight layout) and reshapes to ``[out * in, k, k]``, so slice
``o * in + i`` is ``W[:, :, i, o]``, the order of the reference and of
:func:`tfbdl.dwp.kernel_bank.kernel_slices`; :func:`kernel_from_slices_tensor` inverts it.
"""

from __future__ import annotations

import math
import numbers

import tensorflow as tf
import tensorflow_probability as tfp

from tfbdl.dwp.bound import (
    check_vae,
    decoder_distribution,
    draw_seed,
    dwp_log_prior_bound,
    encoder_distribution,
    importance_log_prior,
    latent_prior,
    split_seed,
)
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.validate import positive_number

tfd = tfp.distributions

__all__ = [
    "DeepWeightPrior",
    "ImplicitDWP",
    "LOG_UNIFORM_K1",
    "LOG_UNIFORM_K2",
    "LOG_UNIFORM_K3",
    "LogUniformPrior",
    "Prior",
    "StandardNormalPrior",
    "TRUNCATED_LOG_UNIFORM_C",
    "TruncatedLogUniformPrior",
    "kernel_from_slices_tensor",
    "kernel_slices_tensor",
]

#: Constants of Molchanov et al.'s (2017) fit of the log-uniform KL (their eq. 14).
LOG_UNIFORM_K1, LOG_UNIFORM_K2, LOG_UNIFORM_K3 = 0.63576, 1.87320, 1.48695

#: Constants of Kingma et al.'s (2015) fit of the log-uniform KL for ``alpha <= 1`` (c1, c2, c3).
TRUNCATED_LOG_UNIFORM_C = (1.16145124, -1.50204118, 0.58629921)

_HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)


def kernel_slices_tensor(kernel) -> tf.Tensor:
    """``[k, k, in, out] -> [out * in, k, k]`` (slice ``o * in + i`` is ``kernel[:, :, i, o]``)."""
    kernel = tf.convert_to_tensor(kernel)
    if kernel.shape.rank != 4 or kernel.shape[0] != kernel.shape[1]:
        raise ShapeError(f"a convolution kernel must be [k, k, in, out] with square k x k, got {kernel.shape}")
    k = int(kernel.shape[0])
    return tf.reshape(tf.transpose(kernel, [3, 2, 0, 1]), [-1, k, k])


def kernel_from_slices_tensor(slices, in_channels: int, out_channels: int) -> tf.Tensor:
    """Inverse of :func:`kernel_slices_tensor`: ``[out * in, k, k] -> [k, k, in, out]``."""
    slices = tf.convert_to_tensor(slices)
    if slices.shape.rank != 3 or slices.shape[1] != slices.shape[2]:
        raise ShapeError(f"kernel slices must be [n, k, k], got {slices.shape}")
    k = int(slices.shape[1])
    if slices.shape[0] is not None and slices.shape[0] != in_channels * out_channels:
        raise ShapeError(f"{slices.shape[0]} slices cannot fill {in_channels} x {out_channels} channels")
    return tf.transpose(tf.reshape(slices, [out_channels, in_channels, k, k]), [2, 3, 1, 0])


def _float_tensors(mu, log_sigma) -> tuple[tf.Tensor, tf.Tensor]:
    mu = tf.convert_to_tensor(mu)
    log_sigma = tf.cast(tf.convert_to_tensor(log_sigma), mu.dtype)
    if mu.shape != log_sigma.shape:
        raise ShapeError(f"mu {mu.shape} and log_sigma {log_sigma.shape} must have the same shape")
    return mu, log_sigma


class Prior:
    """Interface: ``kl(mu, log_sigma, seed=None) -> scalar`` for ``q = N(mu, exp(log_sigma)^2)``."""

    #: whether :meth:`kl` is a Monte Carlo estimate that uses ``seed``.
    needs_samples = False

    def kl(self, mu, log_sigma, seed=None) -> tf.Tensor:
        raise NotImplementedError


class StandardNormalPrior(Prior):
    """``p(w) = N(0, scale^2)`` for every weight; ``KL = sum log(scale/sigma) + (sigma^2 + mu^2)
    / (2 scale^2) - 1/2`` (``0.5 * sum(sigma^2 + mu^2 - 1 - log sigma^2)`` for ``scale = 1``)."""

    def __init__(self, scale: float = 1.0):
        self.scale = positive_number(scale, "scale")

    def kl(self, mu, log_sigma, seed=None) -> tf.Tensor:
        mu, log_sigma = _float_tensors(mu, log_sigma)
        log_scale = math.log(self.scale)
        ratio = (tf.exp(2.0 * log_sigma) + tf.square(mu)) / (self.scale ** 2)
        return tf.reduce_sum(log_scale - log_sigma + 0.5 * ratio - 0.5)

    def distribution(self, shape, dtype=tf.float32) -> tfd.Distribution:
        """The prior over a kernel of ``shape``: ``tfd.Independent(tfd.Normal(0, scale))`` with that
        event shape (no batch), the counterpart of a layer's ``kernel_posterior()`` in
        ``tfd.kl_divergence``."""
        shape = [int(d) for d in shape]
        if any(d < 1 for d in shape):
            raise ShapeError(f"a kernel shape must have positive dimensions, got {shape}")
        dtype = tf.as_dtype(dtype)
        return tfd.Independent(tfd.Normal(loc=tf.zeros(shape, dtype), scale=tf.fill(shape, tf.cast(self.scale, dtype))),
                               reinterpreted_batch_ndims=len(shape))

    def __repr__(self) -> str:
        return f"StandardNormalPrior(scale={self.scale})"


class LogUniformPrior(Prior):
    """The log-uniform prior ``p(|w|) ~ 1 / |w|`` with Molchanov et al.'s (2017) approximation::

        KL ~= k1 - k1 * sigmoid(k2 + k3 * log alpha) + 0.5 * log(1 + 1 / alpha)

    per weight, ``log alpha = log sigma^2 - log mu^2`` (``mu^2`` floored at ``eps``). The constant
    ``k1`` (the approximation's ``-C``) makes the KL tend to 0 as ``alpha -> inf``; the reference's
    ``kl_loguniform`` leaves it out, which changes nothing but the reported value.

    The reference's fconv experiments do not use this form: they run the log-uniform prior on
    ``bayes-mtrunca`` layers with :class:`TruncatedLogUniformPrior`. On a ``(mu, log sigma^2)``
    layer started at ``log sigma^2 = -10`` this KL is ~``-log|mu|`` per weight, whose gradient on
    the means (divided by a handful of examples) shrinks every weight in a short run.
    """

    def __init__(self, eps: float = 1e-16):
        self.eps = positive_number(eps, "eps")

    def log_alpha(self, mu, log_sigma) -> tf.Tensor:
        """``log sigma^2 - log(mu^2 + eps)``, same shape as ``mu``."""
        mu, log_sigma = _float_tensors(mu, log_sigma)
        return 2.0 * log_sigma - tf.math.log(tf.square(mu) + tf.cast(self.eps, mu.dtype))

    def kl_log_alpha(self, log_alpha) -> tf.Tensor:
        """The summed KL approximation as a function of ``log alpha`` alone."""
        la = tf.convert_to_tensor(log_alpha)
        k1, k2, k3 = LOG_UNIFORM_K1, LOG_UNIFORM_K2, LOG_UNIFORM_K3
        per_weight = k1 - k1 * tf.sigmoid(k2 + k3 * la) + 0.5 * tf.math.softplus(-la)
        return tf.reduce_sum(per_weight)

    def kl(self, mu, log_sigma, seed=None) -> tf.Tensor:
        return self.kl_log_alpha(self.log_alpha(mu, log_sigma))

    def __repr__(self) -> str:
        return "LogUniformPrior()"


class TruncatedLogUniformPrior(LogUniformPrior):
    """The log-uniform prior for a posterior with ``alpha = sigma^2 / mu^2 <= 1`` (Kingma et al. 2015)::

        KL ~= -0.5 * log alpha - c1 * alpha - c2 * alpha^2 - c3 * alpha^3

    per weight, the reference's ``kl_loguniform_with_trunc_alpha`` (no additive constant, as there).
    It is meant for ``variance="alpha"`` layers (``alpha = sigmoid(logit)``), where the KL depends on
    the ``alpha`` parameters only; on a ``(mu, log sigma)`` layer ``log alpha`` is clipped at 0.
    """

    def kl_log_alpha(self, log_alpha) -> tf.Tensor:
        """The summed KL fit at ``min(log alpha, 0)``."""
        la = tf.minimum(tf.convert_to_tensor(log_alpha), 0.0)
        alpha = tf.exp(la)
        c1, c2, c3 = TRUNCATED_LOG_UNIFORM_C
        return tf.reduce_sum(-0.5 * la - c1 * alpha - c2 * tf.square(alpha) - c3 * alpha ** 3)

    def __repr__(self) -> str:
        return "TruncatedLogUniformPrior()"


class DeepWeightPrior(Prior):
    """The deep weight prior: a frozen kernel VAE per kernel size over every ``k x k`` slice.

    ``kl`` returns the Monte Carlo estimate of the upper bound
    ``KL(q || p) <= -H(q) - E_q[ sum_slices bound(w_slice) ]`` with ``weight_samples`` draws
    ``w ~ q`` and ``latent_samples`` latent draws per slice in each bound (the reference's
    ``--dwp_samples`` is ``weight_samples``, with one latent draw each). Only kernels
    ``[k, k, in, out]`` whose ``k`` has a VAE are accepted.

    With ``antithetic=True`` every draw ``(eps, eta)`` (weight noise ``w = mu + sigma * eps``,
    latent noise ``z = mu_r + sigma_r * eta``) is paired with its mirror ``(-eps, -eta)`` and the
    two bounds averaged. Each member of a pair has the right distribution, so the estimate stays
    unbiased; the terms linear in the noise cancel within a pair, which removes most of the
    gradient noise the bound puts on the posterior means (the pair costs two VAE evaluations).
    ``weight_samples`` counts pairs then.

    Args:
        vae_by_kernel_size: ``{k: vae}`` (see :mod:`tfbdl.dwp.bound` for the VAE interface), or
            one VAE (used for its own ``kernel_size``).
        weight_samples, latent_samples: the Monte Carlo sizes.
        analytic_kl: closed-form ``KL(r(z|w) || N(0, I))`` in the bound, as the reference.
        antithetic: mirrored pairs of draws (see above); the reference draws plainly.
    """

    needs_samples = True

    def __init__(self, vae_by_kernel_size, *, weight_samples: int = 1, latent_samples: int = 1,
                 analytic_kl: bool = True, antithetic: bool = False):
        if not isinstance(vae_by_kernel_size, dict):
            check_vae(vae_by_kernel_size)
            vae_by_kernel_size = {int(vae_by_kernel_size.kernel_size): vae_by_kernel_size}
        if not vae_by_kernel_size:
            raise InvalidOptionError("DeepWeightPrior needs at least one kernel VAE ({kernel_size: vae})")
        vaes = {}
        for k, vae in vae_by_kernel_size.items():
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
                raise InvalidOptionError(f"kernel sizes must be positive integers, got {k!r}")
            check_vae(vae, int(k))
            vaes[int(k)] = vae
        self.vaes = vaes
        for name, value in (("weight_samples", weight_samples), ("latent_samples", latent_samples)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
        self.weight_samples = int(weight_samples)
        self.latent_samples = int(latent_samples)
        self.analytic_kl = bool(analytic_kl)
        self.antithetic = bool(antithetic)

    def vae_for(self, kernel_size: int):
        """The VAE of ``kernel_size x kernel_size`` slices, else ShapeError."""
        try:
            return self.vaes[int(kernel_size)]
        except KeyError:
            raise ShapeError(f"the deep weight prior has VAEs for kernel sizes {sorted(self.vaes)}, "
                             f"not {kernel_size}; add one or use another prior for this layer") from None

    def implicit_prior(self, kernel_size: int) -> "ImplicitDWP":
        """The implicit prior over ``kernel_size x kernel_size`` slices (:class:`ImplicitDWP`)."""
        return ImplicitDWP(self.vae_for(kernel_size))

    def kl(self, mu, log_sigma, seed=None) -> tf.Tensor:
        """``-H(q) - (1/S) sum_s sum_slices bound(w_s)``, ``w_s = mu + sigma * eps_s`` (scalar)."""
        mu, log_sigma = _float_tensors(mu, log_sigma)
        if mu.shape.rank != 4:
            raise ShapeError(f"the deep weight prior applies to convolution kernels [k, k, in, out], "
                             f"got shape {mu.shape}; use another prior for dense layers")
        vae = self.vae_for(int(mu.shape[0]))
        neg_entropy = -tf.reduce_sum(log_sigma + _HALF_LOG_2PI_E)
        seeds = split_seed(draw_seed(seed), 2)
        s = self.weight_samples
        eps = tf.random.stateless_normal(tf.concat([[s], tf.shape(mu)], 0), seeds[0], dtype=mu.dtype)
        latent_noise = None
        if self.antithetic:
            eps = tf.concat([eps, -eps], 0)                                # [2S, k, k, in, out]
            n = s * int(mu.shape[2]) * int(mu.shape[3])
            eta = tf.random.stateless_normal([self.latent_samples, n, int(vae.latent)], seeds[1], dtype=mu.dtype)
            latent_noise = tf.concat([eta, -eta], 1)                       # the mirror of slice i is i + n
        w = mu[None] + tf.exp(log_sigma)[None] * eps                    # [S, k, k, in, out]
        k = int(mu.shape[0])
        slices = tf.reshape(tf.transpose(w, [0, 4, 3, 1, 2]), [-1, k, k])  # kernel_slices_tensor of each draw
        bound = dwp_log_prior_bound(vae, slices, self.latent_samples, seeds[1], analytic_kl=self.analytic_kl,
                                    latent_noise=latent_noise)
        return neg_entropy - tf.reduce_sum(bound) / int(eps.shape[0])

    def __repr__(self) -> str:
        return (f"DeepWeightPrior(kernel_sizes={sorted(self.vaes)}, weight_samples={self.weight_samples}, "
                f"latent_samples={self.latent_samples}, analytic_kl={self.analytic_kl}, antithetic={self.antithetic})")


class ImplicitDWP:
    """The implicit deep weight prior of one kernel VAE: ``p(w) = int p(w | z) p(z) dz`` over slices.

    ``log p(w)`` has no closed form, so instead of ``log_prob`` the object offers its two estimates,
    built on the VAE's three ``tfp.distributions`` (:func:`tfbdl.dwp.bound.latent_prior`,
    :func:`~tfbdl.dwp.bound.encoder_distribution`, :func:`~tfbdl.dwp.bound.decoder_distribution`):

    - :meth:`log_prob_lower_bound`: the auxiliary bound ``E_r[log p(w|z) + log p(z) - log r(z|w)]``
      (:func:`tfbdl.dwp.bound.dwp_log_prior_bound`), ``<= log p(w)`` in expectation;
    - :meth:`log_prob_importance`: the importance-weighted (IWAE) estimate
      (:func:`tfbdl.dwp.bound.importance_log_prior`), between the bound and ``log p(w)``.

    Both take slices ``[n, k, k]`` and return ``[n]``; the ``kernel_*`` versions take a convolution
    kernel ``[k, k, in, out]`` and return ``[in, out]`` (one value per slice ``kernel[:, :, i, o]``).
    The same ``seed`` (see :func:`tfbdl.dwp.bound.draw_seed`) gives the same draws as the
    functions of :mod:`tfbdl.dwp.bound`. The VAE is frozen and duck-typed as there.
    """

    def __init__(self, vae):
        check_vae(vae)
        self.vae = vae

    @property
    def kernel_size(self) -> int:
        return int(self.vae.kernel_size)

    @property
    def latent(self) -> int:
        return int(self.vae.latent)

    # ------------------------------------------------------------------ the three distributions

    def latent_prior(self, dtype=tf.float32) -> tfd.Distribution:
        """``p(z) = N(0, I)``, event ``[latent]``."""
        return latent_prior(self.vae, dtype)

    def encoder_distribution(self, w) -> tfd.Distribution:
        """``r(z | w)`` for slices ``[n, k, k]``: batch ``[n]``, event ``[latent]``."""
        return encoder_distribution(self.vae, w)

    def decoder_distribution(self, z) -> tfd.Distribution:
        """``p(w | z)`` for codes ``[..., latent]``: batch ``[...]``, event ``[k, k]``."""
        return decoder_distribution(self.vae, z)

    # ------------------------------------------------------------------ log-density estimates

    def log_prob_lower_bound(self, w, num_samples: int = 1, seed=None, *, analytic_kl: bool = False,
                             latent_noise=None) -> tf.Tensor:
        """The auxiliary lower bound on ``log p(w)`` per slice, ``[n]`` (differentiable in ``w``);
        see :func:`tfbdl.dwp.bound.dwp_log_prior_bound` for the arguments."""
        return dwp_log_prior_bound(self.vae, w, num_samples, seed, analytic_kl=analytic_kl,
                                   latent_noise=latent_noise)

    def log_prob_importance(self, w, num_samples: int = 100, seed=None) -> tf.Tensor:
        """The importance-weighted estimate of ``log p(w)`` per slice, ``[n]``; see
        :func:`tfbdl.dwp.bound.importance_log_prior`."""
        return importance_log_prior(self.vae, w, num_samples, seed)

    def _per_slice(self, kernel, estimate) -> tf.Tensor:
        kernel = tf.convert_to_tensor(kernel)
        if kernel.shape.rank != 4 or kernel.shape[0] != self.kernel_size or kernel.shape[1] != self.kernel_size:
            k = self.kernel_size
            raise ShapeError(f"this implicit prior takes convolution kernels [{k}, {k}, in, out], got {kernel.shape}")
        values = estimate(kernel_slices_tensor(kernel))                    # [out * in], slice o * in + i
        return tf.transpose(tf.reshape(values, [int(kernel.shape[3]), int(kernel.shape[2])]))

    def kernel_log_prob_lower_bound(self, kernel, num_samples: int = 1, seed=None, *,
                                    analytic_kl: bool = False) -> tf.Tensor:
        """:meth:`log_prob_lower_bound` of every slice of a kernel ``[k, k, in, out]``: ``[in, out]``."""
        return self._per_slice(kernel, lambda s: self.log_prob_lower_bound(s, num_samples, seed,
                                                                           analytic_kl=analytic_kl))

    def kernel_log_prob_importance(self, kernel, num_samples: int = 100, seed=None) -> tf.Tensor:
        """:meth:`log_prob_importance` of every slice of a kernel ``[k, k, in, out]``: ``[in, out]``."""
        return self._per_slice(kernel, lambda s: self.log_prob_importance(s, num_samples, seed))

    # ------------------------------------------------------------------ draws

    def sample(self, sample_shape=(), seed=None, dtype=tf.float32) -> tf.Tensor:
        """Slices ``[*sample_shape, k, k]`` from the prior: ``z ~ p(z)``, then ``w ~ p(w | z)``."""
        seeds = tf.cast(tf.math.floormod(split_seed(draw_seed(seed), 2), 2 ** 31), tf.int32)  # TFP's seed dtype
        z = self.latent_prior(dtype).sample(sample_shape, seed=seeds[0])
        return self.decoder_distribution(z).sample(seed=seeds[1])

    def __repr__(self) -> str:
        return f"ImplicitDWP(kernel_size={self.kernel_size}, latent={self.latent})"
