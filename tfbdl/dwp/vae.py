"""The kernel VAE of the deep weight prior: a generative model of ``k x k`` convolution slices.

Model (``models/vae.py`` and ``train-vae.py`` of ``SamsungLabs/deep-weight-prior``)::

    p(z) = N(0, I_latent),   p(w | z) = N(mu_d(z), diag sigma_d(z)^2)   over the k*k entries,
    r(z | w) = N(mu_e(w), diag sigma_e(w)^2),
    ELBO(w) = E_r[log p(w | z)] - KL(r(z | w) || p(z))

with one reparameterised sample of ``z`` for the expectation and the closed-form Gaussian KL.
Both variances are ``softplus`` of a 1x1-convolution head, as in the reference (the API here
speaks of ``log_sigma = log(softplus(.)) / 2``, computed without underflow).

Architectures (3x3 convolutions, ELU activations; ``h`` = ``hidden``, ``d`` = ``latent``):

- 7x7 (``Encoder7x7`` / ``Decoder7x7``; paper: h=32, d=2):
  encoder ``conv 1->h, h->2h, 2h->2h`` (valid: 7->5->3->1), heads ``1x1 conv 2h->d``;
  decoder ``transposed conv d->2h, 2h->2h, 2h->h`` (1->3->5->7), heads ``1x1 conv h->1``.
- 5x5 (``Encoder5x5`` / ``Decoder5x5``; paper: h=64, d=4):
  encoder ``conv 1->h, h->h`` (same padding), ``conv h->2h, 2h->2h`` (valid: 5->3->1), heads
  ``1x1 2h->d``; decoder ``1x1 conv d->2h``, ``transposed conv 2h->2h, 2h->2h`` (1->3->5),
  ``1x1 conv 2h->h``, heads ``1x1 h->1``.
- 3x3 (``Encoder3x3`` / ``Decoder3x3``): encoder ``conv 1->h, h->h`` (same), ``conv h->2h``
  (valid), heads; decoder ``1x1 d->2h``, ``transposed conv 2h->h``, ``1x1 h->h``, heads. The
  reference fixes this decoder's variance at 1e-3; here it is learnt like the others.

Other sizes raise InvalidOptionError. Weights start as PyTorch's defaults
(``U(+-1/sqrt(fan_in))``, fan-in of a transposed convolution counted over its *output*
channels as torch does). Slices enter as ``[n, k, k]`` (rows = kernel height, see
:func:`tfbdl.dwp.kernel_bank.kernel_slices`); the models see them as NHWC ``[n, k, k, 1]``.

The release's trained 7x7 and 5x5 VAEs (its ``vae_params.torch`` state dicts saved as ``.npz``)
load with :meth:`KernelVAE.from_release`; the architectures above are the release's, so only the
weight layouts change (PyTorch NCHW ``[out, in, kh, kw]`` / transposed ``[in, out, kh, kw]`` to
Keras NHWC).

Training (:func:`train_kernel_vae`; reference ``data/fconv/vae{7x7,5x5}/params.yaml``): Adam
(lr 1e-3, torch's eps 1e-8), batch 128, 300 epochs, the learning rate decayed linearly to zero.
The reference sets ``lr * (1 - e / E)`` for epochs ``e = 1..E``, so its last epoch runs at
lr 0; here epoch index ``i = 0..E-1`` runs at ``lr * (1 - i / E)`` (first epoch at the full
rate, last at ``lr / E``). The reference minimises the batch's *summed* negative ELBO; here
the mean (Adam is nearly invariant to that scale). The reference held out a separate test file
of slices; ``validation_fraction`` does the same from one bank.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import zipfile

import keras
import numpy as np
import tensorflow as tf

from tfbdl.dwp import bound as _bound
from tfbdl.errors import DataFormatError, InvalidOptionError, ShapeError
from tfbdl.io import RunDir, load_h5, save_h5
from tfbdl.nn.initializers import SeedStream, torch_bias, torch_linear_kernel
from tfbdl.seeding import derive_rng
from tfbdl.validate import integer, positive_int, positive_number, probability

__all__ = [
    "KernelVAE",
    "REFERENCE_ARCHITECTURES",
    "REFERENCE_TRAINING",
    "SUPPORTED_KERNEL_SIZES",
    "held_out_split",
    "plot_decoded_samples",
    "plot_latent_space",
    "train_kernel_vae",
]

SUPPORTED_KERNEL_SIZES = (3, 5, 7)
# The paper's VAEs for the fconv network (data/fconv/vae{7x7,5x5}/params.yaml).
REFERENCE_ARCHITECTURES = {7: {"hidden": 32, "latent": 2}, 5: {"hidden": 64, "latent": 4}}
REFERENCE_TRAINING = {"epochs": 300, "batch_size": 128, "learning_rate": 1e-3}

_FORMAT = "tfbdl.dwp.kernel_vae/1"
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_EVAL_MAX = 4096  # slices the per-epoch check uses when nothing is held out
_BATCH = 65536  # slices per forward pass in numpy-facing helpers
# Stream keys: the fixed noise of the per-epoch check, the held-out split, the check's training subsample.
_EVAL_NOISE_STREAM = 0xE7A1
_SPLIT_STREAM = 0x5A1D
_CHECK_SUBSET_STREAM = 0xC4EC


# --------------------------------------------------------------------------- small helpers


def _log_softplus(x):
    """``log(softplus(x))`` without ``log(0)``: equal to ``x`` below -20 (where softplus ~ exp)."""
    safe = tf.maximum(x, -20.0)
    return tf.where(x < -20.0, x, tf.math.log(tf.nn.softplus(safe)))


def _normal_log_prob(x, mu, log_sigma):
    """Elementwise ``log N(x; mu, exp(log_sigma)^2)``."""
    return -0.5 * tf.square((x - mu) * tf.exp(-log_sigma)) - log_sigma - _HALF_LOG_2PI


def _kl_std_normal(mu, log_sigma):
    """``KL(N(mu, sigma^2) || N(0, 1))`` summed over the last axis: ``[n, d] -> [n]``."""
    return tf.reduce_sum(0.5 * (tf.exp(2.0 * log_sigma) + tf.square(mu) - 1.0) - log_sigma, axis=-1)


# --------------------------------------------------------------------------- architectures


def _conv(x, filters: int, size: int, padding: str, seeds: SeedStream, name: str):
    """``nn.Conv2d(in, filters, size, padding)`` with PyTorch's default initialisation."""
    fan_in = int(x.shape[-1]) * size * size
    layer = keras.layers.Conv2D(filters, size, padding=padding, kernel_initializer=torch_linear_kernel(seeds()),
                                bias_initializer=torch_bias(fan_in, seeds()), dtype="float32", name=name)
    return layer(x)


