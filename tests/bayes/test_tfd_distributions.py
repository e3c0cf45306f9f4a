"""The deep weight prior's densities and the weight posteriors as ``tfp.distributions`` values.

- :class:`tfbdl.dwp.vae.KernelVAE`'s ``p(z)``, ``r(z | w)``, ``p(w | z)`` against ``encode`` /
  ``decode`` and scipy's normal log-densities (a random VAE and the release's trained ones).
- :class:`tfbdl.dwp.priors.ImplicitDWP` against :mod:`tfbdl.dwp.bound` and, on the linear-Gaussian
  VAE of ``test_dwp_bound`` whose marginal ``p(w)`` is an exact Gaussian, against ``log p(w)``.
- The BNN layers' ``kernel_posterior()`` and mean-field VI's ``posterior()`` /
  ``weight_posteriors()`` against their parameters and closed-form KL divergences.
"""

import math

import numpy as np
import pytest

from tests.conftest import release_dir

tf = pytest.importorskip("tensorflow")
tfp = pytest.importorskip("tensorflow_probability")
scipy_stats = pytest.importorskip("scipy.stats")

from tests.dwp.test_dwp_bound import LinearGaussianVAE, _slices  # noqa: E402
from tfbdl.bayes.hmc import bnn_log_prob, predict_bnn  # noqa: E402
from tfbdl.bayes.vi import MeanFieldVIResult, fit_mean_field_vi, mean_field_surrogate  # noqa: E402
from tfbdl.dwp.bnn import BayesConv2D, BayesDense  # noqa: E402
from tfbdl.dwp.bound import (  # noqa: E402
    decoder_distribution,
    draw_seed,
    dwp_log_prior_bound,
    importance_log_prior,
)
from tfbdl.dwp.priors import DeepWeightPrior, ImplicitDWP, StandardNormalPrior  # noqa: E402
from tfbdl.dwp.vae import KernelVAE  # noqa: E402
from tfbdl.errors import InvalidOptionError, ShapeError  # noqa: E402

tfd = tfp.distributions
F32 = dict(rtol=1e-5, atol=1e-5)  # float32 precision on values of order 1-100


def _release_vae(k):
    path = release_dir() / f"vae{k}x{k}.npz"
    bank = release_dir() / f"conv{k}x{k}_test.npy"
    if not path.is_file() or not bank.is_file():
        pytest.skip(f"the deep weight prior release's vae{k}x{k}.npz / conv{k}x{k}_test.npy are not in {release_dir()}")
    w = np.load(bank).reshape(-1, k, k)[:40].astype(np.float32)
    return KernelVAE.from_release(path), w


@pytest.fixture(scope="module")
def small_vae():
    vae = KernelVAE(3, hidden=4, latent=2, seed=0)
    w = 0.3 * np.random.default_rng(0).standard_normal((6, 3, 3)).astype(np.float32)
    return vae, w


# --------------------------------------------------------------------------- the kernel VAE


def _check_vae_distributions(vae, w):
    k, latent, n = vae.kernel_size, vae.latent, len(w)
    rng = np.random.default_rng(1)
    # p(z)
    p_z = vae.prior_z()
    assert isinstance(p_z, tfd.Independent) and p_z.event_shape == (latent,) and p_z.batch_shape == ()
    z = rng.standard_normal((n, latent)).astype(np.float32)
    np.testing.assert_allclose(p_z.log_prob(z).numpy(), scipy_stats.norm().logpdf(z).sum(-1), **F32)
    np.testing.assert_array_equal(p_z.mean().numpy(), np.zeros(latent))
    np.testing.assert_array_equal(p_z.stddev().numpy(), np.ones(latent))
    # r(z | w)
    r = vae.encoder_distribution(w)
    mu, log_sigma = (t.numpy() for t in vae.encode(w))
    assert r.batch_shape == (n,) and r.event_shape == (latent,)
    np.testing.assert_allclose(r.mean().numpy(), mu, rtol=1e-6)
    np.testing.assert_allclose(r.stddev().numpy(), np.exp(log_sigma), rtol=1e-6)
    np.testing.assert_allclose(r.log_prob(z).numpy(), scipy_stats.norm(mu, np.exp(log_sigma)).logpdf(z).sum(-1), **F32)
    assert r.sample(3, seed=[1, 2]).shape == (3, n, latent)
    # p(w | z)
    p_w = vae.decoder_distribution(z)
    w_mu, w_log_sigma = (t.numpy() for t in vae.decode(z))
    assert p_w.batch_shape == (n,) and p_w.event_shape == (k, k)
    np.testing.assert_allclose(p_w.mean().numpy(), w_mu, rtol=1e-6)
    np.testing.assert_allclose(p_w.stddev().numpy(), np.exp(w_log_sigma), rtol=1e-6)
    expected = scipy_stats.norm(w_mu, np.exp(w_log_sigma)).logpdf(w).sum((1, 2))
    np.testing.assert_allclose(p_w.log_prob(w).numpy(), expected, **F32)
    assert p_w.sample(seed=[3, 4]).shape == (n, k, k)
    assert vae.decoder_distribution(np.stack([z, z])).batch_shape == (2, n)  # codes [..., latent]
    # the VAE's own ELBO terms are the distributions' log-likelihood and KL at z = mean + stddev * eps
    eps = rng.standard_normal((n, latent)).astype(np.float32)
    log_lik, kl = (t.numpy() for t in vae.elbo_terms(w, eps))
    z_eps = r.mean() + r.stddev() * eps
    np.testing.assert_allclose(vae.decoder_distribution(z_eps).log_prob(w).numpy(), log_lik, **F32)
    np.testing.assert_allclose(tfd.kl_divergence(r, p_z).numpy(), kl, **F32)


