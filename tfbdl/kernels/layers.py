"""Layers of an infinite-width CNN, each mapping the kernel of its input to the kernel of its output.

Without pooling before the readout, the readout (a dense layer over the whole last feature map)
only needs, for each pair of images, the covariance of the two networks' activations at the
*same* spatial location (Garriga-Alonso et al. 2019). So a pair of images is represented by a
map ``[H, W]`` of per-location covariances, and each image by its map of per-location variances.

Conventions (those of the paper's code):

- the input covariance at a location is the mean over channels of ``x * y``;
- a convolution with ``var_weight`` gives each weight the prior variance
  ``var_weight / (kernel_size**2 * channels)``, so the output covariance is
  ``var_weight * (mean over the k x k patch) + var_bias``, zero padding counting in the mean;
- ``padding="same"`` pads ``k // 2`` on each side; an even ``k`` covers offsets
  ``-(k//2 - 1) .. k//2`` (as TensorFlow's "SAME"), e.g. ``-1..+2`` for ``k = 4``;
- ``ReLU`` is the plain ReLU, so a variance ``v`` becomes ``v / 2``.

The NTK is carried alongside when asked for (``MapState.ntk``): a layer with weights adds its
output NNGP to the propagated NTK, a nonlinearity multiplies the NTK by the derivative kernel.

Shapes: a pair map is ``[P, H, W]`` (P pairs), a sample's variance map ``[N, H, W]``.

Average pooling mixes locations, so a network with ``AvgPool2d`` or ``GlobalAvgPool`` needs the
covariance between *every* two locations: the full path carries ``[P, H, W, H, W]`` maps (the
covariance of x at (h, w) with y at (h', w')). A conv then sums over the same patch offset on
both sides, a nonlinearity reads the two locations' variances, and a readout without pooling
uses the diagonal h = h', w = w'. :class:`~tfbdl.kernels.ConvNetKernel` picks the path.

A new layer subclasses one of the public bases: :class:`Layer` (``variance`` and ``cross``),
:class:`LinearLayer` (``propagate``, for maps that are a linear function of the input maps alone),
:class:`AffineLayer` (``spatial``, for a layer of weights and biases; its variances are
:func:`variance_parameter` s) or :class:`Nonlinearity` (``pair_map`` and ``self_map``). They
pass :class:`MapState` values along and read each pair's variances from a :class:`PairIndex`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gpflow
import numpy as np
import tensorflow as tf
from gpflow.utilities import positive

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.kernels import fastmath
from tfbdl.validate import integer, number

__all__ = [
    "AffineLayer",
    "AvgPool2d",
    "BranchSum",
    "Conv2d",
    "Erf",
    "GlobalAvgPool",
    "Identity",
    "Layer",
    "LinearLayer",
    "MapState",
    "Nonlinearity",
    "PairIndex",
    "ReLU",
    "Readout",
    "ResidualBlock",
    "Sequential",
    "is_full",
    "location_diagonal",
    "location_eye",
    "variance_parameter",
]


class MapState(NamedTuple):
    """Per-location NNGP covariances ``nngp [P, H, W]`` and, optionally, NTK values ``ntk``."""

    nngp: tf.Tensor
    ntk: tf.Tensor | None = None


class PairIndex:
    """Which samples each pair map belongs to, and the samples' variance maps at every
    nonlinearity (recorded by a variance pass in the same traversal order as the pair pass).

    idx_x, idx_y: int [P]; same: bool [P], true where a pair is a sample with itself (its
    nonlinearity output is then the exact variance, never arccos(~1)).
    """

    def __init__(self, trace_x: list, trace_y: list, idx_x, idx_y, same):
        self.trace_x, self.trace_y = trace_x, trace_y
        self.idx_x, self.idx_y, self.same = idx_x, idx_y, same
        self._position = 0

    def next_variances(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The variance maps [P, H, W] of each pair's two samples at the next nonlinearity."""
        vx = tf.gather(self.trace_x[self._position], self.idx_x)
        vy = tf.gather(self.trace_y[self._position], self.idx_y)
        self._position += 1
        return vx, vy


