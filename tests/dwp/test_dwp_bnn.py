"""Tests of tfbdl.dwp.bnn: Bayesian layers, their prior terms, the Bayesian fconv and its training."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.dwp.bnn import (  # noqa: E402
    BayesConv2D,
    BayesDense,
    bayes_layers,
    bayesian_fconv,
    elbo_loss,
    fit_bnn,
    kl_total,
    predict_bnn_proba,
)
from tfbdl.dwp.priors import (  # noqa: E402
    DeepWeightPrior,
    LogUniformPrior,
    StandardNormalPrior,
    TruncatedLogUniformPrior,
)
from tfbdl.errors import InvalidOptionError, ShapeError  # noqa: E402
from tfbdl.io import RunDir  # noqa: E402


class ToyVAE:
    """A stand-in kernel VAE: linear-Gaussian decoder around ``offset``, a linear encoder."""

    def __init__(self, kernel_size, latent=2, offset=0.0, seed=0):
        rng = np.random.default_rng(seed)
        d = kernel_size * kernel_size
        self.kernel_size, self.latent = kernel_size, latent
        self.A = (0.1 * rng.standard_normal((d, latent))).astype(np.float32)
        self.offset = np.broadcast_to(np.asarray(offset, np.float32), (kernel_size, kernel_size)).reshape(-1)
        self.E = (0.5 * rng.standard_normal((latent, d))).astype(np.float32)

    def encode(self, w):
        flat = tf.reshape(tf.cast(w, tf.float32), [tf.shape(w)[0], -1])
        mu = tf.matmul(flat, self.E, transpose_b=True)
        return mu, tf.fill(tf.shape(mu), -1.0)

    def decode(self, z):
        z = tf.cast(z, tf.float32)
        k = self.kernel_size
        mu = tf.reshape(tf.matmul(z, self.A, transpose_b=True) + self.offset, [-1, k, k])
        return mu, tf.fill(tf.shape(mu), math.log(0.1))

    def sample_kernels(self, num, seed=0):
        return self.decode(np.random.default_rng(seed).standard_normal((num, self.latent)))[0].numpy()


class ConstantVAE(ToyVAE):
    """A decoder whose mean is ``pattern`` whatever z is."""

    def __init__(self, kernel_size, pattern):
        super().__init__(kernel_size)
        self.A[:] = 0.0
        self.offset = np.asarray(pattern, np.float32).reshape(-1)


class KerasVAE(keras.layers.Layer):
    """A stand-in VAE holding Keras variables, to check the BNN never trains or saves them."""

    def __init__(self, kernel_size, latent=2):
        super().__init__()
        self.kernel_size, self.latent = kernel_size, latent
        d = kernel_size * kernel_size
        self.dec = self.add_weight(shape=(latent, d), initializer="ones", name="dec")
        self.enc = self.add_weight(shape=(d, latent), initializer="ones", name="enc")

    def encode(self, w):
        mu = tf.matmul(tf.reshape(w, [tf.shape(w)[0], -1]), self.enc)
        return mu, tf.zeros_like(mu)

    def decode(self, z):
        mu = tf.reshape(tf.matmul(z, self.dec), [-1, self.kernel_size, self.kernel_size])
        return mu, tf.zeros_like(mu)


def _set_posterior(layer, seed=0, mu_scale=0.5):
    rng = np.random.default_rng(seed)
    shape = tuple(layer.kernel_mu.shape)
    mu = (mu_scale * rng.standard_normal(shape)).astype(np.float32)
    log_sigma2 = rng.uniform(-4.0, 0.5, size=shape).astype(np.float32)
    layer.kernel_mu.assign(mu)
    layer.kernel_log_sigma2.assign(log_sigma2)
    return mu.astype(np.float64), log_sigma2.astype(np.float64)


def _built(layer, input_shape):
    layer.build(input_shape)
    return layer


# --------------------------------------------------------------------------- prior terms of the layers


@pytest.mark.parametrize("make", [lambda p: _built(BayesConv2D(4, 3, p, seed=1), (None, 8, 8, 2)),
                                  lambda p: _built(BayesDense(5, p, seed=1), (None, 7))])
def test_standard_normal_kl_matches_closed_form(make):
    layer = make(StandardNormalPrior())
    mu, log_s2 = _set_posterior(layer)
    expected = 0.5 * np.sum(np.exp(log_s2) + mu ** 2 - 1.0 - log_s2)
    np.testing.assert_allclose(float(layer.kl()), expected, rtol=1e-5)
    # a prior scale s: sum log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2
    layer.prior = StandardNormalPrior(scale=0.3)
    expected = np.sum(np.log(0.3) - 0.5 * log_s2 + (np.exp(log_s2) + mu ** 2) / (2 * 0.09) - 0.5)
    np.testing.assert_allclose(float(layer.kl()), expected, rtol=1e-5)


def test_log_uniform_kl_matches_molchanov_approximation():
    log_alpha = np.array([-6.0, -2.0, -0.5, 0.0, 1.5, 4.0])
    mu = np.array([0.5, -2.0, 1.0, 0.3, -0.7, 3.0])
    log_sigma = 0.5 * (log_alpha + np.log(mu ** 2))
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    neg_kl = k1 / (1.0 + np.exp(-(k2 + k3 * log_alpha))) - 0.5 * np.log1p(np.exp(-log_alpha)) - k1
    prior = LogUniformPrior()
    np.testing.assert_allclose(prior.log_alpha(tf.constant(mu), tf.constant(log_sigma)).numpy(), log_alpha,
                               atol=1e-12)
    for i in range(len(mu)):
        value = float(prior.kl(tf.constant(mu[i:i + 1]), tf.constant(log_sigma[i:i + 1])))
        np.testing.assert_allclose(value, -neg_kl[i], rtol=1e-10)
    np.testing.assert_allclose(float(prior.kl(tf.constant(mu), tf.constant(log_sigma))), -neg_kl.sum(),
                               rtol=1e-10)
    # the approximation is positive and vanishes as alpha grows
    big = float(prior.kl(tf.constant([1.0]), tf.constant([10.0])))
    assert 0.0 <= big < 1e-4 and np.all(-neg_kl > 0)


def test_log_uniform_prior_on_a_layer():
    layer = _built(BayesDense(3, LogUniformPrior(), seed=2), (None, 4))
    mu, log_s2 = _set_posterior(layer, seed=3)
    la = log_s2 - np.log(mu ** 2)
    expected = np.sum(0.63576 - 0.63576 / (1 + np.exp(-(1.87320 + 1.48695 * la))) + 0.5 * np.log1p(np.exp(-la)))
    np.testing.assert_allclose(float(layer.kl()), expected, rtol=1e-5)


def test_truncated_log_uniform_kl_matches_the_reference_fit():
    # kl_loguniform_with_trunc_alpha: -0.5 log a - c1 a - c2 a^2 - c3 a^3, alpha = sigmoid(logit)
    logit = np.array([-8.0, -2.0, 0.0, 3.0])
    alpha = 1.0 / (1.0 + np.exp(-logit))
    c1, c2, c3 = 1.16145124, -1.50204118, 0.58629921
    expected = np.sum(-0.5 * np.log(alpha) - c1 * alpha - c2 * alpha ** 2 - c3 * alpha ** 3)
    prior = TruncatedLogUniformPrior()
    np.testing.assert_allclose(float(prior.kl_log_alpha(tf.math.log_sigmoid(tf.constant(logit)))), expected,
                               rtol=1e-10)
    # on a (mu, log sigma) posterior log alpha is clipped at 0 (alpha <= 1)
    clipped = float(prior.kl(tf.constant([1.0]), tf.constant([2.0])))
    np.testing.assert_allclose(clipped, -(c1 + c2 + c3), rtol=1e-6)


def test_alpha_layer_variance_and_local_reparameterisation():
    layer = _built(BayesDense(3, TruncatedLogUniformPrior(), variance="alpha", seed=2), (None, 4))
    assert {v.name for v in layer.trainable_variables} == {"kernel_mu", "kernel_alpha_logit", "bias"}
    mu = layer.kernel_mu.numpy()
    alpha = 1.0 / (1.0 + np.exp(2.0))  # the reference's logit init -2
    np.testing.assert_allclose(layer.kernel_sigma2.numpy(), alpha * mu ** 2, rtol=1e-5)
    np.testing.assert_allclose(layer.kernel_log_alpha.numpy(), np.log(alpha), rtol=1e-5)
    x = np.random.default_rng(0).standard_normal((20000, 4)).astype(np.float32)
    x[:] = x[0]
    out = layer(x, training=True).numpy()
    np.testing.assert_allclose(out.var(axis=0), (x[0] ** 2) @ (alpha * mu ** 2), rtol=0.05)
    with pytest.raises(InvalidOptionError):
        BayesDense(3, variance="sigma")


def test_log_uniform_kl_on_alpha_layers_does_not_pull_the_means_to_zero():
    # The additive (mu, log sigma^2) layer with Molchanov's KL and log sigma^2 = -10 has a KL
    # gradient ~ 1/mu on every mean, so in a short run on few examples it shrinks all weights
    # (the BNN collapses to chance). The reference's log-uniform net parameterises alpha <= 1
    # directly: the KL depends on alpha only and leaves the means to the data.
    for prior in (TruncatedLogUniformPrior(), LogUniformPrior()):
        layer = _built(BayesConv2D(4, 5, prior, variance="alpha", seed=1), (None, 9, 9, 2))
        with tf.GradientTape() as tape:
            kl = layer.kl()
        g_mu, g_logit = tape.gradient(kl, [layer.kernel_mu, layer.kernel_alpha_logit])
        assert g_mu is None or float(tf.reduce_max(tf.abs(g_mu))) == 0.0
        assert float(tf.reduce_max(tf.abs(g_logit))) > 0.0
    additive = _built(BayesConv2D(4, 5, LogUniformPrior(), seed=1), (None, 9, 9, 2))
    with tf.GradientTape() as tape:
        kl = additive.kl()
    assert float(tf.reduce_max(tf.abs(tape.gradient(kl, additive.kernel_mu)))) > 1.0


def test_bayesian_fconv_alpha_variance():
    model = bayesian_fconv(widths=(3, 4), priors={"conv1": TruncatedLogUniformPrior(),
                                                  "conv2": TruncatedLogUniformPrior()}, variance="alpha", seed=0)
    layers = bayes_layers(model)
    assert [layer.variance for layer in layers] == ["alpha", "alpha"]
    assert np.isfinite(float(kl_total(model)))
    assert model(np.zeros((2, 28, 28, 1), np.float32), training=True).shape == (2, 10)


# --------------------------------------------------------------------------- sampling


def test_dense_local_reparameterisation_moments():
    layer = _built(BayesDense(3, StandardNormalPrior(), seed=4), (None, 4))
    mu, log_s2 = _set_posterior(layer, seed=5)
    layer.bias.assign([0.1, -0.2, 0.3])
    x = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)
    n = 40000
    out = layer(np.repeat(x, n, axis=0), training=True).numpy().astype(np.float64)
    mean = x @ mu + np.array([0.1, -0.2, 0.3])
    var = (x ** 2) @ np.exp(log_s2)
    np.testing.assert_array_less(np.abs(out.mean(0) - mean[0]), 5 * np.sqrt(var[0] / n))
    np.testing.assert_allclose(out.var(0), var[0], rtol=5 * math.sqrt(2 / n))
    # inference uses the posterior mean
    np.testing.assert_allclose(layer(x, training=False).numpy()[0], mean[0], rtol=1e-5)


def test_conv_local_reparameterisation_moments():
    layer = _built(BayesConv2D(2, 3, StandardNormalPrior(), seed=6, use_bias=False), (None, 4, 4, 2))
    mu, log_s2 = _set_posterior(layer, seed=7)
    x = np.random.default_rng(8).standard_normal((1, 4, 4, 2)).astype(np.float32)
    mean = np.zeros((2, 2, 2))
    var = np.zeros((2, 2, 2))
    for i in range(2):
        for j in range(2):
            patch = x[0, i:i + 3, j:j + 3, :].astype(np.float64)
            mean[i, j] = np.einsum("abc,abco->o", patch, mu)
            var[i, j] = np.einsum("abc,abco->o", patch ** 2, np.exp(log_s2))
    n = 20000
    out = layer(np.repeat(x, n, axis=0), training=True).numpy().astype(np.float64)
    np.testing.assert_array_less(np.abs(out.mean(0) - mean), 5 * np.sqrt(var / n))
    np.testing.assert_allclose(out.var(0), var, rtol=5 * math.sqrt(2 / n))
    np.testing.assert_allclose(layer(x, training=False).numpy()[0], mean, rtol=1e-4, atol=1e-5)


def test_weight_sampling_mode_shares_one_draw_per_call():
    layer = _built(BayesDense(2, StandardNormalPrior(), sampling="weights", seed=9), (None, 3))
    _set_posterior(layer, seed=1)
    x = np.ones((4, 3), np.float32)
    out = layer(x, training=True).numpy()
    np.testing.assert_allclose(out, np.repeat(out[:1], 4, axis=0))    # one kernel for the batch
    assert not np.allclose(out, layer(x, training=False).numpy())


# --------------------------------------------------------------------------- the Bayesian fconv


def test_dwp_init_takes_kernels_from_the_decoder():
    pattern7 = np.arange(49, dtype=np.float32).reshape(7, 7) / 49.0
    priors = {"conv1": DeepWeightPrior({7: ConstantVAE(7, pattern7)}),
              "conv2": DeepWeightPrior({5: ConstantVAE(5, -0.5)})}
    model = bayesian_fconv(3, (18, 18, 1), widths=(3, 4), priors=priors, init="dwp", seed=0)
    k1 = model.get_layer("conv1").kernel_mu.numpy()
    k2 = model.get_layer("conv2").kernel_mu.numpy()
    assert k1.shape == (7, 7, 1, 3) and k2.shape == (5, 5, 3, 4)
    for o in range(3):
        np.testing.assert_allclose(k1[:, :, 0, o], pattern7)   # every slice is the decoder's mean
    np.testing.assert_allclose(k2, -0.5)
    # a decoder that depends on z gives different slices; vaes= overrides the priors
    model = bayesian_fconv(3, (18, 18, 1), widths=(3, 4), init="dwp", seed=0,
                           vaes={7: ToyVAE(7, offset=1.0), 5: ToyVAE(5, offset=-1.0)})
    k1 = model.get_layer("conv1").kernel_mu.numpy()
    assert abs(k1.mean() - 1.0) < 0.1 and k1[:, :, 0, 0].std() > 0 and not np.allclose(k1[..., 0], k1[..., 1])
    assert isinstance(model.get_layer("conv1").prior, StandardNormalPrior)   # default prior
    with pytest.raises(InvalidOptionError):
        bayesian_fconv(3, (18, 18, 1), widths=(3, 4), init="dwp", seed=0)


def test_fconv_shapes_and_options():
    model = bayesian_fconv(10, (28, 28, 1), widths=(4, 6), priors={"logits": StandardNormalPrior()}, seed=1)
    assert model.output_shape == (None, 10)
    assert [layer.name for layer in bayes_layers(model)] == ["conv1", "conv2", "logits"]
    assert model.get_layer("conv1").kernel_log_sigma2.numpy().max() == -10.0
    plain = bayesian_fconv(10, (28, 28, 1), widths=(4, 6), init="he", seed=1)
    assert isinstance(plain.get_layer("logits"), keras.layers.Dense)  # point estimate, as the reference
    assert len(plain.trainable_variables) == 2 * 3 + 2                 # mu, log sigma^2, bias per conv
    with pytest.raises(InvalidOptionError):
        bayesian_fconv(10, priors={"conv3": StandardNormalPrior()})
    with pytest.raises(InvalidOptionError):
        bayesian_fconv(10, init="orthogonal")
    with pytest.raises(ShapeError):
        bayesian_fconv(10, (12, 12, 1))
    with pytest.raises(ShapeError):   # the deep weight prior has no VAE for 7x7
        m = bayesian_fconv(3, (18, 18, 1), widths=(2, 2), priors={"conv1": DeepWeightPrior({5: ToyVAE(5)})})
        kl_total(m)


def test_vae_variables_stay_out_of_the_model():
    vae = KerasVAE(5)
    model = bayesian_fconv(3, (18, 18, 1), widths=(2, 3), priors={"conv2": DeepWeightPrior({5: vae})}, seed=2)
    ids = {id(v) for v in model.variables}
    assert id(vae.dec) not in ids and id(vae.enc) not in ids
    with tf.GradientTape() as tape:
        kl = kl_total(model, seed=0)
    grads = tape.gradient(kl, model.trainable_variables)
    conv2_mu = model.get_layer("conv2").kernel_mu
    g = dict(zip([id(v) for v in model.trainable_variables], grads))[id(conv2_mu)]
    assert g is not None and np.any(g.numpy() != 0)


# --------------------------------------------------------------------------- training and prediction


def _toy_images(n=48, seed=0):
    """Two classes of 18x18 images: a bright blob top-left or bottom-right, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = 0.1 * rng.standard_normal((n, 18, 18, 1))
    for i, label in enumerate(y):
        r = slice(2, 9) if label == 0 else slice(9, 16)
        x[i, r, r, 0] += 1.0
    return x.astype(np.float32), y.astype(np.int64)


