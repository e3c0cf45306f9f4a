"""Faster convergence, the paper's "VAE on MNIST" panel: a convolutional VAE on binarised MNIST whose
encoder convolutions (7x7 then 5x5, the fconv's) start from each arm's kernels; the variational lower
bound on held-out images against optimisation steps.

The release has no code for this panel, so the network is ours: encoder ``conv1`` 7x7 (w1) ->
LeakyReLU -> max-pool -> ``conv2`` 5x5 (w2) -> LeakyReLU -> max-pool -> dense to the mean and log
variance of ``z`` (``latent``); decoder dense ``7*7*w2`` -> LeakyReLU -> transposed conv 5x5 stride 2
(w1) -> LeakyReLU -> transposed conv 7x7 stride 2 -> Bernoulli logits of 28x28 pixels. Only the
encoder's kernels take the arm (the 7x7 / 5x5 kernel priors are of ordinary convolutions); every other
weight is the same Xavier draw for every arm of a seed. Pixels are binarised at 0.5.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.deep_weight_prior.stepwise import batches

__all__ = ["conv_vae", "elbo_loss", "eval_elbo", "train_vae_convergence"]

_LEAKY_SLOPE = 0.01


def conv_vae(widths, latent: int, seed: int):
    """The convolutional VAE's ``(encoder, decoder)``: ``x [b, 28, 28, 1] -> [mean | log variance] [b, 2 latent]``
    and ``z [b, latent] -> Bernoulli logits [b, 28, 28, 1]``."""
    import keras

    from tfbdl.nn.initializers import SeedStream, glorot_normal

    seeds = SeedStream(seed)
    x_in = keras.Input((28, 28, 1), name="images")
    h = x_in
    for i, (width, k) in enumerate(zip(widths, (7, 5)), start=1):
        h = keras.layers.Conv2D(width, k, kernel_initializer=glorot_normal(seeds()), name=f"conv{i}")(h)
        h = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE)(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten(name="flatten")(h)
    stats = keras.layers.Dense(2 * latent, kernel_initializer=glorot_normal(seeds()), name="posterior")(h)
    encoder = keras.Model(x_in, stats, name="encoder")
    z_in = keras.Input((latent,), name="z")
    g = keras.layers.Dense(7 * 7 * widths[1], kernel_initializer=glorot_normal(seeds()))(z_in)
    g = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE)(g)
    g = keras.layers.Reshape((7, 7, widths[1]))(g)
    g = keras.layers.Conv2DTranspose(widths[0], 5, strides=2, padding="same",
                                     kernel_initializer=glorot_normal(seeds()))(g)
    g = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE)(g)
    logits = keras.layers.Conv2DTranspose(1, 7, strides=2, padding="same", kernel_initializer=glorot_normal(seeds()),
                                          name="pixels")(g)
    return encoder, keras.Model(z_in, logits, name="decoder")


def elbo_loss(encoder, decoder):
    """``(x, eps) -> -mean ELBO`` in nats per image: ``x [b, 28, 28, 1]`` binary, ``eps [b, latent]`` the
    reparameterisation noise; Bernoulli likelihood, standard normal prior, one sample of ``z``."""
    import tensorflow as tf

    def loss(x, eps):
        stats = encoder(x)
        mu, log_var = tf.split(stats, 2, axis=-1)
        z = mu + tf.exp(0.5 * log_var) * eps
        logits = decoder(z)
        log_lik = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=[1, 2, 3])
        kl = 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(log_var) - 1.0 - log_var, axis=-1)
        return tf.reduce_mean(kl - log_lik)

    return loss


def eval_elbo(loss, x: np.ndarray, eps: np.ndarray, batch_size: int = 1000) -> float:
    """The mean ELBO (nats per image) of ``x`` with the fixed noise ``eps``."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        total += -float(loss(x[part], eps[part])) * len(x[part])
    return total / max(len(x), 1)


def train_vae_convergence(encoder, decoder, steps, preset, x_train: np.ndarray, x_test: np.ndarray,
                          seed: int) -> dict:
    """Train the VAE (its starting weights already set) for ``preset.vae_steps`` Adam steps; the held-out
    ELBO at 0, ``eval_every``, ... steps (fixed evaluation noise) and the training loss per step."""
    loss = elbo_loss(encoder, decoder)
    latent = int(encoder.output.shape[-1]) // 2
    rng = np.random.default_rng(seed)
    eval_eps = np.random.default_rng(seed + 1).standard_normal((len(x_test), latent)).astype(np.float32)
    wanted = sorted(set(range(0, preset.vae_steps + 1, preset.vae_eval_every)) | {preset.vae_steps})
    steps.reset()
    curve, losses, done = [], [], 0
    while True:
        for idx in batches(len(x_train), preset.batch_size, rng):
            if done in wanted:
                curve.append(eval_elbo(loss, x_test, eval_eps))
            if done == preset.vae_steps:
                return {"steps": wanted, "test_elbo": curve, "train_loss": losses}
            eps = rng.standard_normal((len(idx), latent)).astype(np.float32)
            losses.append(steps.step(x_train[idx], eps, preset.vae_learning_rate))
            done += 1