def variance_parameter(value: float, name: str) -> gpflow.Parameter:
    """A positive gpflow Parameter; a zero variance is a fixed zero (positive() cannot hold 0)."""
    value = number(value, name, nonnegative=True)
    if value == 0:
        return gpflow.Parameter(0.0, trainable=False, name=name)
    return gpflow.Parameter(value, transform=positive(), name=name)


def is_full(maps: tf.Tensor) -> bool:
    """Whether maps carry every pair of locations ``[P, H, W, H, W]`` (else ``[P, H, W]``)."""
    return maps.shape.rank == 5


def location_diagonal(maps: tf.Tensor) -> tf.Tensor:
    """The same-location entries ``[P, H, W]`` of full maps ``[P, H, W, H, W]``."""
    p, h, w = maps.shape[0], maps.shape[1], maps.shape[2]
    flat = tf.reshape(maps, (-1, h * w, h * w))
    return tf.reshape(tf.linalg.diag_part(flat), (-1 if p is None else p, h, w))


def location_eye(h: int, w: int) -> tf.Tensor:
    """bool ``[1, H, W, H, W]``, true where the two locations are the same."""
    return tf.reshape(tf.eye(h * w, dtype=tf.bool), (1, h, w, h, w))


class Layer(gpflow.base.Module):
    """One step of the kernel recursion."""

    @property
    def uses_pooling(self) -> bool:
        """True if the layer (or one inside it) averages over locations (needs the full path)."""
        return False

    def variance(self, state: MapState, trace: list) -> MapState:
        """Propagate per-sample variance maps; nonlinearities append their input to ``trace``."""
        raise NotImplementedError

    def cross(self, state: MapState, pairs: PairIndex) -> MapState:
        """Propagate pair covariance maps."""
        raise NotImplementedError


class Identity(Layer):
    """The identity (the skip branch of a residual block)."""

    def variance(self, state, trace):
        return state

    def cross(self, state, pairs):
        return state


class LinearLayer(Layer):
    """A layer whose output maps are a linear function of its input maps alone (no variances)."""

    def propagate(self, state: MapState) -> MapState:
        """The output maps of the input maps ``state`` (variance and pair maps alike)."""
        raise NotImplementedError

    def variance(self, state, trace):
        return self.propagate(state)

    def cross(self, state, pairs):
        return self.propagate(state)


class AffineLayer(LinearLayer):
    """``var_weight * spatial(K) + var_bias``: a layer of weights and biases. Its NTK adds the
    output NNGP to the propagated NTK (the gradient with respect to its own weights)."""

    def __init__(self, var_weight: float, var_bias: float, name: str | None = None):
        super().__init__(name=name)
        self.var_weight = variance_parameter(var_weight, "var_weight")
        self.var_bias = variance_parameter(var_bias, "var_bias")

    def spatial(self, maps: tf.Tensor) -> tf.Tensor:
        """The weight-free part: how the layer averages its input maps over locations."""
        raise NotImplementedError

    def propagate(self, state: MapState) -> MapState:
        dtype = state.nngp.dtype
        weight, bias = tf.cast(self.var_weight, dtype), tf.cast(self.var_bias, dtype)
        nngp = weight * self.spatial(state.nngp) + bias
        ntk = None if state.ntk is None else weight * self.spatial(state.ntk) + nngp
        return MapState(nngp, ntk)


