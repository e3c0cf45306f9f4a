"""Random finite networks of a kernel's layer description: the networks whose infinite-width limit
:class:`~tfbdl.kernels.ConvNetKernel` computes, for checking a kernel against Monte Carlo.

Parameters follow the conventions of :mod:`tfbdl.kernels.layers`: a weight of a layer with
``var_weight`` and fan-in ``F`` (``k * k * C`` for a conv, ``H * W * C`` for a readout) is drawn from
``N(0, var_weight / F)``, a bias from ``N(0, var_bias)`` (none when ``var_bias`` is 0). Hidden layers
have ``width`` channels, the network's last readout ``outputs``. A conv sees the patch its kernel
layer describes (:meth:`~tfbdl.kernels.Conv2d.taps`: for "same", ``k // 2`` padding on each side of
an odd ``k``, as the paper's code, also when strided). Where a branch sum adds a 1-channel input to
``width`` channels (the residual CNN GP's first block) the input is broadcast over the channels,
which leaves the kernel unchanged (other channel counts cannot be summed).

Two forms of the same networks:

- :class:`RandomNetworks`: ``D`` independent networks on the same images in one call, vectorised
  over the draws: the D networks' channels sit side by side (``[N, H, W, D * C]``) and each conv is
  one grouped convolution (a depthwise one for networks of a few channels). Besides the outputs it
  gives each network's *readout-averaged kernel*, the covariance of its outputs over the last
  readout's weights and bias given its features, ``var_bias + var_weight * mean(phi(x) phi(x'))``:
  an unbiased estimate of the output covariance whose Monte Carlo noise falls with the width.
- :func:`finite_network`: one network as a Keras model, in the standard parameterisation or the
  NTK one (trainable standard normals scaled in the forward pass), whose empirical NTK
  (:func:`tfbdl.ntk.compute_ntk`) tends to :func:`~tfbdl.kernels.convnet_ntk`.

Randomness is stateless: network ``j``'s parameters are drawn from its key ``keys[j]``
(:func:`draw_keys`), so a network is the same whichever batch it is drawn in, and
``finite_network`` with the same key is the same function.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.kernels.layers import (AvgPool2d, BranchSum, Conv2d, Erf, GlobalAvgPool, Identity, Layer, ReLU, Readout,
                                  Sequential)
from tfbdl.validate import integer

__all__ = ["Affine", "DEPTHWISE_CHANNELS", "PARAMETERISATIONS", "RandomNetworks", "draw_keys", "finite_network",
           "limit_mismatch", "plan_network"]

PARAMETERISATIONS = ("standard", "ntk")

#: Up to this many input channels per network, a conv runs as a depthwise conv (see ``_conv``).
DEPTHWISE_CHANNELS = 4


@dataclasses.dataclass(frozen=True)
class Affine:
    """One layer with weights: a conv (``kernel [k, k, C_in, C_out]``) or a readout (``kernel
    [H, W, C_in, C_out]``), with the standard deviations of its weights and bias, its stride and
    its padding ``((top, bottom), (left, right))``."""

    kind: str
    index: int
    kernel_shape: tuple[int, ...]
    weight_std: float
    bias_std: float
    stride: int = 1
    pads: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))


def _value(parameter) -> float:
    return float(np.asarray(tf.convert_to_tensor(parameter)))


def _conv_pads(layer: Conv2d, size: int) -> tuple[tuple[int, int], int]:
    """Padding (low, high) that puts output ``i`` on input ``stride * i + taps``, and the output size."""
    taps, size_out = layer.taps(), layer.centres(size).size
    low = max(0, -int(taps[0]))
    high = max(0, (size_out - 1) * layer.stride + layer.kernel_size - size - low)
    return (low, high), size_out


def plan_network(network: Layer, image_shape, width: int, outputs: int = 1):
    """The finite network of ``network`` on ``image_shape`` (H, W, C) images: a nested plan whose leaves
    are :class:`Affine` layers and names (``"relu"``, ``"erf"``, ``"identity"``, ``("avgpool", window,
    stride)``, ``"gap"``), with ``("seq", parts)`` and ``("sum", parts)`` nodes. The network must end in
    a :class:`~tfbdl.kernels.Readout` (to 1 x 1); returns ``(plan, final readout)``."""
    width, outputs = integer(width, "width", 1), integer(outputs, "outputs", 1)
    layers = network.layers if isinstance(network, Sequential) else [network]
    if not layers or not isinstance(layers[-1], Readout):
        raise InvalidOptionError("a finite network needs a layer description that ends in Readout()")
    counter = itertools.count()

    def sequence(parts, h, w, c):
        nodes = []
        for part in parts:
            node, h, w, c = build(part, h, w, c, width)
            nodes.append(node)
        return ("seq", nodes), h, w, c

    def build(layer, h, w, c, c_out):
        """The plan node of ``layer`` on ``[h, w, c]`` inputs, and its output's height, width, channels."""
        if isinstance(layer, Sequential):
            return sequence(layer.layers, h, w, c)
        if isinstance(layer, BranchSum):
            built = [build(branch, h, w, c, width) for branch in layer.branches]
            if len({b[1:3] for b in built}) > 1 or len({b[3] for b in built} - {1}) > 1:
                raise ShapeError(f"the branches of a BranchSum give feature maps of different shapes "
                                 f"{sorted(b[1:] for b in built)}")
            return ("sum", [b[0] for b in built]), built[0][1], built[0][2], max(b[3] for b in built)
        if isinstance(layer, Conv2d):
            (pad_h, h_out), (pad_w, w_out) = _conv_pads(layer, h), _conv_pads(layer, w)
            k = layer.kernel_size
            std = np.sqrt(_value(layer.var_weight) / (k * k * c))
            return (Affine("conv", next(counter), (k, k, c, c_out), std, np.sqrt(_value(layer.var_bias)),
                           layer.stride, (pad_h, pad_w)), h_out, w_out, c_out)
        if isinstance(layer, Readout):
            std = np.sqrt(_value(layer.var_weight) / (h * w * c))
            return (Affine("dense", next(counter), (h, w, c, c_out), std, np.sqrt(_value(layer.var_bias))),
                    1, 1, c_out)
        if isinstance(layer, (ReLU, Erf, Identity)):
            return {ReLU: "relu", Erf: "erf", Identity: "identity"}[type(layer)], h, w, c
        if isinstance(layer, AvgPool2d):
            return ("avgpool", layer.window, layer.stride), len(layer.pool_matrix(h)), len(layer.pool_matrix(w)), c
        if isinstance(layer, GlobalAvgPool):
            return "gap", 1, 1, c
        raise InvalidOptionError(f"no finite network for the kernel layer {type(layer).__name__}")

    body, h, w, c = sequence(layers[:-1], *(int(s) for s in image_shape))
    readout = build(layers[-1], h, w, c, outputs)[0]
    return ("seq", [body, readout]), readout


