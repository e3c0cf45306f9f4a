"""The Bayesian network's ELBO against the deep weight prior release's, term by term, in numpy.

With the release's own trained kernel VAEs as the prior, the same posterior parameters and the
same noise, the KL term of every conv layer must equal the release's ``utils.kl_dwp``, the
network in its 'det' mode must equal ``FConvMNIST('bayes')``, and the release's loss
(``sum NLL * N / b + KL``, ``train-bnn.py``) must be ``N`` times ours.
"""

import numpy as np
import pytest

from tests.conftest import release_dir
from tests.dwp.release_dwp_oracle import load_state_dict, np_fconv_det, np_kl_dwp

tf = pytest.importorskip("tensorflow")

from tfbdl.dwp.bnn import bayesian_fconv, elbo_loss, kl_total  # noqa: E402
from tfbdl.dwp.bound import draw_seed, split_seed  # noqa: E402
from tfbdl.dwp.priors import DeepWeightPrior  # noqa: E402
from tfbdl.dwp.vae import KernelVAE  # noqa: E402


def _release(k):
    path = release_dir() / f"vae{k}x{k}.npz"
    if not path.is_file():
        pytest.skip(f"the deep weight prior release's vae{k}x{k}.npz is not at {path}")
    return path


@pytest.fixture(scope="module")
def release():
    """{k: (state dict, KernelVAE.from_release)} for k = 7, 5."""
    return {k: (load_state_dict(_release(k)), KernelVAE.from_release(_release(k))) for k in (7, 5)}


def _torch_layout(kernel):
    """[k, k, in, out] -> [out, in, k, k]."""
    return np.transpose(np.asarray(kernel, np.float64), (3, 2, 0, 1))


def _release_kl_of_layer(sd, k, mu, log_sigma2, seed, latent):
    """The release's KL of one layer with the noise tfbdl's DeepWeightPrior.kl draws from ``seed``."""
    seeds = split_seed(draw_seed(seed), 2)
    eps = tf.random.stateless_normal([1, *mu.shape], seeds[0], dtype=tf.float32).numpy()[0]
    n = mu.shape[2] * mu.shape[3]
    eta = tf.random.stateless_normal([1, n, latent], seeds[1], dtype=tf.float32).numpy()[0]
    return np_kl_dwp(sd, k, _torch_layout(mu), np.exp(_torch_layout(log_sigma2)), _torch_layout(eps), eta)


@pytest.mark.parametrize("k,shape", [(7, (7, 7, 1, 6)), (5, (5, 5, 6, 10))])
def test_dwp_kl_equals_the_release_kl_dwp(release, k, shape):
    sd, vae = release[k]
    rng = np.random.default_rng(k)
    # means on the scale of real kernels (decoder means plus noise), log sigma^2 around the
    # release's -10 initialisation and well above it (where the weight noise matters)
    z = rng.standard_normal((shape[2] * shape[3], vae.latent)).astype(np.float32)
    slices = vae.decode(z)[0].numpy().reshape(shape[3], shape[2], k, k)
    mu = (np.transpose(slices, (2, 3, 1, 0)) + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    log_sigma2 = rng.uniform(-10.0, -3.0, size=shape).astype(np.float32)
    prior = DeepWeightPrior(vae)
    assert prior.analytic_kl and prior.weight_samples == 1 and not prior.antithetic  # the release's kl_dwp
    for seed in ([3, 7], [11, 2]):
        ours = prior.kl(tf.constant(mu), tf.constant(0.5 * log_sigma2), seed=tf.constant(seed, tf.int64)).numpy()
        reference, neg_entropy, prior_part = _release_kl_of_layer(sd, k, mu, log_sigma2, seed, vae.latent)
        # float32 sums over ~1e3 slices: relative to the size of the two parts that cancel
        assert abs(ours - reference) <= 2e-5 * (abs(neg_entropy) + abs(prior_part)), (ours, reference)


def test_the_network_and_the_loss_equal_the_releases(release):
    (sd7, vae7), (sd5, vae5) = release[7], release[5]
    prior = DeepWeightPrior({7: vae7, 5: vae5})
    model = bayesian_fconv(widths=(4, 6), priors={"conv1": prior, "conv2": prior}, init="dwp", seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(5, 28, 28, 1)).astype(np.float32)
    y = np.array([0, 3, 5, 7, 9])
    num_train = 50

    conv = [(_torch_layout(model.get_layer(n).kernel_mu.numpy()), model.get_layer(n).bias.numpy().astype(np.float64))
            for n in ("conv1", "conv2")]
    dense = model.get_layer("logits")
    dense_params = (dense.kernel.numpy().T.astype(np.float64), dense.bias.numpy().astype(np.float64))
    logits_ref = np_fconv_det(np.transpose(x, (0, 3, 1, 2)).astype(np.float64), *conv, dense_params)
    np.testing.assert_allclose(model(x, training=False).numpy(), logits_ref, rtol=1e-4, atol=1e-4)

    # the release's per-step loss: cross-entropy summed over the batch times N / b, plus the KL
    seed = 5
    layer_seeds = split_seed(draw_seed(seed), 2)
    kl_ref = sum(
        _release_kl_of_layer(sd, k, model.get_layer(n).kernel_mu.numpy(), model.get_layer(n).kernel_log_sigma2.numpy(),
                             layer_seeds[i], vae.latent)[0]
        for i, (n, k, sd, vae) in enumerate([("conv1", 7, sd7, vae7), ("conv2", 5, sd5, vae5)]))
    shifted = logits_ref - logits_ref.max(axis=1, keepdims=True)
    nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]
    release_loss = nll.sum() * num_train / len(y) + kl_ref
    np.testing.assert_allclose(kl_total(model, seed).numpy(), kl_ref, rtol=1e-5)
    ours = elbo_loss(model, x, y, num_train, seed=seed, training=False).numpy()
    np.testing.assert_allclose(ours * num_train, release_loss, rtol=1e-5)