class Conv2d(AffineLayer):
    """A convolution of ``kernel_size`` with ``stride`` and ``padding`` ("same", "valid" or an int).

    Output covariance: ``var_weight * mean over the k x k patch + var_bias`` (see module docstring).
    """

    def __init__(self, kernel_size: int, *, stride: int = 1, padding="same", var_weight: float = 1.0,
                 var_bias: float = 0.0, name: str | None = None):
        super().__init__(var_weight, var_bias, name=name)
        kernel_size, stride = integer(kernel_size, "kernel_size", 1), integer(stride, "stride", 1)
        if padding not in ("same", "valid") and not (isinstance(padding, int) and padding >= 0):
            raise InvalidOptionError(f"padding must be 'same', 'valid' or an int >= 0, got {padding!r}")
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), padding

    def taps(self) -> np.ndarray:
        """Offsets of the patch relative to the output location (before striding)."""
        k = self.kernel_size
        if self.padding == "same":
            return np.arange(k) - (k - 1) // 2 if k % 2 else np.arange(k) - (k // 2 - 1)
        pad = 0 if self.padding == "valid" else self.padding
        return np.arange(k) - pad

    def centres(self, size: int) -> np.ndarray:
        """Input positions the output positions are anchored at (patch = centre + taps)."""
        if self.padding == "same":
            return np.arange(0, size, self.stride)
        pad = 0 if self.padding == "valid" else self.padding
        size_out = (size + 2 * pad - self.kernel_size) // self.stride + 1
        if size_out < 1:
            raise ShapeError(f"a {self.kernel_size}x{self.kernel_size} conv with padding {self.padding!r} "
                             f"does not fit a {size}-pixel feature map")
        return np.arange(size_out) * self.stride

    def box_matrix(self, size: int) -> np.ndarray:
        """A ``[size_out, size]`` 0/1 matrix summing each output's patch along one axis."""
        taps = self.taps()
        starts = self.centres(size)
        matrix = np.zeros((starts.size, size))
        for row, centre in enumerate(starts):
            cols = centre + taps
            cols = cols[(cols >= 0) & (cols < size)]
            matrix[row, cols] = 1.0
        return matrix

    def _full_box_mean(self, maps: tf.Tensor) -> tf.Tensor:
        """Full maps [P, H, W, H, W]: the mean over patch offsets d applied to *both* locations,
        ``K'[a, b] = mean_d K[a + d, b + d]`` (the same weight multiplies both), zero outside."""
        taps = self.taps()
        low, high = max(0, -int(taps.min())), max(0, int(taps.max()))
        padded = tf.pad(maps, [[0, 0]] + [[low, high]] * 4)
        rows = self.centres(maps.shape[1]) + low
        cols = self.centres(maps.shape[2]) + low
        # Separable: first the vertical offsets (axes 1 and 3 together), then the horizontal ones.
        vertical = tf.add_n([tf.gather(tf.gather(padded, rows + d, axis=1), rows + d, axis=3) for d in taps])
        both = tf.add_n([tf.gather(tf.gather(vertical, cols + d, axis=2), cols + d, axis=4) for d in taps])
        return both / self.kernel_size**2

    def _box_mean(self, maps: tf.Tensor) -> tf.Tensor:
        """Patch means of maps [P, H, W] -> [P, H', W'] as two small matmuls (separable filter)."""
        h, w = maps.shape[-2], maps.shape[-1]
        rows = tf.constant(self.box_matrix(h) / self.kernel_size, dtype=maps.dtype)
        cols = tf.constant(self.box_matrix(w) / self.kernel_size, dtype=maps.dtype)
        return tf.einsum("ih,phw,jw->pij", rows, maps, cols)

    def spatial(self, maps):
        return self._full_box_mean(maps) if is_full(maps) else self._box_mean(maps)


class Readout(AffineLayer):
    """The dense layer that sees the whole last feature map: ``var_bias + var_weight * mean``.

    (In the paper's code it is a conv whose kernel is the feature map's size, without padding.)
    Output maps are ``[P, 1, 1]``.
    """

    def __init__(self, *, var_weight: float = 1.0, var_bias: float = 0.0, name: str | None = None):
        super().__init__(var_weight, var_bias, name=name)

    def spatial(self, maps):
        # A dense layer sees each location once: on full maps, the same-location entries.
        maps = location_diagonal(maps) if is_full(maps) else maps
        return tf.reduce_mean(maps, axis=[-2, -1], keepdims=True)