def limit_mismatch(network: Layer) -> str | None:
    """Why the wide limit of the finite network is *not* the kernel of ``network``, or None.

    A kernel :class:`~tfbdl.kernels.BranchSum` adds its branches' kernels, leaving out their
    cross-covariance. In the network that vanishes when at most one branch has a non-zero mean
    (a branch ending in a conv or readout is zero-mean), but not when two do, e.g. the input (or
    a ReLU output) carried by an identity branch plus a branch ending in a ReLU: the residual CNN
    GP's ``K + ReLU(Conv(K))``, whose sums after the ReLU the paper's code notes.
    """
    found = []

    def mean_free(layer, zero_mean: bool) -> bool:
        """Whether the output has zero mean, given whether the input has."""
        if isinstance(layer, Sequential):
            for part in layer.layers:
                zero_mean = mean_free(part, zero_mean)
            return zero_mean
        if isinstance(layer, BranchSum):
            means = [mean_free(branch, zero_mean) for branch in layer.branches]
            if means.count(False) > 1:
                found.append(layer)
            return all(means)
        if isinstance(layer, (Conv2d, Readout)):
            return True
        if isinstance(layer, ReLU):
            return False
        return zero_mean  # Identity, pooling and odd nonlinearities (Erf) keep a zero mean

    mean_free(network, False)  # the images are fixed inputs: a non-zero "mean"
    if not found:
        return None
    return (f"{len(found)} branch sum(s) add two branches with non-zero means (an identity carrying the input "
            "or a ReLU output, and a branch ending in a ReLU); the kernel leaves out their cross-covariance, "
            "which does not vanish with the width")


