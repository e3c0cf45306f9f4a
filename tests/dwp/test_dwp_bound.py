"""Tests of tfbdl.dwp.bound and tfbdl.dwp.priors against a tractable linear-Gaussian "VAE".

The stand-in VAE has p(z) = N(0, I), p(w | z) = N(A z + b, s^2 I) over flattened k x k slices, so
the prior over slices is exactly N(b, A A^T + s^2 I). With orthogonal columns of A the exact
posterior p(z | w) is a factorised Gaussian, which a diagonal encoder r(z | w) can equal.
"""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
scipy_stats = pytest.importorskip("scipy.stats")

from tfbdl.dwp.bound import draw_seed, dwp_log_prior_bound, importance_log_prior  # noqa: E402
from tfbdl.dwp.priors import (  # noqa: E402
    DeepWeightPrior,
    LogUniformPrior,
    StandardNormalPrior,
    kernel_from_slices_tensor,
    kernel_slices_tensor,
)
from tfbdl.errors import InvalidOptionError, ShapeError  # noqa: E402


class LinearGaussianVAE:
    """p(w|z) = N(A z + b, s^2 I); encoder = exact posterior, optionally shifted / rescaled."""

    def __init__(self, kernel_size=2, latent=2, s=0.3, shift=0.0, scale=1.0, seed=0):
        rng = np.random.default_rng(seed)
        d = kernel_size * kernel_size
        q, _ = np.linalg.qr(rng.standard_normal((d, latent)))
        self.A = q * np.linspace(1.5, 0.6, latent)          # orthogonal columns: A^T A diagonal
        self.b = 0.2 * rng.standard_normal(d)
        self.s = s
        self.kernel_size, self.latent = kernel_size, latent
        precision = 1.0 + np.sum(self.A ** 2, axis=0) / s ** 2   # diag of I + A^T A / s^2
        self.post_var = 1.0 / precision
        self.M = self.post_var[:, None] * self.A.T / s ** 2   # posterior mean = M (w - b)
        self.shift, self.scale = shift, scale

    @property
    def cov(self):
        return self.A @ self.A.T + self.s ** 2 * np.eye(self.A.shape[0])

    def exact_log_prob(self, w):
        flat = np.asarray(w, np.float64).reshape(len(w), -1)
        return scipy_stats.multivariate_normal(self.b, self.cov).logpdf(flat)

    def exact_posterior(self, w):
        flat = np.asarray(w, np.float64).reshape(len(w), -1)
        return (flat - self.b) @ self.M.T, np.broadcast_to(self.post_var, (len(w), self.latent))

    def encode(self, w):
        w = tf.convert_to_tensor(w)
        flat = tf.reshape(w, [tf.shape(w)[0], -1])
        mu = tf.matmul(flat - tf.constant(self.b, w.dtype), tf.constant(self.M.T, w.dtype)) + self.shift
        log_sigma = tf.zeros_like(mu) + tf.constant(0.5 * np.log(self.post_var) + math.log(self.scale), w.dtype)
        return mu, log_sigma

    def decode(self, z):
        z = tf.convert_to_tensor(z)
        k = self.kernel_size
        mu = tf.matmul(z, tf.constant(self.A.T, z.dtype)) + tf.constant(self.b, z.dtype)
        mu = tf.reshape(mu, [-1, k, k])
        return mu, tf.fill(tf.shape(mu), tf.cast(math.log(self.s), z.dtype))

    def sample_kernels(self, num, seed=0):
        z = np.random.default_rng(seed).standard_normal((num, self.latent))
        return self.decode(z)[0].numpy()


def _slices(vae, n=5, seed=1):
    rng = np.random.default_rng(seed)
    flat = rng.multivariate_normal(vae.b, vae.cov, size=n)
    return flat.reshape(n, vae.kernel_size, vae.kernel_size)


def _kl_diag_gauss(m1, v1, m2, v2):
    return 0.5 * np.sum(np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0, axis=-1)


# --------------------------------------------------------------------------- the bound


def test_bound_is_tight_with_the_exact_posterior():
    vae = LinearGaussianVAE()
    w = _slices(vae)
    exact = vae.exact_log_prob(w)
    for s in (1, 7):
        bound = dwp_log_prior_bound(vae, w, num_samples=s, seed=3).numpy()
        np.testing.assert_allclose(bound, exact, rtol=0, atol=1e-6)
    iwae = importance_log_prior(vae, w, num_samples=50, seed=3).numpy()
    np.testing.assert_allclose(iwae, exact, rtol=0, atol=1e-6)