class Nonlinearity(Layer):
    """An elementwise nonlinearity: needs each pair's two variances at its input."""

    def pair_map(self, c, vx, vy):
        """Output covariance and derivative kernel for covariance c and variances vx, vy."""
        raise NotImplementedError

    def self_map(self, v):
        """Output variance and derivative kernel of a sample with itself (exact, no arccos)."""
        raise NotImplementedError

    def variance(self, state, trace):
        if is_full(state.nngp):  # a sample's covariance between all its locations
            v = location_diagonal(state.nngp)
            trace.append(v)
            h, w = v.shape[1], v.shape[2]
            return self._mixed(state, v[:, :, :, None, None], v[:, None, None, :, :], location_eye(h, w))
        trace.append(state.nngp)
        out, derivative = self.self_map(state.nngp)
        return MapState(out, None if state.ntk is None else state.ntk * derivative)

    def cross(self, state, pairs):
        vx, vy = pairs.next_variances()
        if is_full(state.nngp):
            h, w = vx.shape[1], vx.shape[2]
            same = pairs.same[:, None, None, None, None] & location_eye(h, w)
            return self._mixed(state, vx[:, :, :, None, None], vy[:, None, None, :, :], same)
        return self._mixed(state, vx, vy, pairs.same[:, None, None])

    def _mixed(self, state, vx, vy, same):
        """Pair map where ``same`` is false, the exact self map (of vx) where it is true."""
        # Same-sample pairs take the exact self map; their covariance is replaced by 0 in the
        # general formula so that neither its value nor its gradient can be NaN.
        c = tf.where(same, tf.zeros_like(state.nngp), state.nngp)
        out, derivative = self.pair_map(c, vx, vy)
        self_out, self_derivative = self.self_map(vx)
        out = tf.where(same, self_out * tf.ones_like(out), out)
        ntk = None
        if state.ntk is not None:
            ntk = state.ntk * tf.where(same, self_derivative * tf.ones_like(derivative), derivative)
        return MapState(out, ntk)


class ReLU(Nonlinearity):
    """ReLU: the arc-cosine kernel of degree 1 (Cho and Saul 2009), scaled for a plain ReLU.

    ``E[relu(u) relu(v)] = (sqrt(vx vy - c^2) + (pi - theta) c) / (2 pi)``, ``cos theta = c / sqrt(vx vy)``;
    derivative kernel ``E[relu'(u) relu'(v)] = (pi - theta) / (2 pi)``.
    """

    def pair_map(self, c, vx, vy):
        tiny = np.finfo(np.float32).tiny
        norm = tf.sqrt(vx * vy + tiny)
        rho = tf.clip_by_value(c / norm, -1.0, 1.0)
        return norm * _arccos_j1(rho) / (2 * math.pi), _arccos_j0(rho) / (2 * math.pi)

    def self_map(self, v):
        return v / 2, tf.constant(0.5, dtype=v.dtype)


@tf.custom_gradient
def _arccos_j1(rho):
    """J1(rho) = sqrt(1 - rho^2) + (pi - arccos rho) rho, with its derivative pi - arccos rho.

    Each term has an infinite derivative at rho = 1 (two images identical over a patch, e.g.
    black background), but they cancel: the sum's derivative is finite, so it is given directly.
    """
    theta = fastmath.acos(rho)
    value = tf.sqrt(tf.maximum(1 - tf.square(rho), 0.0)) + (math.pi - theta) * rho

    def gradient(upstream):
        return upstream * (math.pi - theta)

    return value, gradient


@tf.custom_gradient
def _arccos_j0(rho):
    """J0(rho) = pi - arccos rho (the ReLU derivative kernel times 2 pi). Its derivative
    1 / sqrt(1 - rho^2) is infinite at rho = 1; the gradient is capped there to stay finite."""
    value = math.pi - fastmath.acos(rho)
    eps = np.finfo(rho.dtype.as_numpy_dtype).eps

    def gradient(upstream):
        return upstream * tf.math.rsqrt(tf.maximum(1 - tf.square(rho), eps))

    return value, gradient


class Erf(Nonlinearity):
    """Erf: the arcsine kernel (Williams 1997).

    ``E[erf(u) erf(v)] = (2/pi) arcsin(2c / sqrt((1 + 2 vx)(1 + 2 vy)))``; derivative kernel
    ``(4/pi) / sqrt((1 + 2 vx)(1 + 2 vy) - 4 c^2)``.
    """

    def pair_map(self, c, vx, vy):
        product = (1 + 2 * vx) * (1 + 2 * vy)
        out = (2 / math.pi) * tf.asin(tf.clip_by_value(2 * c * tf.math.rsqrt(product), -1.0, 1.0))
        return out, (4 / math.pi) * tf.math.rsqrt(product - 4 * tf.square(c))

    def self_map(self, v):
        return (2 / math.pi) * tf.asin(2 * v / (1 + 2 * v)), (4 / math.pi) * tf.math.rsqrt(1 + 4 * v)


