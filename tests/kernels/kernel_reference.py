"""An independent, plain-numpy version of the CNN-GP recursion, one pair of images at a time.

Architectures are nested tuples, so nothing is shared with tfbdl.kernels:
("conv", k, stride, padding, var_weight, var_bias) with padding "same" or "valid";
("relu",), ("erf",), ("readout", var_weight, var_bias), ("seq", [...]), ("sum", [...]), ("id",).
A pair is carried as three maps (cross-covariance c, variances vx, vy).
"""

import math

import numpy as np


def conv_map(m, k, stride, padding, var_weight, var_bias):
    """var_weight * (k x k patch sum of m) / k^2 + var_bias, zero padded, PyTorch-style stride."""
    if padding == "same":
        low, high = (k // 2, k // 2) if k % 2 else (k // 2 - 1, k // 2)
    else:
        low = high = 0
    padded = np.pad(m, ((low, high), (low, high)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k)).sum(axis=(-2, -1))
    return var_weight * windows[::stride, ::stride] / k**2 + var_bias


def relu_pair(c, vx, vy):
    norm = np.sqrt(vx * vy)
    cos = np.clip(np.divide(c, norm, out=np.zeros_like(c), where=norm > 0), -1, 1)
    theta = np.arccos(cos)
    return (norm * np.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)


def erf_pair(c, vx, vy):
    return 2 / math.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * vx) * (1 + 2 * vy)))


def propagate(arch, c, vx, vy, same):
    kind = arch[0]
    if kind == "conv":
        _, k, stride, padding, vw, vb = arch
        return tuple(conv_map(m, k, stride, padding, vw, vb) for m in (c, vx, vy))
    if kind == "readout":
        _, vw, vb = arch
        return tuple(np.array([[vw * m.mean() + vb]]) for m in (c, vx, vy))
    if kind == "relu":
        out = vx / 2 if same else relu_pair(c, vx, vy)
        return out, vx / 2, vy / 2
    if kind == "erf":
        out = erf_pair(vx, vx, vx) if same else erf_pair(c, vx, vy)
        return out, erf_pair(vx, vx, vx), erf_pair(vy, vy, vy)
    if kind == "seq":
        for layer in arch[1]:
            c, vx, vy = propagate(layer, c, vx, vy, same)
        return c, vx, vy
    if kind == "sum":
        parts = [propagate(branch, c, vx, vy, same) for branch in arch[1]]
        return tuple(sum(p[i] for p in parts) for i in range(3))
    if kind == "id":
        return c, vx, vy
    raise ValueError(kind)


def kernel_value(arch, x, y, same=False):
    """The kernel of images x, y [H, W, C] (float64)."""
    c = (x * y).mean(-1)
    vx, vy = (x * x).mean(-1), (y * y).mean(-1)
    out, _, _ = propagate(arch, c, vx, vy, same)
    return float(out.squeeze())


def kernel_matrix(arch, xs, ys=None):
    same = ys is None
    ys = xs if same else ys
    return np.array([[kernel_value(arch, a, b, same and i == j) for j, b in enumerate(ys)] for i, a in enumerate(xs)])


# The paper's three MNIST architectures, written out from the paper's description.
def convnet_gp():
    return ("seq", [layer for _ in range(7) for layer in (("conv", 7, 1, "same", 2.79 * 49, 7.86), ("relu",))]
            + [("readout", 2.79, 7.86)])


def residual_cnn_gp():
    conv = ("conv", 4, 1, "same", 7.27 * 16, 4.69)
    blocks = [("sum", [("id",), ("seq", [conv, ("relu",)])]) for _ in range(8)]
    return ("seq", blocks + [conv, ("relu",), ("readout", 7.27, 4.69)])


def resnet_gp():
    def c3(stride=1):
        return ("conv", 3, stride, "same", 1.0, 0.0)

    identity = ("sum", [("id",), ("seq", [("relu",), c3(), ("relu",), c3()])])

    def projection(stride):
        return ("seq", [("relu",), ("sum", [("conv", 1, stride, "same", 1.0, 0.0),
                                            ("seq", [c3(stride), ("relu",), c3()])])])

    layers = [c3()]
    for stride in (1, 2, 2):
        layers += [projection(stride)] + [identity] * 4
    return ("seq", layers + [("readout", 1.0, 0.0), ("relu",), ("readout", 1.0, 0.0)])


# ----------------------------------------------------------------------------- full covariances
# Maps are [H, W, H, W]: the covariance of x at (h, w) with y at (h', w'). Extra layer kinds:
# ("avgpool", window, stride) and ("gap",) (global average pooling).