def _expected_bound(vae, w):
    """E_r[bound] = log p(w) - KL(r(z|w) || p(z|w)) in closed form."""
    post_mu, post_var = vae.exact_posterior(w)
    enc_mu, enc_log_sigma = (t.numpy() for t in vae.encode(w))
    gap = _kl_diag_gauss(enc_mu, np.exp(2 * enc_log_sigma), post_mu, post_var)
    return vae.exact_log_prob(w) - gap, gap


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_bound_expectation_with_a_wrong_encoder(analytic_kl):
    vae = LinearGaussianVAE(shift=0.4, scale=1.3)
    w = _slices(vae, n=3)
    expected, _ = _expected_bound(vae, w)
    draws = 20000  # one latent draw for each of many copies of each slice: the draws' spread is seen
    per_draw = dwp_log_prior_bound(vae, np.repeat(w, draws, axis=0), num_samples=1, seed=0,
                                   analytic_kl=analytic_kl).numpy().reshape(3, draws)
    stderr = per_draw.std(axis=1) / math.sqrt(draws)
    assert np.all(np.abs(per_draw.mean(axis=1) - expected) < 5 * stderr)


def test_bound_is_strictly_below_with_a_wrong_encoder():
    vae = LinearGaussianVAE(shift=0.7, scale=1.6)
    w = _slices(vae, n=4)
    exact = vae.exact_log_prob(w)
    expected, gap = _expected_bound(vae, w)
    assert np.all(gap > 0.3)
    bound = dwp_log_prior_bound(vae, w, num_samples=20000, seed=5).numpy()
    np.testing.assert_allclose(bound, expected, atol=0.03)
    assert np.all(bound < exact - 0.25)


def test_importance_estimate_lies_between_bound_and_exact():
    vae = LinearGaussianVAE(shift=0.2, scale=1.2)
    w = _slices(vae, n=4, seed=2)
    exact = vae.exact_log_prob(w)
    _, gap = _expected_bound(vae, w)
    assert np.all(gap > 0.5)
    bound = dwp_log_prior_bound(vae, w, num_samples=5000, seed=7).numpy()
    iwae = importance_log_prior(vae, w, num_samples=5000, seed=7).numpy()
    assert np.all(iwae > bound + 0.4)            # same draws: log-mean-exp >= mean, here by a margin
    assert np.all(iwae < exact + 0.05)           # below the exact value up to Monte Carlo error
    np.testing.assert_allclose(iwae, exact, atol=0.05)


def test_bound_gradient_in_w_is_the_score_of_the_marginal():
    vae = LinearGaussianVAE()
    w = tf.constant(_slices(vae, n=3, seed=4))
    with tf.GradientTape() as tape:
        tape.watch(w)
        total = tf.reduce_sum(dwp_log_prior_bound(vae, w, num_samples=2, seed=0))
    grad = tape.gradient(total, w).numpy().reshape(3, -1)
    expected = -np.linalg.solve(vae.cov, (w.numpy().reshape(3, -1) - vae.b).T).T
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6)


def test_float32_slices_and_seeds():
    vae = LinearGaussianVAE(shift=0.3)
    w = _slices(vae, n=3).astype(np.float32)
    a = dwp_log_prior_bound(vae, w, num_samples=4, seed=11)
    b = dwp_log_prior_bound(vae, w, num_samples=4, seed=11)
    c = dwp_log_prior_bound(vae, w, num_samples=4, seed=12)
    assert a.dtype == tf.float32 and a.shape == (3,)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    np.testing.assert_array_equal(draw_seed([3, 4]).numpy(), [3, 4])


def test_bad_inputs_raise_named_errors():
    vae = LinearGaussianVAE()
    with pytest.raises(ShapeError):
        dwp_log_prior_bound(vae, np.zeros((3, 3, 3)), 1, 0)
    with pytest.raises(InvalidOptionError):
        dwp_log_prior_bound(object(), np.zeros((3, 2, 2)), 1, 0)
    with pytest.raises(InvalidOptionError):
        dwp_log_prior_bound(vae, np.zeros((3, 2, 2)), 0, 0)
    with pytest.raises(InvalidOptionError):
        draw_seed("x")


# --------------------------------------------------------------------------- priors


def test_kernel_slices_order_and_inverse():
    kernel = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
    slices = kernel_slices_tensor(kernel).numpy()
    assert slices.shape == (8, 3, 3)
    for o in range(4):
        for i in range(2):
            np.testing.assert_array_equal(slices[o * 2 + i], kernel[:, :, i, o])
    np.testing.assert_array_equal(kernel_from_slices_tensor(slices, 2, 4).numpy(), kernel)
    with pytest.raises(ShapeError):
        kernel_slices_tensor(np.zeros((3, 4, 1, 1)))