def _conv_t(x, filters: int, seeds: SeedStream, name: str):
    """``nn.ConvTranspose2d(in, filters, 3)`` (grows the map by 2) with PyTorch's initialisation.

    torch counts the fan-in of a transposed convolution as ``out_channels * 3 * 3``; Keras's
    fan-in of the ``[3, 3, out, in]`` kernel is the same number.
    """
    layer = keras.layers.Conv2DTranspose(filters, 3, padding="valid", kernel_initializer=torch_linear_kernel(seeds()),
                                         bias_initializer=torch_bias(filters * 9, seeds()), dtype="float32",
                                         name=name)
    return layer(x)


def _elu(x, name: str):
    return keras.layers.Activation("elu", dtype="float32", name=name)(x)


# (kind, channel multiple of h, padding): "c" 3x3 conv, "t" 3x3 transposed conv, "1" 1x1 conv.
_ENCODERS = {
    7: [("c", 1, "valid"), ("c", 2, "valid"), ("c", 2, "valid")],
    5: [("c", 1, "same"), ("c", 1, "same"), ("c", 2, "valid"), ("c", 2, "valid")],
    3: [("c", 1, "same"), ("c", 1, "same"), ("c", 2, "valid")],
}
_DECODERS = {
    7: [("t", 2, None), ("t", 2, None), ("t", 1, None)],
    5: [("1", 2, None), ("t", 2, None), ("t", 2, None), ("1", 1, None)],
    3: [("1", 2, None), ("t", 1, None), ("1", 1, None)],
}


def _stack(x, spec, hidden: int, seeds: SeedStream, prefix: str):
    for i, (kind, mult, padding) in enumerate(spec, start=1):
        filters = mult * hidden
        if kind == "c":
            x = _conv(x, filters, 3, padding, seeds, f"{prefix}_conv{i}")
        elif kind == "t":
            x = _conv_t(x, filters, seeds, f"{prefix}_conv{i}")
        else:
            x = _conv(x, filters, 1, "valid", seeds, f"{prefix}_conv{i}")
        x = _elu(x, f"{prefix}_elu{i}")
    return x