def _taps(k, padding):
    if padding == "same":
        return list(range(-(k - 1) // 2, k // 2 + 1)) if k % 2 else list(range(-(k // 2 - 1), k // 2 + 1))
    return list(range(k))


def _centres(size, k, stride, padding):
    if padding == "same":
        return list(range(0, size, stride))
    return [i * stride for i in range((size - k) // stride + 1)]


def conv_full(m, k, stride, padding, vw, vb):
    h, w = m.shape[:2]
    taps = _taps(k, padding)
    rows, cols = _centres(h, k, stride, padding), _centres(w, k, stride, padding)
    out = np.zeros((len(rows), len(cols), len(rows), len(cols)))
    for i, ci in enumerate(rows):
        for j, cj in enumerate(cols):
            for a, ca in enumerate(rows):
                for b, cb in enumerate(cols):
                    total = 0.0
                    for dy in taps:
                        for dx in taps:
                            p, q, r, s = ci + dy, cj + dx, ca + dy, cb + dx
                            if 0 <= p < h and 0 <= q < w and 0 <= r < h and 0 <= s < w:
                                total += m[p, q, r, s]
                    out[i, j, a, b] = vw * total / k**2 + vb
    return out


def _diagonal(m):
    h, w = m.shape[:2]
    return np.array([[m[i, j, i, j] for j in range(w)] for i in range(h)])


def _nonlinear_full(kind, c, vx, vy, same_sample):
    """Apply the nonlinearity to every location pair; same sample and same location: exact."""
    h, w = vx.shape
    out = np.zeros_like(c)
    for i in range(h):
        for j in range(w):
            for a in range(h):
                for b in range(w):
                    args = (np.array(c[i, j, a, b]), np.array(vx[i, j]), np.array(vy[a, b]))
                    exact = same_sample and (i, j) == (a, b)
                    if kind == "relu":
                        out[i, j, a, b] = vx[i, j] / 2 if exact else relu_pair(*args)
                    else:
                        out[i, j, a, b] = erf_pair(vx[i, j], vx[i, j], vx[i, j]) if exact else erf_pair(*args)
    return out


def propagate_full(arch, c, kx, ky, same):
    kind = arch[0]
    if kind == "conv":
        _, k, stride, padding, vw, vb = arch
        return tuple(conv_full(m, k, stride, padding, vw, vb) for m in (c, kx, ky))
    if kind in ("relu", "erf"):
        vx, vy = _diagonal(kx), _diagonal(ky)
        return (_nonlinear_full(kind, c, vx, vy, same), _nonlinear_full(kind, kx, vx, vx, True),
                _nonlinear_full(kind, ky, vy, vy, True))
    if kind == "avgpool":
        _, window, stride = arch

        def pool(m):
            h, w = m.shape[:2]
            ho, wo = (h - window) // stride + 1, (w - window) // stride + 1
            out = np.zeros((ho, wo, ho, wo))
            for i in range(ho):
                for j in range(wo):
                    for a in range(ho):
                        for b in range(wo):
                            out[i, j, a, b] = m[i * stride:i * stride + window, j * stride:j * stride + window,
                                                a * stride:a * stride + window, b * stride:b * stride + window].mean()
            return out

        return tuple(pool(m) for m in (c, kx, ky))
    if kind == "gap":
        return tuple(np.full((1, 1, 1, 1), m.mean()) for m in (c, kx, ky))
    if kind == "readout":
        _, vw, vb = arch
        return tuple(np.full((1, 1, 1, 1), vw * _diagonal(m).mean() + vb) for m in (c, kx, ky))
    if kind == "seq":
        for layer in arch[1]:
            c, kx, ky = propagate_full(layer, c, kx, ky, same)
        return c, kx, ky
    if kind == "sum":
        parts = [propagate_full(branch, c, kx, ky, same) for branch in arch[1]]
        return tuple(sum(p[i] for p in parts) for i in range(3))
    if kind == "id":
        return c, kx, ky
    raise ValueError(kind)


def kernel_value_full(arch, x, y, same=False):
    """The kernel of images x, y [H, W, C] on the full-covariance path."""
    channels = x.shape[-1]
    c = np.einsum("hwc,klc->hwkl", x, y) / channels
    kx = np.einsum("hwc,klc->hwkl", x, x) / channels
    ky = np.einsum("hwc,klc->hwkl", y, y) / channels
    out, _, _ = propagate_full(arch, c, kx, ky, same)
    return float(out.squeeze())


def kernel_matrix_full(arch, xs, ys=None):
    same = ys is None
    ys = xs if same else ys
    return np.array([[kernel_value_full(arch, a, b, same and i == j) for j, b in enumerate(ys)]
                     for i, a in enumerate(xs)])