@pytest.mark.parametrize("antithetic", [False, True])
def test_deep_weight_prior_kl_matches_the_exact_gaussian_kl(antithetic):
    vae = LinearGaussianVAE(kernel_size=2, latent=2)
    rng = np.random.default_rng(0)
    shape = (2, 2, 2, 3)                     # 6 slices of 2x2
    mu = 0.3 * rng.standard_normal(shape)
    log_sigma = np.log(0.1 + 0.2 * rng.random(shape))
    # exact KL(q || p) summed over slices, p = N(b, cov) per slice, q factorised per entry
    cov_inv = np.linalg.inv(vae.cov)
    _, logdet = np.linalg.slogdet(vae.cov)
    exact = 0.0
    for m, ls in zip(kernel_slices_tensor(mu).numpy().reshape(6, -1), kernel_slices_tensor(log_sigma).numpy().reshape(6, -1)):
        var = np.exp(2 * ls)
        exact += 0.5 * (np.sum(np.diag(cov_inv) * var) + (m - vae.b) @ cov_inv @ (m - vae.b) - 4
                        + logdet - np.sum(np.log(var)))
    prior = DeepWeightPrior({2: vae}, weight_samples=2000 if antithetic else 4000, analytic_kl=False,
                            antithetic=antithetic)
    est = float(prior.kl(tf.constant(mu), tf.constant(log_sigma), seed=0))
    np.testing.assert_allclose(est, exact, rtol=0.02)
    assert prior.needs_samples
    with pytest.raises(ShapeError):
        prior.kl(tf.zeros((3, 3, 1, 1), tf.float64), tf.zeros((3, 3, 1, 1), tf.float64), seed=0)
    with pytest.raises(ShapeError):
        prior.kl(tf.zeros((4, 3), tf.float64), tf.zeros((4, 3), tf.float64), seed=0)


def _kl_gradient_in_mu(prior, mu, log_sigma, seed):
    mu = tf.Variable(mu)
    with tf.GradientTape() as tape:
        kl = prior.kl(mu, tf.constant(log_sigma), seed=seed)
    return tape.gradient(kl, mu).numpy()


def test_antithetic_pairs_give_the_exact_gradient_for_the_exact_posterior():
    # With r = p(z|w) every draw of the bound is log p(w), so the KL estimate is -H(q) - log p(w) at
    # w = mu + sigma * eps; its gradient in mu, C^-1 (w - b) per slice, is linear in eps and a mirrored
    # pair returns C^-1 (mu - b) exactly, whatever the seed. One plain draw does not.
    vae = LinearGaussianVAE(kernel_size=2, latent=2)
    rng = np.random.default_rng(3)
    shape = (2, 2, 1, 3)
    mu, log_sigma = 0.3 * rng.standard_normal(shape), np.full(shape, np.log(0.2))
    flat_mu = kernel_slices_tensor(mu).numpy().reshape(3, -1)
    exact = kernel_from_slices_tensor(((flat_mu - vae.b) @ np.linalg.inv(vae.cov)).reshape(3, 2, 2), 1, 3).numpy()
    antithetic = DeepWeightPrior(vae, analytic_kl=False, antithetic=True)
    plain = DeepWeightPrior(vae, analytic_kl=False)
    for seed in range(3):
        np.testing.assert_allclose(_kl_gradient_in_mu(antithetic, mu, log_sigma, seed), exact, atol=1e-10)
        assert np.max(np.abs(_kl_gradient_in_mu(plain, mu, log_sigma, seed) - exact)) > 0.05


def test_antithetic_pairs_cancel_the_gradient_noise_of_a_wrong_encoder():
    # A linear encoder that is not the posterior, with the reference's analytic latent KL: the bound is
    # quadratic in the noise (eps, eta), its gradient in mu affine, so mirrored pairs leave no noise, and
    # their gradient is the mean of plain single-draw gradients.
    vae = LinearGaussianVAE(kernel_size=2, latent=2, shift=0.4, scale=1.7)
    rng = np.random.default_rng(4)
    shape = (2, 2, 2, 2)
    mu, log_sigma = 0.3 * rng.standard_normal(shape), np.log(0.1 + 0.2 * rng.random(shape))
    antithetic = DeepWeightPrior(vae, antithetic=True)
    grads = [_kl_gradient_in_mu(antithetic, mu, log_sigma, seed) for seed in range(3)]
    np.testing.assert_allclose(grads[1], grads[0], atol=1e-10)
    np.testing.assert_allclose(grads[2], grads[0], atol=1e-10)
    many_plain = _kl_gradient_in_mu(DeepWeightPrior(vae, weight_samples=20000), mu, log_sigma, 0)
    np.testing.assert_allclose(grads[0], many_plain, atol=0.03 * np.max(np.abs(many_plain)))
    one_plain = [_kl_gradient_in_mu(DeepWeightPrior(vae), mu, log_sigma, seed) for seed in range(2)]
    assert np.max(np.abs(one_plain[0] - one_plain[1])) > 0.05