class Sequential(Layer):
    """Layers applied one after another."""

    def __init__(self, *layers: Layer, name: str | None = None):
        super().__init__(name=name)
        for layer in layers:
            if not isinstance(layer, Layer):
                raise InvalidOptionError(f"Sequential takes kernel layers, got {type(layer).__name__}")
        self.layers = list(layers)

    @property
    def uses_pooling(self) -> bool:
        return any(layer.uses_pooling for layer in self.layers)

    def variance(self, state, trace):
        for layer in self.layers:
            state = layer.variance(state, trace)
        return state

    def cross(self, state, pairs):
        for layer in self.layers:
            state = layer.cross(state, pairs)
        return state


class BranchSum(Layer):
    """The sum of independent branches applied to the same input (e.g. a residual block)."""

    def __init__(self, *branches: Layer, name: str | None = None):
        super().__init__(name=name)
        if not branches:
            raise InvalidOptionError("BranchSum needs at least one branch")
        self.branches = list(branches)

    @property
    def uses_pooling(self) -> bool:
        return any(branch.uses_pooling for branch in self.branches)

    @staticmethod
    def _add(states: list[MapState]) -> MapState:
        shapes = {tuple(s.nngp.shape[-2:]) for s in states}
        if len(shapes) > 1:
            raise ShapeError(f"the branches of a BranchSum give feature maps of different sizes {sorted(shapes)}")
        nngp = tf.add_n([s.nngp for s in states])
        ntk = None if states[0].ntk is None else tf.add_n([s.ntk for s in states])
        return MapState(nngp, ntk)

    def variance(self, state, trace):
        return self._add([branch.variance(state, trace) for branch in self.branches])

    def cross(self, state, pairs):
        return self._add([branch.cross(state, pairs) for branch in self.branches])


class AvgPool2d(LinearLayer):
    """Average pooling over ``window`` x ``window`` patches with ``stride`` (default: the
    window), no padding. Mixes locations, so it runs on full maps only."""

    def __init__(self, window: int, *, stride: int | None = None, name: str | None = None):
        super().__init__(name=name)
        self.window = integer(window, "window", 1)
        self.stride = self.window if stride is None else integer(stride, "stride", 1)

    @property
    def uses_pooling(self) -> bool:
        return True

    def pool_matrix(self, size: int) -> np.ndarray:
        """``[size_out, size]``: each row averages one window."""
        size_out = (size - self.window) // self.stride + 1
        if size_out < 1:
            raise ShapeError(f"a {self.window}-pixel pooling window does not fit a {size}-pixel feature map")
        matrix = np.zeros((size_out, size))
        for row in range(size_out):
            matrix[row, row * self.stride: row * self.stride + self.window] = 1.0 / self.window
        return matrix

    def _pool(self, maps: tf.Tensor) -> tf.Tensor:
        if not is_full(maps):
            raise ShapeError("average pooling needs the covariance between locations; use it inside a "
                             "ConvNetKernel, which switches to the full-covariance path")
        rows = tf.constant(self.pool_matrix(maps.shape[1]), dtype=maps.dtype)
        cols = tf.constant(self.pool_matrix(maps.shape[2]), dtype=maps.dtype)
        return tf.einsum("ai,bj,pijkl,ck,dl->pabcd", rows, cols, maps, rows, cols)

    def propagate(self, state):
        return MapState(self._pool(state.nngp), None if state.ntk is None else self._pool(state.ntk))


class GlobalAvgPool(LinearLayer):
    """The mean over all locations: ``K' = mean over (a, b) of K[a, b]``, giving ``[P, 1, 1]``."""

    @property
    def uses_pooling(self) -> bool:
        return True

    @staticmethod
    def _pool(maps: tf.Tensor) -> tf.Tensor:
        if not is_full(maps):
            raise ShapeError("global average pooling needs the covariance between locations; use it inside "
                             "a ConvNetKernel, which switches to the full-covariance path")
        return tf.reduce_mean(maps, axis=[1, 2, 3, 4])[:, None, None]

    def propagate(self, state):
        return MapState(self._pool(state.nngp), None if state.ntk is None else self._pool(state.ntk))


def ResidualBlock(*layers: Layer, name: str | None = None) -> BranchSum:
    """``K <- K + f(K)``: the identity plus the branch ``Sequential(*layers)``."""
    return BranchSum(Identity(), Sequential(*layers), name=name)