def draw_keys(seed: int, count: int, *, start: int = 0, stream: int = 0) -> np.ndarray:
    """Keys ``int64 [count, 2]`` of networks ``start .. start + count - 1`` of ``stream`` under ``seed``."""
    index = np.arange(start, start + count, dtype=np.int64)
    return np.stack([np.full(count, int(seed) * 2**20 + int(stream) % 2**20, np.int64), index], axis=1)


def _normals(keys, affines: list[Affine], dtype) -> dict:
    """Standard normals of every layer's weights ``[D, *kernel_shape]`` and bias ``[D, C_out]`` (None
    without a bias), per key ``keys [D, 2]``: layer ``i``'s weights from the key folded with ``2 i``,
    its bias with ``2 i + 1``."""

    def one(key):
        values = []
        for a in affines:
            for which, shape in ((0, a.kernel_shape), (1, a.kernel_shape[-1:])):
                if which == 0 or a.bias_std > 0:
                    seed = tf.random.experimental.stateless_fold_in(key, 2 * a.index + which)
                    values.append(tf.random.stateless_normal(shape, seed=seed, dtype=dtype))
        return tuple(values)

    count = sum(2 if a.bias_std > 0 else 1 for a in affines)
    drawn = iter(tf.map_fn(one, keys, fn_output_signature=(dtype,) * count))
    return {a.index: (next(drawn), next(drawn) if a.bias_std > 0 else None) for a in affines}