def _encoder(k: int, hidden: int, latent: int, seeds: SeedStream) -> keras.Model:
    """``w [n, k, k] -> (mu [n, latent], softplus pre-activation of the variance [n, latent])``."""
    inputs = keras.Input((k, k), dtype="float32", name="kernels")
    x = keras.layers.Reshape((k, k, 1), name="enc_to_nhwc")(inputs)
    x = _stack(x, _ENCODERS[k], hidden, seeds, "enc")
    mu = keras.layers.Reshape((latent,), name="enc_mu")(_conv(x, latent, 1, "valid", seeds, "enc_mu_head"))
    var = keras.layers.Reshape((latent,), name="enc_var_logit")(
        _conv(x, latent, 1, "valid", seeds, "enc_var_head"))
    return keras.Model(inputs, [mu, var], name="encoder")


def _decoder(k: int, hidden: int, latent: int, seeds: SeedStream) -> keras.Model:
    """``z [n, latent] -> (mu [n, k, k], softplus pre-activation of the variance [n, k, k])``."""
    inputs = keras.Input((latent,), dtype="float32", name="z")
    x = keras.layers.Reshape((1, 1, latent), name="dec_to_nhwc")(inputs)
    x = _stack(x, _DECODERS[k], hidden, seeds, "dec")
    mu = keras.layers.Reshape((k, k), name="dec_mu")(_conv(x, 1, 1, "valid", seeds, "dec_mu_head"))
    var = keras.layers.Reshape((k, k), name="dec_var_logit")(_conv(x, 1, 1, "valid", seeds, "dec_var_head"))
    return keras.Model(inputs, [mu, var], name="decoder")


# --------------------------------------------------------------------------- the release's weights

# State dict names of the release's Encoder/Decoder{7x7,5x5} (``models/vae.py``) -> our layers.
# nn.Conv2d weights are [out, in, kh, kw], nn.ConvTranspose2d weights [in, out, kh, kw]; both go
# to Keras's [kh, kw, in, out] / Conv2DTranspose [kh, kw, out, in] by ``transpose(2, 3, 1, 0)``.
# The release's transposed convolutions all have padding 0 and stride 1: Keras's "valid".
_RELEASE_LAYERS = {
    7: [("encoder.features.0", "enc_conv1"), ("encoder.features.2", "enc_conv2"),
        ("encoder.features.4", "enc_conv3"), ("encoder.fc_mu", "enc_mu_head"),
        ("encoder.fc_var", "enc_var_head"),
        ("decoder.decoder.0", "dec_conv1"), ("decoder.decoder.2", "dec_conv2"),
        ("decoder.decoder.4", "dec_conv3"), ("decoder.fc_mu", "dec_mu_head"),
        ("decoder.fc_var", "dec_var_head")],
    5: [("encoder.features.0", "enc_conv1"), ("encoder.features.2", "enc_conv2"),
        ("encoder.features.4", "enc_conv3"), ("encoder.features.6", "enc_conv4"),
        ("encoder.fc_mu", "enc_mu_head"), ("encoder.fc_sigma", "enc_var_head"),
        ("decoder.decoder.0", "dec_conv1"), ("decoder.decoder.2", "dec_conv2"),
        ("decoder.decoder.4", "dec_conv3"), ("decoder.decoder.6", "dec_conv4"),
        ("decoder.fc_mu.0", "dec_mu_head"), ("decoder.fc_var.0", "dec_var_head")],
}


def _release_keys(k: int) -> set:
    return {f"{prefix}.{part}" for prefix, _ in _RELEASE_LAYERS[k] for part in ("weight", "bias")}


