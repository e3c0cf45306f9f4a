"""A numpy oracle of the deep weight prior release's networks and loss terms (PyTorch semantics,
NCHW, float64), read straight from its state dicts: independent of the Keras models and of the
weight conversion. Used by the tests that hold tfbdl against the release."""

import numpy as np

def np_conv2d(x, weight, bias, padding=0):
    """nn.Conv2d (stride 1): cross-correlation; weight [out, in, kh, kw], x [n, in, h, w]."""
    n, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    out = np.zeros((n, weight.shape[0], ho, wo))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, a:a + ho, b:b + wo], weight[:, :, a, b])
    return out + bias[None, :, None, None]


def np_conv_transpose2d(x, weight, bias, stride=1, padding=0, output_padding=0):
    """nn.ConvTranspose2d: each input pixel (i, j) adds x * weight[c, :, a, b] at
    (i * stride + a - padding, j * stride + b - padding); weight [in, out, kh, kw]."""
    n, _, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    full_h, full_w = (h - 1) * stride + kh + output_padding, (w - 1) * stride + kw + output_padding
    out = np.zeros((n, c_out, full_h, full_w))
    for a in range(kh):
        for b in range(kw):
            contrib = np.einsum("nchw,co->nohw", x, weight[:, :, a, b])
            out[:, :, a:a + (h - 1) * stride + 1:stride, b:b + (w - 1) * stride + 1:stride] += contrib
    out = out[:, :, padding:full_h - padding, padding:full_w - padding]
    return out + bias[None, :, None, None]


def np_elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def np_softplus(x):
    """F.softplus (beta 1, threshold 20)."""
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20.0))))


# (module, kind, padding) per layer of Encoder{7x7,5x5}.features / Decoder{7x7,5x5}.decoder, and
# the state dict names of their heads, as in the release's models/vae.py.
ORACLE = {
    7: {"enc": [(0, "c", 0), (2, "c", 0), (4, "c", 0)], "enc_var": "encoder.fc_var",
        "dec": [(0, "t", 0), (2, "t", 0), (4, "t", 0)], "dec_mu": "decoder.fc_mu", "dec_var": "decoder.fc_var"},
    5: {"enc": [(0, "c", 1), (2, "c", 1), (4, "c", 0), (6, "c", 0)], "enc_var": "encoder.fc_sigma",
        "dec": [(0, "c", 0), (2, "t", 0), (4, "t", 0), (6, "c", 0)], "dec_mu": "decoder.fc_mu.0",
        "dec_var": "decoder.fc_var.0"},
}


def np_stack(sd, x, prefix, spec):
    for idx, kind, padding in spec:
        w, b = sd[f"{prefix}.{idx}.weight"].astype(np.float64), sd[f"{prefix}.{idx}.bias"].astype(np.float64)
        x = np_conv2d(x, w, b, padding) if kind == "c" else np_conv_transpose2d(x, w, b, padding=padding)
        x = np_elu(x)
    return x


def np_head(sd, x, name):
    return np_conv2d(x, sd[f"{name}.weight"].astype(np.float64), sd[f"{name}.bias"].astype(np.float64))


def np_release_encode(sd, k, w):
    """Encoder{k}x{k}.forward: kernels [n, 1, k, k] -> (z_mu, z_var) [n, d, 1, 1]."""
    h = np_stack(sd, w, "encoder.features", ORACLE[k]["enc"])
    return np_head(sd, h, "encoder.fc_mu"), np_softplus(np_head(sd, h, ORACLE[k]["enc_var"]))


def np_release_decode(sd, k, z):
    """Decoder{k}x{k}.forward (var 'train'): z [n, d, 1, 1] -> (mu, var) [n, 1, k, k]."""
    h = np_stack(sd, z, "decoder.decoder", ORACLE[k]["dec"])
    return np_head(sd, h, ORACLE[k]["dec_mu"]), np_softplus(np_head(sd, h, ORACLE[k]["dec_var"]))


def np_normal_log_prob(x, mu, var):
    return -0.5 * (x - mu) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def load_state_dict(path):
    """The arrays of a release VAE's ``.npz`` state dict, by name."""
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


def np_leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


def np_max_pool2(x):
    """nn.MaxPool2d(2) on [n, c, h, w]: 2x2 windows, stride 2, the last odd row / column dropped."""
    n, c, h, w = x.shape
    x = x[:, :, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def np_fconv_det(images, conv1, conv2, dense):
    """FConvMNIST('bayes') in the release's 'det' mode (posterior means): images [n, 1, 28, 28];
    conv1/conv2 = (weight [out, in, k, k], bias [out]); dense = (weight [10, features], bias [10]),
    applied to the flattened map in the order of ``dense``'s columns (``[n, h, w, c]`` here, to
    match a Keras Flatten; the release flattens [n, c, h, w] - a permutation of the same weights)."""
    x = np_max_pool2(np_leaky_relu(np_conv2d(images, *conv1)))
    x = np_max_pool2(np_leaky_relu(np_conv2d(x, *conv2)))
    features = x.transpose(0, 2, 3, 1).reshape(len(x), -1)
    return features @ dense[0].T + dense[1]


def np_kl_dwp(sd, k, mean, var, eps, eta):
    """The release's ``utils.kl_dwp`` (one weight draw, ``n_tries=1``) for one BayesConv2d.

    ``mean``, ``var`` [out, in, k, k] are the posterior's means and variances ``exp(log sigma^2)``;
    ``eps`` [out, in, k, k] and ``eta`` [out * in, latent] the standard-normal noise of
    ``w = mean + sqrt(var + 1e-12) * eps`` and of ``z = z_mu + sqrt(z_var) * eta``. Returns
    ``-H(q) + sum_slices [-log p(w | z) + KL(r(z | w) || N(0, I))]`` and its two parts.
    """
    std = np.sqrt(var + 1e-12)
    neg_entropy = -np.sum(0.5 + 0.5 * np.log(2 * np.pi) + np.log(std))
    w = (mean + std * eps).reshape(-1, 1, k, k)
    z_mu, z_var = np_release_encode(sd, k, w)
    z_mu, z_var = z_mu[:, :, 0, 0], z_var[:, :, 0, 0]
    z = z_mu + np.sqrt(z_var) * eta
    w_mu, w_var = np_release_decode(sd, k, z[:, :, None, None])
    log_lik = np.sum(np_normal_log_prob(w, w_mu, w_var))
    kl_z = np.sum(0.5 * (z_var + z_mu ** 2 - 1.0 - np.log(z_var)))
    return neg_entropy - log_lik + kl_z, neg_entropy, kl_z - log_lik