def test_latent_noise_can_be_given():
    vae = LinearGaussianVAE(kernel_size=2, latent=2, shift=0.2, scale=1.3)
    w = _slices(vae, n=4)
    eta = np.random.default_rng(5).standard_normal((3, 4, 2))
    given = dwp_log_prior_bound(vae, w, 3, seed=0, latent_noise=eta).numpy()
    np.testing.assert_allclose(dwp_log_prior_bound(vae, w, 3, seed=99, latent_noise=eta).numpy(), given)
    z_mu, z_log_sigma = (t.numpy() for t in vae.encode(w))
    z = z_mu[None] + np.exp(z_log_sigma)[None] * eta
    flat = w.reshape(4, -1)
    log_lik = scipy_stats.norm(z @ vae.A.T + vae.b, vae.s).logpdf(flat[None]).sum(-1)
    log_pz = scipy_stats.norm().logpdf(z).sum(-1)
    log_r = scipy_stats.norm(z_mu[None], np.exp(z_log_sigma)[None]).logpdf(z).sum(-1)
    np.testing.assert_allclose(given, np.mean(log_lik + log_pz - log_r, axis=0), rtol=1e-6)
    with pytest.raises(ShapeError):
        dwp_log_prior_bound(vae, w, 3, latent_noise=eta[..., :1])


def test_deep_weight_prior_kl_is_differentiable_in_the_posterior():
    vae = LinearGaussianVAE(kernel_size=2, latent=2)
    prior = DeepWeightPrior(vae)  # one VAE: used for its own kernel size
    mu = tf.Variable(0.1 * np.ones((2, 2, 1, 2)))
    log_sigma = tf.Variable(np.full((2, 2, 1, 2), -2.0))
    with tf.GradientTape() as tape:
        kl = prior.kl(mu, log_sigma, seed=1)
    g_mu, g_ls = tape.gradient(kl, [mu, log_sigma])
    assert np.all(np.isfinite(g_mu.numpy())) and np.any(g_mu.numpy() != 0)
    assert np.all(np.isfinite(g_ls.numpy())) and np.any(g_ls.numpy() != 0)


def test_prior_options_are_checked():
    with pytest.raises(InvalidOptionError):
        StandardNormalPrior(scale=0.0)
    with pytest.raises(InvalidOptionError):
        LogUniformPrior(eps=-1.0)
    with pytest.raises(InvalidOptionError):
        DeepWeightPrior({})
    with pytest.raises(ShapeError):
        DeepWeightPrior({3: LinearGaussianVAE(kernel_size=2)})
    with pytest.raises(InvalidOptionError):
        DeepWeightPrior({2: LinearGaussianVAE()}, weight_samples=0)


# --------------------------------------------------------------------------- prior structure


def test_prior_structure_against_the_exact_density():
    from tfbdl.dwp.diagnostics import gaussian_log_density, prior_structure

    vae = LinearGaussianVAE(kernel_size=2, latent=2)  # its marginal is N(b, A A^T + s^2 I), r the exact posterior
    train, held = _slices(vae, n=4000, seed=2), _slices(vae, n=1000, seed=3)
    exact = vae.exact_log_prob(held)
    found = prior_structure(vae, train, held, num_samples=20, seed=0)
    assert found["vae"] == pytest.approx(np.mean(exact) / 4, abs=1e-5)     # IWAE is exact with r = p(z|w)
    assert found["gaussian"] == pytest.approx(np.mean(exact) / 4, abs=0.02)  # the fit is close to the truth
    assert found["zero_kernel"] == pytest.approx(float(vae.exact_log_prob(np.zeros((1, 2, 2)))) / 4, abs=1e-5)
    flat = train.reshape(len(train), -1)
    cov = np.cov(flat, rowvar=False)
    cov += 1e-3 * np.mean(np.diag(cov)) * np.eye(4)  # the documented ridge
    fitted = scipy_stats.multivariate_normal(flat.mean(axis=0), cov).logpdf(held.reshape(len(held), -1))
    np.testing.assert_allclose(gaussian_log_density(train, held), fitted, rtol=1e-10)
    with pytest.raises(ShapeError):
        gaussian_log_density(train, np.zeros((3, 3, 3)))
    with pytest.raises(ShapeError):
        prior_structure(vae, train, np.zeros((0, 2, 2)))
    with pytest.raises(ShapeError, match="at least 2 training slices"):
        gaussian_log_density(train[:1], held)