def _read_release_arrays(path: pathlib.Path) -> dict:
    """The arrays of an ``.npz`` state dict (DataFormatError if it is not a readable npz of arrays)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected the release's vae7x7.npz or vae5x5.npz)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(f"{path} is not a readable .npz archive of arrays ({e})") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataFormatError(f"{path} holds a single array, not an .npz archive of a VAE state dict")
    try:
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(f"{path}: an array in the archive cannot be read ({e})") from e


def _release_layout(arrays: dict, path: pathlib.Path) -> tuple[int, int, int]:
    """``(kernel_size, hidden, latent)`` of a release state dict, or DataFormatError."""
    keys = set(arrays)
    matches = [k for k in _RELEASE_LAYERS if _release_keys(k) == keys]
    if not matches:
        k = max(_RELEASE_LAYERS, key=lambda c: len(_release_keys(c) & keys))
        missing, extra = sorted(_release_keys(k) - keys), sorted(keys - _release_keys(k))
        raise DataFormatError(
            f"{path} is not a state dict of the deep weight prior release's 7x7 or 5x5 kernel VAE; "
            f"closest is the {k}x{k} one, missing {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
            f"unexpected {extra[:6]}{' ...' if len(extra) > 6 else ''}"
        )
    k = matches[0]
    dims = []
    for key in ("encoder.features.0.weight", "encoder.fc_mu.weight"):
        shape = arrays[key].shape
        if len(shape) != 4 or shape[0] < 1:
            raise DataFormatError(f"{path}: {key} should be a Conv2d weight [out, in, kh, kw], got shape {shape}")
        dims.append(int(shape[0]))
    return k, dims[0], dims[1]


# --------------------------------------------------------------------------- the model


class KernelVAE(keras.Model):
    """A VAE over ``k x k`` kernel slices: ``encoder`` ``r(z|w)`` and ``decoder`` ``p(w|z)``.

    Args:
        kernel_size: ``k``, one of :data:`SUPPORTED_KERNEL_SIZES` (3, 5, 7).
        hidden: the reference's ``hidden_dim`` (channels ``h`` and ``2h``; 32 for 7x7, 64 for 5x5).
        latent: the dimension of ``z`` (2 for 7x7, 4 for 5x5 in the paper).
        seed: fixes the initial weights and the training noise; None for Keras's own.

    ``encode``/``decode``/``elbo`` take and return float32 tensors (differentiable, usable
    inside ``tf.function``); ``prior_z``, ``encoder_distribution`` and ``decoder_distribution``
    return ``p(z)``, ``r(z | w)`` and ``p(w | z)`` as ``tfp.distributions`` values (see
    :mod:`tfbdl.dwp.bound`); ``sample_kernels`` and ``reconstruct`` return numpy. Calling the
    model, ``vae(w, training=True)``, gives the per-slice *negative* ELBO ``[n]`` with fresh
    noise from the model's own seed generator (its state is a model variable, so a training
    checkpoint restores it); with ``training=False`` ``z`` is the encoder mean (no noise).
    """

    def __init__(self, kernel_size: int, hidden: int, latent: int, seed: int | None = None,
                 name: str | None = None):
        k = positive_int(kernel_size, "kernel_size")
        if k not in SUPPORTED_KERNEL_SIZES:
            raise InvalidOptionError(
                f"kernel_size {k} has no kernel VAE architecture; use one of {SUPPORTED_KERNEL_SIZES}"
            )
        hidden = positive_int(hidden, "hidden")
        latent = positive_int(latent, "latent")
        seeds = SeedStream(seed)  # validates the seed
        super().__init__(name=name or f"kernel_vae_{k}x{k}")
        self.kernel_size, self.hidden, self.latent = k, hidden, latent
        self.encoder = _encoder(k, hidden, latent, seeds)
        self.decoder = _decoder(k, hidden, latent, seeds)
        self._noise = keras.random.SeedGenerator(seeds(), name="noise")
        self.built = True

    def get_config(self) -> dict:
        """``{"kernel_size", "hidden", "latent"}``: what :meth:`load` needs to rebuild the model."""
        return {"kernel_size": self.kernel_size, "hidden": self.hidden, "latent": self.latent}

    # ------------------------------------------------------------------ shapes

    def _slices(self, w):
        """``w`` as a float32 tensor ``[n, k, k]`` (ShapeError otherwise)."""
        w = tf.convert_to_tensor(w, dtype=tf.float32)
        k = self.kernel_size
        if w.shape.rank != 3 or tuple(w.shape[1:]) != (k, k):
            raise ShapeError(f"this kernel VAE takes slices [n, {k}, {k}], got shape {tuple(w.shape)}")
        return w

    def _codes(self, z):
        z = tf.convert_to_tensor(z, dtype=tf.float32)
        if z.shape.rank != 2 or z.shape[1] != self.latent:
            raise ShapeError(f"this kernel VAE takes codes z [n, {self.latent}], got shape {tuple(z.shape)}")
        return z

    # ------------------------------------------------------------------ distributions

    def encode(self, w):
        """``r(z | w)``: ``w [n, k, k] -> (mu [n, latent], log_sigma [n, latent])``."""
        mu, var_logit = self.encoder(self._slices(w))
        return mu, 0.5 * _log_softplus(var_logit)

    def decode(self, z):
        """``p(w | z)``: ``z [n, latent] -> (mu [n, k, k], log_sigma [n, k, k])``."""
        mu, var_logit = self.decoder(self._codes(z))
        return mu, 0.5 * _log_softplus(var_logit)

    def prior_z(self):
        """``p(z) = N(0, I)`` as a ``tfd.Independent(tfd.Normal)`` with event shape ``[latent]`` (float32)."""
        return _bound.latent_prior(self, tf.float32)

    def encoder_distribution(self, w):
        """``r(z | w)`` as ``tfd.Independent(tfd.Normal(mu, exp(log_sigma)), 1)``: batch ``[n]``, event
        ``[latent]``, the parameters of :meth:`encode` (float32, differentiable in ``w``)."""
        return _bound.encoder_distribution(self, self._slices(w))

    def decoder_distribution(self, z):
        """``p(w | z)`` as ``tfd.Independent(tfd.Normal(mu, exp(log_sigma)), 2)``: for codes
        ``z [..., latent]`` (``[n, latent]`` gives batch ``[n]``), event ``[k, k]``, the parameters
        of :meth:`decode` (float32)."""
        z = tf.convert_to_tensor(z, dtype=tf.float32)
        if z.shape.rank is None or z.shape.rank < 1 or z.shape[-1] != self.latent:
            raise ShapeError(f"this kernel VAE takes codes z [..., {self.latent}], got shape {tuple(z.shape)}")
        return _bound.decoder_distribution(self, z)

    def elbo_terms(self, w, eps):
        """``(log p(w | z) [n], KL(r(z | w) || N(0, I)) [n])`` at ``z = mu_e + sigma_e * eps``.

        ``eps`` [n, latent] is the standard normal noise of the reparameterisation; the log
        likelihood is summed over the ``k * k`` entries.
        """
        w = self._slices(w)
        z_mu, z_log_sigma = self.encode(w)
        z = z_mu + tf.exp(z_log_sigma) * tf.cast(eps, tf.float32)
        w_mu, w_log_sigma = self.decode(z)
        log_lik = tf.reduce_sum(_normal_log_prob(w, w_mu, w_log_sigma), axis=[1, 2])
        return log_lik, _kl_std_normal(z_mu, z_log_sigma)

    def _noise_like(self, w, seed):
        shape = (tf.shape(w)[0], self.latent)
        return keras.random.normal(shape, seed=self._noise if seed is None else integer(seed, "seed", 0))

    def elbo(self, w, seed: int | None = None):
        """Per-slice ELBO ``[n]`` (float32 tensor) with one reparameterised sample of ``z``.

        ``seed`` (an int) fixes the noise, so the same call gives the same numbers; None draws
        it from the model's seed generator (different on every call).
        """
        w = self._slices(w)
        log_lik, kl = self.elbo_terms(w, self._noise_like(w, seed))
        return log_lik - kl

    def call(self, w, training=False):
        """The per-slice negative ELBO ``[n]``: the training loss (noise only when training)."""
        w = self._slices(w)
        if training:
            eps = self._noise_like(w, None)
        else:
            eps = tf.zeros((tf.shape(w)[0], self.latent), tf.float32)
        log_lik, kl = self.elbo_terms(w, eps)
        return kl - log_lik

    # ------------------------------------------------------------------ numpy helpers

    def sample_kernels(self, num: int, seed: int, *, mean: bool = False) -> np.ndarray:
        """``num`` kernels ``[num, k, k]`` (float32 numpy) from the prior: ``z ~ N(0, I)``,
        ``w ~ p(w | z)``; with ``mean=True`` the decoder means ``mu_d(z)`` instead of samples."""
        num = positive_int(num, "num")
        rng = np.random.default_rng(integer(seed, "seed", 0))
        out = []
        for start in range(0, num, _BATCH):
            n = min(_BATCH, num - start)
            z = rng.standard_normal((n, self.latent)).astype(np.float32)
            mu, log_sigma = self.decode(z)
            w = mu.numpy()
            if not mean:
                w = w + np.exp(log_sigma.numpy()) * rng.standard_normal(w.shape).astype(np.float32)
            out.append(w.astype(np.float32))
        return np.concatenate(out, axis=0)

    def encode_means(self, w) -> np.ndarray:
        """The encoder means ``[n, latent]`` (numpy) of slices ``w [n, k, k]``, in batches."""
        w = np.asarray(w, dtype=np.float32)
        self._slices(w[:0])  # shape check
        parts = [self.encode(w[i:i + _BATCH])[0].numpy() for i in range(0, len(w), _BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.latent), np.float32)

    def reconstruct(self, w) -> np.ndarray:
        """Decoder means at the encoder means, ``[n, k, k]`` (numpy): the VAE's reconstruction."""
        z = self.encode_means(w)
        if not len(z):
            return np.zeros((0, self.kernel_size, self.kernel_size), np.float32)
        return np.concatenate([self.decode(z[i:i + _BATCH])[0].numpy() for i in range(0, len(z), _BATCH)])

    # ------------------------------------------------------------------ files

    def _weights(self) -> list:
        return list(self.encoder.weights) + list(self.decoder.weights)

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write the weights and config to one HDF5 file, atomically (no pickles).

        Datasets ``weights/00000``... in the order of ``encoder.weights + decoder.weights``;
        root attributes ``format``, ``config`` (JSON) and ``paths`` (each weight's Keras path).
        """
        weights = self._weights()
        arrays = {f"weights/{i:05d}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(weights)}
        attrs = {"format": _FORMAT, "config": self.get_config(), "paths": [v.path for v in weights]}
        path = pathlib.Path(path)
        save_h5(path, arrays, attrs)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KernelVAE":
        """Rebuild a VAE saved by :meth:`save` (DataFormatError if the file does not match)."""
        arrays, attrs = load_h5(path)
        if attrs.get("format") != _FORMAT or not isinstance(attrs.get("config"), dict):
            raise DataFormatError(
                f"{path} is not a saved kernel VAE (format {attrs.get('format')!r}); write it with KernelVAE.save"
            )
        try:
            vae = cls(**attrs["config"])
        except TypeError as e:
            raise DataFormatError(f"{path}: bad kernel VAE config {attrs['config']!r} ({e})") from e
        weights = vae._weights()
        if len(arrays) != len(weights):
            raise DataFormatError(f"{path} holds {len(arrays)} weights, the model has {len(weights)}")
        for i, v in enumerate(weights):
            value = arrays.get(f"weights/{i:05d}")
            if value is None or tuple(value.shape) != tuple(v.shape):
                got = None if value is None else value.shape
                raise DataFormatError(f"{path}: weight {i} ({v.path}) should be {tuple(v.shape)}, got {got}")
            v.assign(value.astype(np.float32))
        return vae

    @classmethod
    def from_release(cls, path: str | os.PathLike, *, seed: int | None = None) -> "KernelVAE":
        """The deep weight prior release's trained 7x7 or 5x5 kernel VAE from its ``.npz`` state dict.

        ``path``: ``vae7x7.npz`` or ``vae5x5.npz``, the release's ``vae_params.torch`` saved as
        numpy arrays under the PyTorch names (``encoder.features.0.weight``, ...). The kernel size,
        ``hidden`` and ``latent`` are read from the arrays; the weights are transposed to Keras's
        layouts, so ``encode``/``decode`` compute the release's ``Encoder*``/``Decoder*`` (ELU,
        variances ``softplus`` of the heads, as trained with ``var: train``). ``seed`` only seeds
        the training-noise generator. DataFormatError if the file is not such a state dict.
        """
        path = pathlib.Path(path)
        arrays = _read_release_arrays(path)
        k, hidden, latent = _release_layout(arrays, path)
        vae = cls(k, hidden, latent, seed=seed)
        layers = {layer.name: layer for model in (vae.encoder, vae.decoder) for layer in model.layers}
        for prefix, name in _RELEASE_LAYERS[k]:
            layer = layers[name]
            for part, var in (("weight", layer.kernel), ("bias", layer.bias)):
                key = f"{prefix}.{part}"
                value = arrays[key]
                want = tuple(var.shape)
                if part == "weight":
                    want = (want[3], want[2], want[0], want[1])  # Keras -> PyTorch layout
                if value.dtype.kind != "f" or tuple(value.shape) != want:
                    raise DataFormatError(
                        f"{path}: {key} should be a float array of shape {want} for a {k}x{k} VAE with "
                        f"hidden {hidden}, latent {latent}; got {value.dtype} {tuple(value.shape)}"
                    )
                if not np.all(np.isfinite(value)):
                    raise DataFormatError(f"{path}: {key} holds NaN or inf values")
                if part == "weight":
                    value = np.transpose(value, (2, 3, 1, 0))
                var.assign(np.ascontiguousarray(value, dtype=np.float32))
        return vae


# --------------------------------------------------------------------------- training


class _EpochCheck:
    """Trainer callback: after each epoch, the ELBO terms and reconstruction error on a fixed set.

    The set is the held-out slices, or a fixed subsample of the training slices when nothing is
    held out; the noise is the same every epoch, so the rows are comparable.
    """

    def __init__(self, vae: KernelVAE, slices: np.ndarray, seed: int, label: str, verbose: bool):
        self.vae, self.slices, self.label, self.verbose = vae, slices, label, verbose
        rng = derive_rng(seed, _EVAL_NOISE_STREAM)
        self.eps = rng.standard_normal((len(slices), vae.latent)).astype(np.float32)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict:
        log_lik = kl = sq = 0.0
        for i in range(0, len(self.slices), _BATCH):
            w = self.slices[i:i + _BATCH]
            ll, k = self.vae.elbo_terms(w, self.eps[i:i + _BATCH])
            log_lik += float(tf.reduce_sum(tf.cast(ll, tf.float64)))
            kl += float(tf.reduce_sum(tf.cast(k, tf.float64)))
            sq += float(np.sum(np.square(self.vae.reconstruct(w).astype(np.float64) - w)))
        n = len(self.slices)
        row = {
            "train_elbo": -float(logs["train_loss"]),
            "eval_elbo": (log_lik - kl) / n,
            "eval_log_lik": log_lik / n,
            "eval_kl": kl / n,
            "eval_recon_mse": sq / (n * self.vae.kernel_size ** 2),
        }
        if self.verbose:
            print(f"{self.label} epoch {epoch + 1}: train ELBO {row['train_elbo']:.4f}, eval ELBO "
                  f"{row['eval_elbo']:.4f} (log-lik {row['eval_log_lik']:.4f}, KL {row['eval_kl']:.4f}), "
                  f"recon MSE {row['eval_recon_mse']:.3e}", file=sys.stderr, flush=True)
        return row


def _check_bank_slices(slices) -> np.ndarray:
    slices = np.asarray(slices)
    if slices.ndim != 3 or slices.shape[1] != slices.shape[2]:
        raise ShapeError(f"slices must be [n, k, k], got shape {slices.shape}")
    if slices.shape[0] < 2:
        raise ShapeError(f"the kernel VAE needs at least 2 slices to train on, got {slices.shape[0]}")
    if not np.all(np.isfinite(slices)):
        raise InvalidOptionError("the slices hold NaN or inf values; rebuild the kernel bank from finite kernels")
    return np.ascontiguousarray(slices, dtype=np.float32)


def held_out_split(n: int, fraction, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)``: a seeded random ``fraction`` of ``range(n)`` held out (the split
    :func:`train_kernel_vae` makes with the same ``seed``)."""
    fraction = probability(fraction, "validation_fraction", below_one=True)
    n_val = int(round(float(fraction) * n))
    if fraction > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 1:
        raise InvalidOptionError(f"validation_fraction {fraction} leaves no slice to train on ({n} slices)")
    if n_val == 0:
        return np.arange(n), np.arange(0)
    order = derive_rng(seed, _SPLIT_STREAM).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_kernel_vae(slices, *, hidden: int, latent: int, epochs: int, batch_size: int = 128,
                     learning_rate: float = 1e-3, run_dir: RunDir | None = None, seed: int,
                     verbose: bool = True, validation_fraction: float = 0.0,
                     name: str | None = None) -> tuple[KernelVAE, list[dict]]:
    """Train a :class:`KernelVAE` on a bank of slices ``[n, k, k]``; return it and its history.

    Adam at ``learning_rate`` decayed linearly per epoch (``lr * (1 - i / epochs)`` for epoch
    index ``i``), mini-batches of ``batch_size`` in an order drawn from ``(seed, epoch)``, the
    mean negative ELBO (one reparameterised sample) as the loss; see the module docstring for
    the reference settings. ``validation_fraction`` of the slices (seeded) is held out.

    History: one row per epoch with ``epoch``, ``lr``, ``train_loss`` (mean negative ELBO over
    the epoch's batches), ``train_accuracy`` (NaN, not defined here), ``seconds``,
    ``train_elbo`` (= -train_loss), and ``eval_elbo``, ``eval_log_lik``, ``eval_kl``,
    ``eval_recon_mse`` measured after the epoch, with fixed noise, on the held-out slices or
    (without any) on a fixed subsample of at most 4096 training slices.

    With ``run_dir`` (uses :class:`tfbdl.train.loop.Trainer`): each finished epoch is
    checkpointed atomically under ``checkpoints/<name>/`` and logged to ``<name>_metrics.csv``;
    a rerun with the same slices, options and seed resumes after the last finished epoch and
    ends with the same weights, bit for bit on a CPU, as an uninterrupted run. The trained VAE
    is also written to ``<name>.h5`` (:meth:`KernelVAE.save`). ``name`` defaults to
    ``kernel_vae_<k>x<k>``, so the 7x7 and 5x5 VAEs can share one run dir.
    """
    from tfbdl.train.loop import Trainer

    slices = _check_bank_slices(slices)
    k = slices.shape[1]
    seed = integer(seed, "seed", 0)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    lr = positive_number(learning_rate, "learning_rate")
    name = name or f"kernel_vae_{k}x{k}"
    train_idx, val_idx = held_out_split(len(slices), validation_fraction, seed)
    train = slices[train_idx]
    if len(val_idx):
        check = slices[val_idx]
    else:
        pick = derive_rng(seed, _CHECK_SUBSET_STREAM).permutation(len(train))
        check = train[np.sort(pick[:_EVAL_MAX])]

    vae = KernelVAE(k, hidden, latent, seed=seed)
    trainer = Trainer(vae, lambda: keras.optimizers.Adam(lr, epsilon=1e-8), loss=lambda y, neg_elbo: neg_elbo)
    history = trainer.fit(
        (train, np.zeros(len(train), np.float32)), epochs, run_dir=run_dir,
        lr_schedule=lambda epoch: lr * (1.0 - epoch / epochs), callbacks=[_EpochCheck(vae, check, seed, name, verbose)],
        seed=seed, batch_size=batch_size, shuffle=True, name=name, metrics_file=f"{name}_metrics.csv",
        verbose=verbose,
    )
    if run_dir is not None:
        vae.save(run_dir.file(f"{name}.h5"))
    return vae, history