def _grouped(x: tf.Tensor, shared: bool, c: int, draws: int, c_out: int) -> tf.Tensor:
    """``x`` as ``[N, H, W, D * c_out]``: a shared ``[N, H, W, c]`` tensor repeated for every draw, a
    1-channel map broadcast over ``c_out`` channels."""
    if shared:
        return tf.tile(x, [1, 1, 1, draws * (c_out // c)])
    if c == c_out:
        return x
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    return tf.reshape(tf.tile(tf.reshape(x, (-1, h, w, draws, 1)), [1, 1, 1, 1, c_out]), (n or -1, h, w, -1))


def _conv(node: Affine, x, shared: bool, kernel, draws: int) -> tf.Tensor:
    """Every draw's conv: ``kernel [D, k, k, C_in, C_out]`` on ``x`` -> ``[N, H', W', D * C_out]``."""
    k, _, c_in, c_out = node.kernel_shape
    padded = tf.pad(x, [[0, 0], list(node.pads[0]), list(node.pads[1]), [0, 0]])
    if shared or c_in > DEPTHWISE_CHANNELS:  # one conv; grouped (D groups) unless x is shared
        filters = tf.reshape(tf.transpose(kernel, (1, 2, 3, 0, 4)), (k, k, c_in, draws * c_out))
        return tf.nn.conv2d(padded, filters, node.stride, "VALID")
    # Few channels per group: a depthwise conv (each input channel times its C_out filters), summed
    # over each group's inputs, is faster than a grouped conv on CPUs.
    filters = tf.reshape(tf.transpose(kernel, (1, 2, 0, 3, 4)), (k, k, draws * c_in, c_out))
    y = tf.nn.depthwise_conv2d(padded, filters, (1, node.stride, node.stride, 1), "VALID")
    y = tf.reduce_sum(tf.reshape(y, (-1, y.shape[1], y.shape[2], draws, c_in, c_out)), axis=4)
    return tf.reshape(y, (-1, y.shape[1], y.shape[2], draws * c_out))


def _affine(node: Affine, x, shared: bool, params, draws: int):
    """Apply one conv or readout of every draw; ``params[node.index] = (kernel [D, ...], bias [D, C_out]
    or None)``. Returns ``([N, H', W', D * C_out], C_out)``."""
    kernel, bias = params[node.index]
    h, w, c_in, c_out = node.kernel_shape
    if node.kind == "conv":
        y = _conv(node, x, shared, kernel, draws)
    elif shared:
        y = tf.reshape(tf.einsum("nhwc,dhwco->ndo", x, kernel), (-1, 1, 1, draws * c_out))
    else:
        y = tf.einsum("nhwdc,dhwco->ndo", tf.reshape(x, (-1, h, w, draws, c_in)), kernel)
        y = tf.reshape(y, (-1, 1, 1, draws * c_out))
    if bias is not None:
        y = y + tf.reshape(bias, (draws * c_out,))
    return y, c_out


def _forward(node, x, shared: bool, c: int, params, draws: int):
    """Run a plan node on ``x`` (``[N, H, W, c]`` if ``shared`` by every draw, else ``[N, H, W, D * c]``);
    returns ``(y, shared, channels per draw)``."""
    if isinstance(node, Affine):
        y, c_out = _affine(node, x, shared, params, draws)
        return y, False, c_out
    if node == "relu":
        return tf.nn.relu(x), shared, c
    if node == "erf":
        return tf.math.erf(x), shared, c
    if node == "identity":
        return x, shared, c
    if node == "gap":
        return tf.reduce_mean(x, axis=(1, 2), keepdims=True), shared, c
    if node[0] == "avgpool":
        return tf.nn.avg_pool2d(x, node[1], node[2], "VALID"), shared, c
    if node[0] == "seq":
        for part in node[1]:
            x, shared, c = _forward(part, x, shared, c, params, draws)
        return x, shared, c
    results = [_forward(part, x, shared, c, params, draws) for part in node[1]]  # "sum"
    c_out = max(r[2] for r in results)
    if all(r[1] for r in results):
        return tf.add_n([tf.tile(r[0], [1, 1, 1, c_out // r[2]]) for r in results]), True, c_out
    return tf.add_n([_grouped(y, s, cy, draws, c_out) for y, s, cy in results]), False, c_out


def _affines(node) -> list[Affine]:
    if isinstance(node, Affine):
        return [node]
    if isinstance(node, tuple) and node[0] in ("seq", "sum"):
        return [a for part in node[1] for a in _affines(part)]
    return []


class RandomNetworks:
    """Random finite networks of ``network`` with ``width`` channels, drawn ``D`` at a time.

    ``__call__(images [N, H, W, C], keys int [D, 2])`` returns ``outputs [D, N, K]`` (K = ``outputs``)
    and the readout-averaged kernels ``[D, N, N]`` (see the module docstring), in ``dtype``. Traced
    once per (N, D).
    """

    def __init__(self, network: Layer, image_shape, width: int, *, outputs: int = 1, dtype: str = "float32"):
        self.image_shape = tuple(int(s) for s in image_shape)
        self.width, self.outputs, self.dtype = int(width), int(outputs), tf.as_dtype(dtype)
        self.plan, self.readout = plan_network(network, self.image_shape, width, outputs)
        self.affines = _affines(self.plan)
        self._draw = tf.function(self._outputs_and_kernels)

    @property
    def parameter_count(self) -> int:
        """Parameters of one network."""
        return sum(int(np.prod(a.kernel_shape)) + (a.kernel_shape[-1] if a.bias_std > 0 else 0)
                   for a in self.affines)

    def parameters(self, keys, *, scaled: bool = True) -> dict:
        """Every layer's ``(kernel [D, ...], bias [D, C_out] or None)`` for ``keys [D, 2]``: the weights
        and biases, or with ``scaled=False`` the standard normals they are the multiples of."""
        normals = _normals(tf.convert_to_tensor(keys, tf.int64), self.affines, self.dtype)
        if not scaled:
            return normals
        return {a.index: (normals[a.index][0] * a.weight_std,
                          None if normals[a.index][1] is None else normals[a.index][1] * a.bias_std)
                for a in self.affines}

    def _outputs_and_kernels(self, images, keys):
        draws = keys.shape[0]
        params = self.parameters(keys)
        body, readout = self.plan[1]
        phi, shared, c = _forward(body, tf.cast(images, self.dtype), True, self.image_shape[-1], params, draws)
        phi = _grouped(phi, shared, c, draws, c) if shared else phi
        h, w = phi.shape[1], phi.shape[2]
        features = tf.reshape(phi, (-1, h, w, draws, c))
        # E over the readout's weights and bias of f(x) f(x'): sum over features times the weight variance
        kernels = self.readout.weight_std**2 * tf.einsum("nhwdc,mhwdc->dnm", features, features)
        kernels = kernels + self.readout.bias_std**2
        y, _ = _affine(readout, phi, False, params, draws)
        outputs = tf.transpose(tf.reshape(y, (-1, draws, self.outputs)), (1, 0, 2))
        return outputs, kernels

    def __call__(self, images, keys) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ShapeError(f"images must be [N, {', '.join(map(str, self.image_shape))}], got {images.shape}")
        keys = np.asarray(keys, np.int64)
        if keys.ndim != 2 or keys.shape[1] != 2 or keys.shape[0] < 1:
            raise ShapeError(f"keys must be int [D, 2] with D >= 1, got shape {keys.shape}")
        return self._draw(images, tf.constant(keys))


def finite_network(network: Layer, image_shape, width: int, key, *, outputs: int = 1,
                   parameterisation: str = "standard", dtype: str = "float32"):
    """One random finite network as a Keras model ``[N, H, W, C] -> [N, outputs]``: the network of
    :class:`RandomNetworks` with key ``key`` (``int [2]``, a row of :func:`draw_keys`).

    ``parameterisation="standard"``: the trainable variables are the weights and biases.
    ``"ntk"``: they are standard normals, multiplied in the forward pass by the weights' and
    biases' standard deviations, so the model's empirical NTK has the infinite-width limit
    ``convnet_ntk(network, image_shape)`` (with ``normalise=False``).
    """
    import keras

    if parameterisation not in PARAMETERISATIONS:
        raise InvalidOptionError(f"parameterisation must be one of {PARAMETERISATIONS}, got {parameterisation!r}")
    networks = RandomNetworks(network, image_shape, width, outputs=outputs, dtype=dtype)
    ntk = parameterisation == "ntk"
    keys = tf.constant(np.asarray(key, np.int64).reshape(1, 2))

    class FiniteNetwork(keras.layers.Layer):
        """The layers of one finite network; its variables hold one draw's parameters."""

        def __init__(self, **kwargs):
            super().__init__(dtype=dtype, **kwargs)
            self.variables_of = {}
            for index, values in networks.parameters(keys, scaled=not ntk).items():
                made = []
                for value, name in zip(values, ("kernel", "bias")):
                    variable = None
                    if value is not None:
                        variable = self.add_weight(shape=value.shape[1:], initializer="zeros", name=f"{name}_{index}")
                        variable.assign(value[0])
                    made.append(variable)
                self.variables_of[index] = made

        def call(self, images):
            params = {}
            for a in networks.affines:
                kernel, bias = self.variables_of[a.index]
                scale_w, scale_b = (a.weight_std, a.bias_std) if ntk else (1.0, 1.0)
                params[a.index] = (kernel[None] * scale_w, None if bias is None else bias[None] * scale_b)
            y, _, _ = _forward(networks.plan, images, True, networks.image_shape[-1], params, 1)
            return tf.reshape(y, (-1, networks.outputs))

    inputs = keras.Input(shape=networks.image_shape, dtype=dtype)
    return keras.Model(inputs, FiniteNetwork(name="finite_network")(inputs), name=f"finite_width_{width}")