def test_kernel_vae_distributions_equal_encode_decode_and_closed_forms(small_vae):
    vae, w = small_vae
    _check_vae_distributions(vae, w)
    with pytest.raises(ShapeError):
        vae.encoder_distribution(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ShapeError):
        vae.decoder_distribution(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("k", [7, 5])
def test_release_vae_distributions(k):
    vae, w = _release_vae(k)
    _check_vae_distributions(vae, w)


# --------------------------------------------------------------------------- the implicit prior


def _bound_from_distributions(vae, w, eta):
    """E_r[log p(w|z) + log p(z) - log r(z|w)] from the VAE's three distributions, noise ``eta``."""
    r = vae.encoder_distribution(w)
    z = r.mean()[None] + r.stddev()[None] * eta
    p_w = vae.decoder_distribution(z)
    return tf.reduce_mean(p_w.log_prob(w[None]) + vae.prior_z().log_prob(z) - r.log_prob(z), axis=0).numpy()


def test_implicit_prior_on_the_release_vae_equals_the_bound_functions():
    vae, w = _release_vae(7)
    prior = ImplicitDWP(vae)
    seed = [5, 9]
    bound = prior.log_prob_lower_bound(w, 3, seed).numpy()
    np.testing.assert_allclose(bound, dwp_log_prior_bound(vae, w, 3, seed).numpy(), rtol=1e-5)
    eta = tf.random.stateless_normal([3, len(w), vae.latent], draw_seed(seed)).numpy()  # the functions' draws
    np.testing.assert_allclose(bound, _bound_from_distributions(vae, w, eta), rtol=1e-5)
    np.testing.assert_allclose(prior.log_prob_lower_bound(w, 3, 0, analytic_kl=True).numpy(),
                               dwp_log_prior_bound(vae, w, 3, 0, analytic_kl=True).numpy(), rtol=1e-5)
    iwae = prior.log_prob_importance(w, 3, seed).numpy()
    np.testing.assert_allclose(iwae, importance_log_prior(vae, w, 3, seed).numpy(), rtol=1e-5)
    assert np.all(iwae >= bound - 1e-4)  # the same draws: log-mean-exp >= mean
    assert np.all(np.isfinite(prior.sample(4, seed=0).numpy())) and prior.sample((2, 3), seed=0).shape == (2, 3, 7, 7)


def test_implicit_prior_on_a_linear_gaussian_vae():
    vae = LinearGaussianVAE(shift=0.2, scale=1.2)  # r(z | w) is not the exact posterior: a gap
    prior = ImplicitDWP(vae)
    assert prior.kernel_size == 2 and prior.latent == 2
    w = _slices(vae, n=4, seed=2)
    exact = vae.exact_log_prob(w)
    eta = np.random.default_rng(3).standard_normal((5, 4, 2))
    given = prior.log_prob_lower_bound(w, 5, latent_noise=eta).numpy()
    np.testing.assert_allclose(given, dwp_log_prior_bound(vae, w, 5, latent_noise=eta).numpy(), rtol=1e-10)
    # the same expectation written with scipy's densities
    z_mu, z_log_sigma = (t.numpy() for t in vae.encode(w))
    z = z_mu[None] + np.exp(z_log_sigma)[None] * eta
    closed = (scipy_stats.norm(z @ vae.A.T + vae.b, vae.s).logpdf(w.reshape(4, -1)[None]).sum(-1)
              + scipy_stats.norm().logpdf(z).sum(-1) - scipy_stats.norm(z_mu[None], np.exp(z_log_sigma)[None]).logpdf(z).sum(-1))
    np.testing.assert_allclose(given, closed.mean(0), rtol=1e-6)  # as test_dwp_bound: TF's float64 matmul
    # below the exact log-density; the importance estimate (same draws) is closer
    bound = prior.log_prob_lower_bound(w, 4000, seed=7).numpy()
    iwae = prior.log_prob_importance(w, 4000, seed=7).numpy()
    np.testing.assert_allclose(iwae, importance_log_prior(vae, w, 4000, seed=7).numpy(), rtol=1e-10)
    assert np.all(bound < exact - 0.3)
    assert np.all(np.abs(iwae - exact) < np.abs(bound - exact))
    np.testing.assert_allclose(iwae, exact, atol=0.05)


def test_implicit_prior_of_a_kernel_and_its_samples():
    vae = LinearGaussianVAE()  # r(z | w) is the exact posterior: every estimate is log p(w)
    prior = DeepWeightPrior(vae).implicit_prior(2)
    assert isinstance(prior, ImplicitDWP)
    kernel = np.random.default_rng(4).normal(0.1, 0.5, size=(2, 2, 2, 3))  # [k, k, in, out]
    exact = np.array([[float(vae.exact_log_prob(kernel[None, :, :, i, o])) for o in range(3)] for i in range(2)])
    np.testing.assert_allclose(prior.kernel_log_prob_lower_bound(kernel, 2, seed=0).numpy(), exact, atol=1e-6)
    np.testing.assert_allclose(prior.kernel_log_prob_importance(kernel, 3, seed=1).numpy(), exact, atol=1e-6)
    with pytest.raises(ShapeError):
        prior.kernel_log_prob_lower_bound(np.zeros((3, 3, 1, 1)))
    with pytest.raises(InvalidOptionError):
        ImplicitDWP(object())
    draws = prior.sample(20000, seed=3, dtype=tf.float64).numpy()
    assert draws.shape == (20000, 2, 2)
    np.testing.assert_array_equal(prior.sample(5, seed=3).numpy(), prior.sample(5, seed=3).numpy())
    flat = draws.reshape(len(draws), -1)
    np.testing.assert_allclose(flat.mean(0), vae.b, atol=0.05)
    np.testing.assert_allclose(np.cov(flat, rowvar=False), vae.cov, atol=0.05)
    p_w = decoder_distribution(vae, np.zeros((3, 2)))
    assert p_w.batch_shape == (3,) and p_w.event_shape == (2, 2)
    np.testing.assert_allclose(p_w.stddev().numpy(), vae.s)  # a fixed variance broadcasts


# --------------------------------------------------------------------------- the BNN layers


@pytest.mark.parametrize("variance", ["log_sigma2", "alpha"])
@pytest.mark.parametrize("dense", [False, True])
def test_layer_kernel_posterior(variance, dense):
    rng = np.random.default_rng(5)
    if dense:
        layer = BayesDense(4, seed=0, variance=variance)
        layer.build((None, 3))
    else:
        layer = BayesConv2D(4, 3, seed=0, variance=variance)
        layer.build((None, 8, 8, 2))
    shape = tuple(layer.kernel_mu.shape)
    if variance == "alpha":
        layer.kernel_alpha_logit.assign(rng.uniform(-4.0, 1.0, size=shape))
    else:
        layer.kernel_log_sigma2.assign(rng.uniform(-6.0, 0.0, size=shape))
    q = layer.kernel_posterior()
    assert isinstance(q, tfd.Independent) and q.event_shape == shape and q.batch_shape == ()
    np.testing.assert_array_equal(q.mean().numpy(), layer.kernel_mu.numpy())
    np.testing.assert_allclose(q.stddev().numpy(), np.sqrt(layer.kernel_sigma2.numpy()), rtol=1e-6)
    np.testing.assert_allclose(q.stddev().numpy(), np.exp(layer.kernel_log_sigma.numpy()), rtol=1e-5)
    assert q.sample(2, seed=[0, 1]).shape == (2, *shape)
    for scale in (1.0, 0.5):
        prior = StandardNormalPrior(scale)
        ours = float(prior.kl(layer.kernel_mu, layer.kernel_log_sigma))
        np.testing.assert_allclose(float(tfd.kl_divergence(q, prior.distribution(shape))), ours, rtol=1e-5)


def test_unbuilt_layer_has_no_posterior():
    with pytest.raises(InvalidOptionError):
        BayesDense(3).kernel_posterior()


# --------------------------------------------------------------------------- mean-field VI


def _kl_to_normal(mean, std, scale):
    return np.sum(np.log(scale / std) + (std ** 2 + mean ** 2) / (2 * scale ** 2) - 0.5)


def test_vi_posterior_is_a_snapshot_of_the_surrogate():
    surrogate = mean_field_surrogate([np.arange(3.0), np.ones((2, 2))], init_scale=0.2)
    result = MeanFieldVIResult(surrogate=surrogate, losses=np.zeros(1))
    q = result.posterior()
    assert isinstance(q, tfd.JointDistributionSequential) and not q.trainable_variables
    for part, mean, std in zip(q.model, result.mean, result.stddev):
        np.testing.assert_array_equal(part.mean().numpy(), mean)
        np.testing.assert_allclose(part.stddev().numpy(), std, rtol=1e-6)
    assert [d.shape for d in q.sample(4, seed=[1, 2])] == [(4, 3), (4, 2, 2)]
    surrogate.model[0].distribution.loc.assign(np.zeros(3))
    np.testing.assert_array_equal(q.model[0].mean().numpy(), np.arange(3.0))  # unchanged: constants
    assert [p.event_shape for p in result.weight_posteriors()] == [(3,), (2, 2)]


def test_vi_weight_posteriors_of_a_bnn():
    x = np.linspace(-1.0, 1.0, 8)
    y = np.sin(2 * x)
    density = bnn_log_prob((1, 4, 1), x, y, prior_scale=0.7, noise_scale=0.1, activation="tanh")
    result = fit_mean_field_vi(density, np.zeros(density.num_params), num_steps=5, learning_rate=0.05, seed=0)
    result.log_density = density
    rng = np.random.default_rng(6)
    result.surrogate.distribution.scale.assign(rng.uniform(0.05, 0.5, density.num_params))
    mean, std = result.mean, result.stddev
    q = result.posterior()
    assert q.event_shape == (density.num_params,)
    np.testing.assert_array_equal(q.mean().numpy(), mean)
    np.testing.assert_allclose(q.stddev().numpy(), std, rtol=1e-6)
    parts = result.weight_posteriors()
    assert [tuple(p.event_shape) for p in parts] == [(1, 4), (4,), (4, 1), (1,)] == list(density.shapes)
    for part, m, s in zip(parts, density.unflatten(mean), density.unflatten(std)):
        np.testing.assert_array_equal(part.mean().numpy(), m.numpy())
        np.testing.assert_allclose(part.stddev().numpy(), s.numpy(), rtol=1e-6)
    # KL to the BNN's prior N(0, prior_scale^2): per weight array and in total, closed form
    per_array = [float(tfd.kl_divergence(p, tfd.Independent(tfd.Normal(tf.zeros(p.event_shape, tf.float64), 0.7),
                                                            len(p.event_shape)))) for p in parts]
    expected = [_kl_to_normal(m.numpy(), s.numpy(), 0.7) for m, s in zip(density.unflatten(mean), density.unflatten(std))]
    np.testing.assert_allclose(per_array, expected, rtol=1e-10)
    total = tfd.kl_divergence(q, tfd.Independent(tfd.Normal(tf.zeros(density.num_params, tf.float64), 0.7), 1))
    np.testing.assert_allclose(float(total), _kl_to_normal(mean, std, 0.7), rtol=1e-10)
    # draws of the joint over the weight arrays run the network
    draws = tfd.JointDistributionSequential(parts).sample(6, seed=[2, 3])
    assert [tuple(d.shape) for d in draws] == [(6, 1, 4), (6, 4), (6, 4, 1), (6, 1)]
    assert predict_bnn(draws, x, density).shape == (6, 8, 1)
    assert math.isfinite(float(q.log_prob(q.sample(seed=[4, 5]))))