# --------------------------------------------------------------------------- figures


def _kernel_grid(ax_grid, kernels: np.ndarray) -> None:
    """Draw each ``k x k`` kernel in its own axis, colour scale symmetric about 0 per kernel."""
    for ax, kernel in zip(ax_grid, kernels):
        m = float(np.max(np.abs(kernel))) or 1.0
        ax.imshow(kernel, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
    for ax in ax_grid:
        ax.set_axis_off()


def plot_latent_space(vae: KernelVAE, slices, path, *, max_points: int = 5000, seed: int = 0) -> pathlib.Path:
    """PNG of the encoder means of (at most ``max_points`` random) slices, coloured by norm.

    latent 2: the means themselves, with the prior's 1 and 2 sigma circles; latent > 2: their
    first two principal components (variance shares in the axis labels); latent 1: a histogram.
    """
    from tfbdl.plots import pyplot, save_figure

    slices = np.asarray(slices, dtype=np.float32)
    vae._slices(slices[:0])
    if len(slices) == 0:
        raise ShapeError("plot_latent_space needs at least one slice")
    rng = np.random.default_rng(integer(seed, "seed", 0))
    if len(slices) > positive_int(max_points, "max_points"):
        slices = slices[np.sort(rng.choice(len(slices), max_points, replace=False))]
    mu = vae.encode_means(slices).astype(np.float64)
    norms = np.sqrt(np.sum(np.square(slices.astype(np.float64)), axis=(1, 2)))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4))
    k = vae.kernel_size
    if vae.latent == 1:
        ax.hist(mu[:, 0], bins=50, color="tab:blue")
        ax.set_xlabel("z")
        ax.set_ylabel("slices")
    else:
        if vae.latent == 2:
            xy, labels = mu, ("z1", "z2")
            t = np.linspace(0, 2 * np.pi, 200)
            for r in (1.0, 2.0):
                ax.plot(r * np.cos(t), r * np.sin(t), "k--", lw=0.6, alpha=0.5)
        else:
            centred = mu - mu.mean(axis=0)
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            xy = centred @ vt[:2].T
            share = s ** 2 / max(float(np.sum(s ** 2)), 1e-300)
            labels = (f"PC1 ({100 * share[0]:.0f}% var.)", f"PC2 ({100 * share[1]:.0f}% var.)")
        points = ax.scatter(xy[:, 0], xy[:, 1], c=norms, s=3, cmap="viridis", alpha=0.7, linewidths=0)
        fig.colorbar(points, ax=ax, label="slice norm ||w||_F")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{k}x{k} VAE: encoder means of {len(slices)} slices (latent {vae.latent})", fontsize=8)
    return save_figure(fig, path)


def plot_decoded_samples(vae: KernelVAE, path, num: int = 64, seed: int = 0, *, mean: bool = True) -> pathlib.Path:
    """PNG grid of ``num`` kernels from the prior, ``z ~ N(0, I)`` decoded (means by default,
    samples of ``p(w|z)`` with ``mean=False``), each kernel a ``k x k`` image."""
    from tfbdl.plots import pyplot, save_figure

    kernels = vae.sample_kernels(num, seed, mean=mean)
    cols = int(math.ceil(math.sqrt(len(kernels))))
    rows = int(math.ceil(len(kernels) / cols))
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.7, rows * 0.7 + 0.3), squeeze=False)
    _kernel_grid(list(axes.flat), kernels)
    fig.subplots_adjust(wspace=0.08, hspace=0.08)
    what = "decoder means" if mean else "samples"
    k = vae.kernel_size
    fig.suptitle(f"{k}x{k} VAE prior: {what} (colour scale per kernel, red > 0)", fontsize=8)
    return save_figure(fig, path)