def _toy_model(prior_kind="sn", seed=3):
    priors = None
    if prior_kind == "dwp":
        priors = {"conv1": DeepWeightPrior({7: ToyVAE(7, seed=1)}),
                  "conv2": DeepWeightPrior({5: ToyVAE(5, seed=2)}, weight_samples=2)}
    return bayesian_fconv(2, (18, 18, 1), widths=(2, 3), priors=priors, seed=seed)


@pytest.mark.parametrize("prior_kind", ["sn", "dwp"])
def test_fit_bnn_lowers_the_elbo_loss_and_resumes(tmp_path, prior_kind):
    x, y = _toy_images()
    with tf.device("/CPU:0"):
        before = float(elbo_loss(_toy_model(prior_kind), x, y, len(x), seed=0))
        finals = []
        for chunks in ([1, 2], [2]):     # two 1-epoch calls, or one 2-epoch call
            run = RunDir.open(tmp_path, "bnn-test", f"{prior_kind}-{len(chunks)}", {"chunks": len(chunks)})
            for epochs in chunks:
                m = _toy_model(prior_kind)          # a fresh model each call: state comes from the checkpoint
                rows = fit_bnn(m, x, y, epochs=epochs, batch_size=8, learning_rate=0.01, seed=5, run_dir=run)
            finals.append((m, rows))
        (m_split, rows_split), (m_once, rows_once) = finals
        for a, b in zip(m_split.variables, m_once.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
        assert [r["epoch"] for r in rows_split] == [1, 2] and all(np.isfinite(r["kl"]) for r in rows_split)
        for key in ("train_loss", "kl"):
            np.testing.assert_allclose([r[key] for r in rows_split], [r[key] for r in rows_once], rtol=1e-6)
        after = float(elbo_loss(m_once, x, y, len(x), seed=0))
        assert after < before - 0.05
        assert rows_once[1]["train_loss"] < rows_once[0]["train_loss"]


def test_predict_bnn_proba_and_elbo_loss():
    x, y = _toy_images(12, seed=1)
    model = _toy_model("sn")
    for layer in bayes_layers(model):
        layer.kernel_log_sigma2.assign(tf.fill(layer.kernel_log_sigma2.shape, -2.0))
    p = predict_bnn_proba(model, x, num_samples=5, seed=0, batch_size=5)
    assert p.shape == (12, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p, predict_bnn_proba(model, x, num_samples=5, seed=0, batch_size=5))
    assert not np.allclose(p, predict_bnn_proba(model, x, num_samples=5, seed=1, batch_size=5))
    mean_net = predict_bnn_proba(model, x, num_samples=0)
    np.testing.assert_allclose(mean_net, tf.nn.softmax(model(x, training=False)).numpy(), rtol=1e-5)
    # a fixed seed gives a fixed loss; the KL term is the closed form divided by N
    a = float(elbo_loss(model, x, y, 100, seed=3))
    assert a == float(elbo_loss(model, x, y, 100, seed=3))
    nll = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=False))))
    np.testing.assert_allclose(float(elbo_loss(model, x, y, 100, seed=3, training=False)),
                               nll + float(kl_total(model)) / 100, rtol=1e-5)
    with pytest.raises(ShapeError):
        fit_bnn(model, x, y[:5], epochs=1, batch_size=4, seed=0)
    with pytest.raises(InvalidOptionError):
        fit_bnn(model, x, y.astype(np.float32), epochs=1, batch_size=4, seed=0)
